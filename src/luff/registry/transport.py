"""HTTP transport: one pool of kept-alive connections for every host, and its errors as luff's.

It sends one request and returns the response, its body unread; it knows
nothing of registries (see :mod:`luff.registry.client` for ping, auth and
retries). The wire protocol, the pool and the connections that join the
calling thread's cancel scope are :mod:`luff.registry.connections`.

TLS is verified against the system's CAs (``SSL_CERT_FILE`` and
``SSL_CERT_DIR`` replace them, as in OpenSSL), plus ``Settings.ca_file``,
plus, per host, every ``*.crt`` in ``CERTS_DIR/HOST[:PORT]/`` for each of
``Settings.certs_dirs`` (``/etc/containers/certs.d`` and
``/etc/docker/certs.d`` by default). A ``*.cert`` file there with a ``*.key``
of the same name is the client certificate for mutual TLS (Docker names
them ``client.cert`` and ``client.key``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

from luff import cancel
from luff.errors import TransportError, UsageError
from luff.registry.connections import Connection, Pool, Response, TLSFailure, WireError

if TYPE_CHECKING:
    import ssl
    from pathlib import Path

    from luff.context import Settings

Body = bytes | BinaryIO | Iterable[bytes] | None


class TimedOut(TransportError):
    """A peer did not connect or answer within ``Settings.timeout``.

    It is not retried (``retryable`` is False): the user asked to wait that
    long for an answer, not that long times the retry budget. A body that
    stalls mid-way is another matter (see :class:`luff.registry.repository.BlobStream`).
    """


def split_url(url: str) -> tuple[str, str, str, int, str]:
    """``(scheme, netloc, host, port, target)`` of an absolute http(s) URL; *target* is
    the origin-form path and query that the request line carries."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise TransportError(f"unsupported URL {url!r}", retryable=False)
    slash = rest.find("/")
    query = rest.find("?")
    cut = min(i for i in (slash, query, len(rest)) if i >= 0)
    netloc, target = rest[:cut], rest[cut:].partition("#")[0]
    if not target.startswith("/"):
        target = "/" + target
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        end = hostport.find("]")
        host, port_text = hostport[1:end], hostport[end + 2 :]
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
    else:
        host, port_text = hostport, ""
    try:
        port = int(port_text) if port_text else (443 if scheme == "https" else 80)
    except ValueError:
        raise TransportError(f"invalid port in URL {url!r}", retryable=False) from None
    return scheme, hostport, host, port, target


#: Requests sent again on a new connection when a kept-alive one fails before any answer
#: (as Go's net/http does: methods without a body, whose repetition changes nothing).
_AGAIN_ON_A_NEW_CONNECTION = frozenset({"GET", "HEAD"})
_CLOSED_WHILE_IDLE = frozenset(
    {"connection closed without an answer", "connection reset", "connection closed while sending"}
)


def url_netloc(url: str) -> str:
    """The ``host[:port]`` of an absolute URL ("" for a relative one)."""
    _, sep, rest = url.partition("://")
    if not sep:
        return ""
    end = len(rest)
    for c in "/?#":
        i = rest.find(c)
        if 0 <= i < end:
            end = i
    return rest[:end]


def url_join(base: str, ref: str) -> str:
    """*ref* resolved against the absolute URL *base*, as ``urllib.parse.urljoin`` does
    (which it calls for any but the common forms: an absolute URL or an absolute path)."""
    if "/." in ref or ref.startswith(".") or ref.startswith("//"):
        return _urljoin(base, ref)
    if ref.startswith("/"):
        scheme, sep, _ = base.partition("://")
        return f"{scheme}{sep}{url_netloc(base)}{ref}" if sep else _urljoin(base, ref)
    head = ref.split("/", 1)[0]
    if head in ("http:", "https:") and ref[len(head) : len(head) + 2] == "//":
        return ref
    return _urljoin(base, ref)


def _urljoin(base: str, ref: str) -> str:
    import urllib.parse

    return urllib.parse.urljoin(base, ref)


class Transport:
    """Sends requests over a shared, cancellable connection pool."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tls: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._tls_lock = threading.Lock()
        self.pool = Pool(maxsize=max(8, settings.jobs * 2))

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
    ) -> Response:
        """Send one request to *url*; *host* names the registry in errors.

        With ``verify=False`` an HTTPS peer's certificate is not checked. The
        body of the answer is left unread when *stream* is True.
        """
        scheme, netloc, hostname, port, target = split_url(url)
        key = (scheme, netloc, verify)
        conn = self.pool.get(key)
        try:
            if conn is not None and method in _AGAIN_ON_A_NEW_CONNECTION:
                # A kept-alive connection the server closed just now (as idle) fails
                # before any answer: a GET or HEAD goes again at once on a new one.
                conn.join_scope()
                try:
                    resp = conn.request(method, target, netloc, headers, body)
                except WireError as e:
                    if e.reason not in _CLOSED_WHILE_IDLE:
                        raise
                    _drop(conn)
                    cancel.check()
                    conn = None
            if conn is None:
                tls = self.tls_context(netloc, verify) if scheme == "https" else None
                timeout = self.settings.timeout
                conn = Connection(key, hostname, port, tls, min(timeout, 15.0), timeout)
                conn.join_scope()
                conn.connect()
                resp = conn.request(method, target, netloc, headers, body)
            elif method not in _AGAIN_ON_A_NEW_CONNECTION:
                conn.join_scope()
                resp = conn.request(method, target, netloc, headers, body)
        except TLSFailure as e:
            _drop(conn)
            cancel.check()
            hint = "" if not verify else f" (--insecure {host} skips verification)"
            raise TransportError(
                f"TLS error: {e.reason}{hint}", retryable=False, where=host
            ) from None
        except WireError as e:
            _drop(conn)
            cancel.check()  # the connection was shut down on purpose
            if e.reason == "timed out":
                raise TimedOut(
                    f"timed out: no answer within {self.settings.timeout:g} s",
                    retryable=False,
                    where=host,
                ) from None
            raise TransportError(e.reason, retryable=e.retryable, where=host) from None
        except BaseException:
            _drop(conn)
            raise
        resp.pool = self.pool
        if not stream:
            try:
                resp.data  # noqa: B018 - read whole, the connection goes back to the pool
            except WireError as e:
                cancel.check()
                raise TransportError(
                    f"connection lost while reading: {e.reason}", where=host
                ) from None
        return resp

    def tls_context(self, netloc: str, verify: bool) -> ssl.SSLContext:
        """The TLS settings for *netloc* (``host[:port]``)."""
        key = (netloc, verify)
        with self._tls_lock:
            if key not in self._tls:
                self._tls[key] = _tls_context(self.settings, netloc, verify)
            return self._tls[key]

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.clear()


def _drop(conn: Connection | None) -> None:
    if conn is not None:
        conn.leave_scope()
        conn.close()


def host_cert_files(certs_dirs: Iterable[str], netloc: str) -> tuple[list[Path], Path | None]:
    """``(CA files, client certificate)`` for *netloc* in the ``certs.d`` directories.

    Every ``*.crt`` is a CA; a ``*.cert`` with a ``*.key`` beside it is a
    client certificate (the first one found is used).
    """
    from pathlib import Path

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


def _tls_context(settings: Settings, netloc: str, verify: bool) -> ssl.SSLContext:
    import ssl
    from pathlib import Path

    cas, client = host_cert_files(settings.certs_dirs, netloc)
    extra = [Path(settings.ca_file)] if settings.ca_file else []
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
