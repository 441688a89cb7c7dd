"""HTTP transport: one urllib3 connection pool for every host, and its errors as luff's.

It sends one request and returns the response; it knows nothing of
registries (see :mod:`luff.registry.client` for ping, auth and retries).
Its connections join the calling thread's cancel scope
(:mod:`luff.registry.connections`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import SSLError

from luff.errors import TransportError

if TYPE_CHECKING:
    from luff.context import Settings

Body = bytes | BinaryIO | Iterable[bytes] | None


class Transport:
    """Sends requests over a shared, cancellable connection pool."""

    def __init__(self, settings: Settings) -> None:
        from luff.registry.connections import pool_manager

        self.settings = settings
        timeout = settings.timeout
        self.pool = pool_manager(
            num_pools=32,
            maxsize=max(8, settings.jobs * 2),
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=min(timeout, 15.0), read=timeout),
            cert_reqs="CERT_REQUIRED",
            blocksize=1 << 20,
        )

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body,
        *,
        stream: bool,
        host: str,
        verify: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request to *url*; *host* names the registry in errors.

        With ``verify=False`` an HTTPS peer's certificate is not checked.
        """
        kw: dict[str, Any] = {}
        if not verify and url.startswith("https:"):
            kw["cert_reqs"] = "CERT_NONE"
        try:
            pool = self.pool.connection_from_url(url, pool_kwargs=kw or None)
            return pool.urlopen(
                method,
                urllib3.util.parse_url(url).request_uri,  # origin-form, not the absolute URL
                headers=dict(headers),
                body=body,
                redirect=False,
                retries=False,
                preload_content=not stream,
                assert_same_host=False,
            )
        except SSLError as e:
            hint = "" if not verify else f" (--insecure {host} skips verification)"
            raise TransportError(
                f"TLS error: {reason(e)}{hint}", retryable=False, where=host
            ) from None
        except Urllib3Error as e:
            why = reason(e)
            final = why in ("connection refused", "unknown host")
            raise TransportError(why, retryable=not final, where=host) from None

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.clear()


def reason(e: Exception) -> str:
    """A short, readable reason for a urllib3 error."""
    r = getattr(e, "reason", None)
    text = str(r if r is not None else e)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return "unknown host"
    if "timed out" in text.lower():
        return "timed out"
    short = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)", text)
    if short:
        got, more = int(short[1]), int(short[2])
        return f"connection closed early (got {got} of {got + more} bytes)"
    return text.split(": ", 1)[-1] if "Failed to establish" in text else text
