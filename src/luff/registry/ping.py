"""``GET /v2/``, once per host: which scheme the registry speaks and which auth it wants.

The schemes tried, in order:

- ``https`` (verified) for an ordinary host;
- ``http``, then ``https`` (unverified) for a loopback host: a local TLS
  registry hangs up on plain HTTP, or (Go) answers it with a bare 400;
- ``https`` (unverified), then ``http`` for an ``--insecure`` host.

The answer must be 200 or 401 (its ``WWW-Authenticate`` is the challenge).
A 404 whose body is not JSON comes from a web server, not a registry. A
peer that accepts the connection and never answers fails after
``Settings.timeout`` seconds, without a retry or another scheme: waiting again
for a silent server only makes the user wait longer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from luff import cancel
from luff.context import is_local_host
from luff.errors import LimitExceeded, LuffError, RegistryError, TransportError
from luff.model import jsonutil
from luff.record import Record, setfields
from luff.registry.body import MAX_SMALL, discard, read_capped
from luff.registry.status import error_from
from luff.registry.transport import TimedOut

if TYPE_CHECKING:
    from luff.registry.connections import Response
    from luff.registry.retry import RetryPolicy


class Ping(Record, frozen=True):
    """What ``GET /v2/`` told about a host."""

    scheme: str  # "http" or "https"
    status: int  # 200 or 401 (or 404 with a JSON body)
    challenge: str  # the WWW-Authenticate header ("" when none)

    def __init__(
        self,
        scheme: str,
        status: int,
        challenge: str,
    ) -> None:
        setfields(
            self,
            scheme=scheme,
            status=status,
            challenge=challenge,
        )


def schemes(host: str, insecure: bool) -> tuple[str, ...]:
    """The schemes to try for *host*, in order."""
    if is_local_host(host):
        return ("http", "https")
    return ("https", "http") if insecure else ("https",)


def ping(
    host: str,
    send: Callable[[str], Response],
    insecure: bool,
    policy: RetryPolicy,
    say: Callable[[str], None],
) -> Ping:
    """Ping *host*; ``send(url)`` sends one unauthenticated ``GET``."""
    order = schemes(host, insecure)
    attempt = 0
    while True:
        attempt += 1
        cancel.check()
        failure: TransportError | None = None
        retrying = False
        retry_after: str | None = None
        for scheme in order:
            try:
                resp = send(f"{scheme}://{host}/v2/")
            except TimedOut:
                raise
            except TransportError as e:
                cancel.check()
                if e.message in ("connection refused", "unknown host"):
                    raise  # the other scheme uses the same port and name
                failure = failure or e
                continue
            if resp.status == 400 and scheme == "http" and "https" in order:
                body = _small_body(resp, host)
                if _speaks_tls(resp, body):
                    continue  # a TLS registry (Go's answer to plain HTTP)
                raise _unexpected(resp, body, host)
            if policy.retry_status(resp.status):
                if attempt >= policy.max_attempts:
                    raise _unexpected(resp, _small_body(resp, host), host)
                retry_after = resp.headers.get("Retry-After")
                discard(resp)
                failure, retrying = None, True
                break
            try:
                body = read_capped(resp, MAX_SMALL, "answer to GET /v2/", host)
            except TimedOut:
                raise
            except TransportError as e:
                cancel.check()
                failure = e  # it speaks this scheme; the answer was cut off
                break
            if resp.status in (200, 401) and not _web_page(resp):
                return Ping(scheme, resp.status, resp.headers.get("WWW-Authenticate", ""))
            if resp.status == 404 and _is_json(body):
                return Ping(scheme, 404, "")  # odd, but it speaks the API's error format
            raise _unexpected(resp, body, host)
        if failure is not None:
            if attempt >= policy.max_attempts or not failure.retryable:
                raise failure
        elif not retrying:
            raise TransportError("no scheme answered", retryable=False, where=host)
        policy.sleep(attempt, retry_after, say, host)


def _small_body(resp: Response, host: str) -> bytes:
    try:
        return read_capped(resp, MAX_SMALL, "answer to GET /v2/", host)
    except (LimitExceeded, TransportError):
        return b""


def _is_json(body: bytes) -> bool:
    try:
        jsonutil.loads(body)
    except (ValueError, LuffError):
        return False
    return True


def _speaks_tls(resp: Response, body: bytes) -> bool:
    # Go's TLS servers answer plain HTTP with a bare HTTP/1.0 400.
    if resp.version == 10 and not resp.headers.get("Content-Type"):
        return True
    return b"HTTPS server" in body[:500]


def _web_page(resp: Response) -> bool:
    """An HTML answer to ``/v2/``: a web server, not a registry (which answers JSON or nothing)."""
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower() == "text/html"


def _unexpected(resp: Response, body: bytes, host: str) -> LuffError:
    if resp.status == 404 or _web_page(resp):
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
        return RegistryError(
            f"does not look like an OCI registry (GET /v2/ answered {resp.status} {ctype})",
            resp.status,
            where=host,
        )
    return error_from(resp.status, resp.headers, body, host)
