"""HTTP transport: one urllib3 connection pool for every host, and its errors as luff's.

It sends one request and returns the response, its body unread; it knows
nothing of registries (see :mod:`luff.registry.client` for ping, auth and
retries). Its connections join the calling thread's cancel scope
(:mod:`luff.registry.connections`).

TLS is verified against the system's CAs (``SSL_CERT_FILE`` and
``SSL_CERT_DIR`` replace them, as in OpenSSL), plus ``Settings.ca_file``,
plus, per host, every ``*.crt`` in ``CERTS_DIR/HOST[:PORT]/`` for each of
``Settings.certs_dirs`` (``/etc/containers/certs.d`` and
``/etc/docker/certs.d`` by default). A ``*.cert`` file there with a ``*.key``
of the same name is the client certificate for mutual TLS (Docker names
them ``client.cert`` and ``client.key``).
"""

from __future__ import annotations

import re
import ssl
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import SSLError

from luff.errors import TransportError, UsageError

if TYPE_CHECKING:
    from luff.context import Settings

Body = bytes | BinaryIO | Iterable[bytes] | None


class TimedOut(TransportError):
    """A peer did not connect or answer within ``Settings.timeout``.

    It is not retried (``retryable`` is False): the user asked to wait that
    long for an answer, not that long times the retry budget. A body that
    stalls mid-way is another matter (see :class:`luff.registry.repository.BlobStream`).
    """


class Transport:
    """Sends requests over a shared, cancellable connection pool."""

    def __init__(self, settings: Settings) -> None:
        from luff.registry.connections import pool_manager

        self.settings = settings
        self._tls: dict[tuple[str, bool], ssl.SSLContext | None] = {}
        self._tls_lock = threading.Lock()
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
        if url.startswith("https:"):
            if not verify:
                kw["cert_reqs"] = "CERT_NONE"
            tls = self.tls_context(urllib.parse.urlsplit(url).netloc, verify)
            if tls is not None:
                kw["ssl_context"] = tls
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
            if why == "timed out":
                raise TimedOut(
                    f"timed out: no answer within {self.settings.timeout:g} s",
                    retryable=False,
                    where=host,
                ) from None
            final = why in ("connection refused", "unknown host")
            raise TransportError(why, retryable=not final, where=host) from None

    def tls_context(self, netloc: str, verify: bool) -> ssl.SSLContext | None:
        """The TLS settings for *netloc* (``host[:port]``); None for urllib3's defaults."""
        key = (netloc, verify)
        with self._tls_lock:
            if key not in self._tls:
                self._tls[key] = _tls_context(self.settings, netloc, verify)
            return self._tls[key]

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.clear()


def host_cert_files(certs_dirs: Iterable[str], netloc: str) -> tuple[list[Path], Path | None]:
    """``(CA files, client certificate)`` for *netloc* in the ``certs.d`` directories.

    Every ``*.crt`` is a CA; a ``*.cert`` with a ``*.key`` beside it is a
    client certificate (the first one found is used).
    """
    cas: list[Path] = []
    client: Path | None = None
    if not netloc or "/" in netloc or netloc.startswith("."):
        return cas, client
    for base in certs_dirs:
        d = Path(base) / netloc
        try:
            names = sorted(p for p in d.iterdir() if p.is_file())
        except OSError:
            continue
        cas += [p for p in names if p.suffix == ".crt"]
        if client is None:
            client = next(
                (p for p in names if p.suffix == ".cert" and p.with_suffix(".key").is_file()),
                None,
            )
    return cas, client


def _tls_context(settings: Settings, netloc: str, verify: bool) -> ssl.SSLContext | None:
    cas, client = host_cert_files(settings.certs_dirs, netloc)
    extra = [Path(settings.ca_file)] if settings.ca_file else []
    if verify and not (cas or client or extra):
        return None
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for f in (*extra, *cas):
        try:
            ctx.load_verify_locations(cafile=str(f))
        except (ssl.SSLError, OSError) as e:
            raise UsageError(f"{f}: cannot load CA certificates: {_ssl_reason(e)}") from None
    if client is not None:
        key = client.with_suffix(".key")
        try:
            ctx.load_cert_chain(str(client), str(key), password=_no_passphrase(key))
        except (ssl.SSLError, OSError) as e:
            raise UsageError(
                f"{client}: cannot load the client certificate with {key.name}: {_ssl_reason(e)}"
            ) from None
    return ctx


def _no_passphrase(key: Path) -> Any:
    def ask() -> str:
        raise UsageError(f"{key}: the key is encrypted; give an unencrypted key")

    return ask


def _ssl_reason(e: Exception) -> str:
    return str(getattr(e, "reason", None) or getattr(e, "strerror", None) or e)


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
    if "RemoteDisconnected" in text:
        return "connection closed without an answer"
    if "Connection reset" in text:
        return "connection reset"
    if "Broken pipe" in text or "BrokenPipe" in text:
        return "connection closed while sending"
    short = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)", text)
    if short:
        got, more = int(short[1]), int(short[2])
        return f"connection closed early (got {got} of {got + more} bytes)"
    return text.split(": ", 1)[-1] if "Failed to establish" in text else text
