"""Error statuses of the distribution API as luff's errors.

The error body (``{"errors": [{"code", "message"}]}``) is read at most
64 KiB deep (:data:`luff.registry.body.MAX_ERROR`); anything else is shown
as its first line, cut at 200 characters.
"""

from __future__ import annotations

from collections.abc import Mapping

from luff.errors import AuthError, LuffError, NotFound, PreconditionFailed, RegistryError
from luff.model import jsonutil
from luff.registry.retry import RETRY_STATUS, RetryLater

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Payload Too Large",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def error_message(status: int, body: bytes) -> tuple[str, str]:
    """``(code, message)`` from a distribution error body, else the HTTP status."""
    try:
        obj = jsonutil.loads(body)
        errs = obj.get("errors") if isinstance(obj, dict) else None
        if errs and isinstance(errs, list) and isinstance(errs[0], dict):
            e = errs[0]
            code = str(e.get("code", ""))[:100]
            msg = str(e.get("message", ""))[:300] or code.lower().replace("_", " ")
            return code, f"{code}: {msg}" if code else msg
    except (ValueError, LuffError, AttributeError):
        pass
    text = body.decode("utf-8", "replace").strip()
    first = "".join(c for c in text.splitlines()[0][:200] if c.isprintable()) if text else ""
    head = f"HTTP {status} {_REASONS.get(status, '')}".strip()
    return "", head + (f": {first}" if first else "")


def error_from(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    where: str,
    who: str = "",
    *,
    retried: bool = True,
) -> LuffError:
    """The luff error for an error *status* at *where*.

    *who* names the credentials used (for a 401); *retried* says whether the
    client already retried a retryable status (False for a streamed upload).
    """
    code, msg = error_message(status, body)
    if status == 401:
        return AuthError(f"authentication required {who or '(no credentials)'}: {msg}", where=where)
    if status == 403:
        return AuthError(f"access denied: {msg}", where=where)
    if status == 404:
        return NotFound(msg if code else "not found", where=where)
    if status == 412:
        return PreconditionFailed(msg, status, code, where=where)
    if status in RETRY_STATUS:
        return RetryLater(
            msg,
            status,
            code,
            retry_after=headers.get("Retry-After", "") or "",
            exhausted=retried,
            where=where,
        )
    return RegistryError(msg, status, code, where=where)
