"""HTTP/1.1 over pooled, cancellable connections: the wire under :mod:`luff.registry.transport`.

A small client for what registries speak: one request at a time per
connection, kept alive and reused; bodies framed by ``Content-Length``,
``chunked`` or the end of the connection; nothing decoded (see
:mod:`luff.registry.body`). Plain connections are made with :mod:`_socket`
(what :mod:`socket` wraps) and host names passed as bytes: :mod:`socket`,
:mod:`ssl` and the IDNA codec are imported for ``https`` connections only.

A connection joins the cancel scope of the thread that takes it from its
pool (before it connects, so a cancel during the TCP or TLS handshake is
not missed) and leaves it when it goes back: :meth:`luff.cancel.CancelScope.cancel`
shuts down only the connections its own job holds.

Failures are :class:`WireError` with a short reason (``connection refused``,
``timed out``, ``connection closed early (got N of M bytes)``, ...), which
the transport turns into :class:`~luff.errors.TransportError`.

At about 700 lines this module is longer than the others on purpose: the
connection, the response reading from it and the pool that keeps it share
one state (the socket, its read buffer, whether it may be reused), and
split apart they would reach into each other's internals.
"""

from __future__ import annotations

import _socket
import select
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from luff import cancel

if TYPE_CHECKING:
    import ssl

_T = TypeVar("_T")

#: Bytes read from the socket at a time for response heads and small bodies.
_RECV = 64 << 10
#: Response heads larger than this (status line and headers) are refused.
MAX_HEAD = 256 << 10
#: More header lines than this are refused.
MAX_HEADERS = 500
#: Bytes of a streamed request body read and sent at a time.
SEND_CHUNK = 1 << 20
_BODYLESS_STATUS = frozenset({204, 304})
_EXPECTS_BODY = frozenset({"POST", "PUT", "PATCH"})


class WireError(Exception):
    """A connection failed; *reason* says how, *retryable* whether another try may help."""

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class TLSFailure(WireError):
    """The TLS handshake failed (an untrusted certificate, a peer that does not speak TLS)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False)


class Headers(Mapping[str, str]):
    """Response headers, looked up case-insensitively; repeated ones joined with ``, ``."""

    __slots__ = ("_d",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._d: dict[str, tuple[str, str]] = {}
        for k, v in items:
            self.add(k, v)

    def add(self, name: str, value: str) -> None:
        key = name.lower()
        old = self._d.get(key)
        self._d[key] = (name, value) if old is None else (old[0], f"{old[1]}, {value}")

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, /, default: str | _T) -> str | _T: ...
    def get(self, name: str, /, default: Any = None) -> Any:
        v = self._d.get(name.lower())
        return default if v is None else v[1]

    def __getitem__(self, name: str) -> str:
        return self._d[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._d

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._d.values())

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


def _os_reason(e: OSError) -> str:
    if isinstance(e, ConnectionResetError):
        return "connection reset"
    if isinstance(e, BrokenPipeError):
        return "connection closed while sending"
    if isinstance(e, TimeoutError):
        return "timed out"
    return e.strerror or str(e) or type(e).__name__


class Connection:
    """One HTTP/1.1 connection to *host*:*port* (TLS when *tls* is given)."""

    def __init__(
        self,
        key: tuple[str, str, bool],
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.key = key
        self.host = host
        self.port = port
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.sock: _socket.socket | None = None
        self.used = 0  # requests sent on it
        self._buf = bytearray()  # bytes received and not yet consumed
        self._scope: cancel.CancelScope | None = None

    # --- cancel scope ---------------------------------------------------------
    def join_scope(self) -> None:
        """Join the calling thread's cancel scope (raises Cancelled when it is cancelled)."""
        scope = cancel.current()
        if scope is not self._scope:
            self.leave_scope()
            if scope is not None:
                self._scope = scope
                scope.track(self)

    def leave_scope(self) -> None:
        if self._scope is not None:
            self._scope.forget(self)
            self._scope = None

    # --- connecting -------------------------------------------------------------
    def connect(self) -> None:
        # An ASCII name as bytes: a str would be encoded with the IDNA codec (and its
        # unicodedata tables) first.
        host: str | bytes = self.host.encode("ascii") if self.host.isascii() else self.host
        make: Any = _socket.socket
        if self.tls is not None:
            import socket  # ssl wraps socket.socket objects

            make = socket.socket
        try:
            infos = _socket.getaddrinfo(host, self.port, 0, _socket.SOCK_STREAM)
        except _socket.gaierror:
            raise WireError("unknown host", retryable=False) from None
        except OSError as e:
            raise WireError(_os_reason(e)) from None
        error: WireError | None = None
        for family, kind, proto, _, addr in infos:
            s = make(family, kind, proto)
            self.sock = s  # a cancel now shuts it down
            try:
                s.settimeout(self.connect_timeout)
                s.connect(addr)
            except ConnectionRefusedError:
                error = WireError("connection refused", retryable=False)
            except TimeoutError:
                error = WireError("timed out", retryable=False)
            except OSError as e:
                error = WireError(_os_reason(e))
            else:
                error = None
                break
            self.sock = None
            s.close()
            cancel.check()
        if error is not None or self.sock is None:
            raise error or WireError("unknown host", retryable=False)
        sock = self.sock
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self._check_cancelled()
        if self.tls is not None:
            import socket
            import ssl

            assert isinstance(sock, socket.socket)
            try:
                self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            except ssl.SSLCertVerificationError as e:
                self.close()
                self._check_cancelled()
                raise TLSFailure(
                    f"certificate verify failed: {e.verify_message or e.reason}"
                ) from None
            except ssl.SSLError as e:
                self.close()
                self._check_cancelled()
                raise TLSFailure(str(e.reason or e)) from None
            except OSError as e:
                self.close()
                self._check_cancelled()
                if isinstance(e, TimeoutError):
                    raise WireError("timed out", retryable=False) from None
                raise WireError(_os_reason(e)) from None
            self._check_cancelled()
        self.sock.settimeout(self.read_timeout)

    def _check_cancelled(self) -> None:
        scope = self._scope
        if scope is not None and scope.cancelled:
            self.close()
            raise cancel.Cancelled()

    def dropped(self) -> bool:
        """True when an idle connection was closed by the peer (or has stray bytes)."""
        sock = self.sock
        if sock is None:
            return True
        try:
            poller = select.poll()  # not select.select: no limit on the descriptor's number
            poller.register(sock, select.POLLIN)
            readable = poller.poll(0)
        except (OSError, ValueError):
            return True
        return bool(readable) or bool(self._buf)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self._buf.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def abort(self) -> None:
        """Shut the connection down (a read blocked in another thread returns), then close it."""
        sock = self.sock
        if sock is not None:
            try:
                # The plain socket's shutdown: an SSL socket's would run the TLS close.
                _socket.socket.shutdown(sock, _socket.SHUT_RDWR)
            except OSError:
                pass
        self.close()

    # --- I/O --------------------------------------------------------------------
    def _sock(self) -> _socket.socket:
        if self.sock is None:
            raise WireError("connection closed")
        return self.sock

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._sock().sendall(data)
        except OSError as e:
            if isinstance(e, TimeoutError):
                raise WireError("timed out", retryable=False) from None
            raise WireError(_os_reason(e)) from None

    def recv_into(self, view: memoryview) -> int:
        """Bytes into *view* from the buffer, else from the socket; 0 at the end."""
        if self._buf:
            n = min(len(view), len(self._buf))
            view[:n] = self._buf[:n]
            del self._buf[:n]
            return n
        try:
            return self._sock().recv_into(view)
        except OSError as e:
            if isinstance(e, TimeoutError):
                raise WireError("timed out") from None
            raise WireError(_os_reason(e)) from None

    def _fill(self) -> int:
        """Receive more bytes into the buffer; how many (0 at the end)."""
        try:
            data = self._sock().recv(_RECV)
        except OSError as e:
            if isinstance(e, TimeoutError):
                raise WireError("timed out") from None
            raise WireError(_os_reason(e)) from None
        self._buf += data
        return len(data)

    def readline(self, limit: int = 64 << 10) -> bytes:
        """A line ending in CRLF (or LF), without it; WireError at the end or over *limit*."""
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[: i + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) > limit:
                raise WireError("a line of the answer is too long", retryable=False)
            start = len(self._buf)
            if not self._fill():
                raise WireError("connection closed early")

    def read_head(self) -> tuple[bytes, list[bytes]]:
        """The status line and the header lines of the next response."""
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                sep = 4
                break
            end = self._buf.find(b"\n\n")
            if end >= 0:
                sep = 2
                break
            if len(self._buf) > MAX_HEAD:
                raise WireError("the answer's headers are too large", retryable=False)
            if not self._fill():
                if self._buf:
                    raise WireError("connection closed in the middle of an answer")
                raise WireError("connection closed without an answer")
        head = bytes(self._buf[:end])
        del self._buf[: end + sep]
        lines = head.split(b"\n")
        if len(lines) > MAX_HEADERS + 1:
            raise WireError(f"more than {MAX_HEADERS} headers", retryable=False)
        return lines[0].rstrip(b"\r"), [line.rstrip(b"\r") for line in lines[1:]]

    # --- one exchange -----------------------------------------------------------
    def request(
        self, method: str, target: str, netloc: str, headers: Mapping[str, str], body: Any
    ) -> Response:
        """Send one request and read the head of its answer."""
        h = {k.lower(): (k, v) for k, v in headers.items()}
        if "host" not in h:
            h["host"] = ("Host", netloc)
        if "accept-encoding" not in h:
            h["accept-encoding"] = ("Accept-Encoding", "identity")
        data: bytes | None = None
        stream: Any = None
        if body is None:
            if method in _EXPECTS_BODY and "content-length" not in h:
                h["content-length"] = ("Content-Length", "0")
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
            if "content-length" not in h:
                h["content-length"] = ("Content-Length", str(len(data)))
        else:
            stream = body
            if "content-length" not in h:
                h["transfer-encoding"] = ("Transfer-Encoding", "chunked")
        chunked = stream is not None and "transfer-encoding" in h
        lines = [f"{method} {target} HTTP/1.1"]
        for k, v in h.values():
            if "\n" in k or "\r" in k or "\n" in v or "\r" in v:
                raise WireError(f"invalid header {k!r}", retryable=False)
            lines.append(f"{k}: {v}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.used += 1
        try:
            if data is not None and len(data) <= _RECV:
                self.sendall(head + data)
            else:
                self.sendall(head)
                if data is not None:
                    self.sendall(data)
                elif stream is not None:
                    self._send_stream(stream, chunked)
        except WireError as e:
            # A server may answer (an error) and close before it reads the whole body:
            # the answer, if there is one, says more than the broken pipe.
            if e.reason not in ("connection closed while sending", "connection reset"):
                raise
            try:
                return self._response(method)
            except WireError:
                raise e from None
        return self._response(method)

    def _send_stream(self, stream: Any, chunked: bool) -> None:
        chunks: Iterable[Any]
        if hasattr(stream, "readinto"):
            chunks = _chunks_into(stream)
        elif hasattr(stream, "read"):
            chunks = iter(lambda: stream.read(SEND_CHUNK), b"")
        else:
            chunks = stream
        for chunk in chunks:
            if not chunk:
                continue
            if chunked:
                self.sendall(b"%x\r\n" % len(chunk))
                self.sendall(chunk)
                self.sendall(b"\r\n")
            else:
                self.sendall(chunk)
        if chunked:
            self.sendall(b"0\r\n\r\n")

    def _response(self, method: str) -> Response:
        while True:
            status_line, header_lines = self.read_head()
            version, status, reason = _status(status_line)
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue and other interim answers
            break
        headers = Headers()
        for line in header_lines:
            name, colon, value = line.partition(b":")
            if not colon:
                continue
            headers.add(name.strip().decode("latin-1"), value.strip().decode("latin-1"))
        return Response(self, method, version, status, reason, headers)


def _chunks_into(stream: Any) -> Iterator[bytes | memoryview]:
    """The bytes of *stream*, read into one buffer (each chunk is sent before the next read)."""
    buf = memoryview(bytearray(SEND_CHUNK))
    try:
        n = stream.readinto(buf)
    except NotImplementedError:  # an io.RawIOBase that only implements read()
        yield from iter(lambda: stream.read(SEND_CHUNK), b"")
        return
    while n:
        yield buf[:n]
        n = stream.readinto(buf)


def _status(line: bytes) -> tuple[int, int, str]:
    parts = line.split(None, 2)
    try:
        proto = parts[0].decode("ascii")
        status = int(parts[1])
    except (IndexError, ValueError, UnicodeDecodeError):
        raise WireError(
            f"not an HTTP answer: {line[:80]!r}" if line else "connection closed without an answer"
        ) from None
    if not proto.startswith("HTTP/") or not 100 <= status <= 999:
        raise WireError(f"not an HTTP answer: {line[:80]!r}")
    reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    return (10 if proto == "HTTP/1.0" else 11), status, reason


class Response:
    """The answer to one request: status and headers read, the body read on demand.

    :meth:`release_conn` hands the connection back to its pool when the body
    was read to its end (else closes it); :meth:`close` closes it.
    """

    def __init__(
        self,
        conn: Connection,
        method: str,
        version: int,
        status: int,
        reason: str,
        headers: Headers,
    ) -> None:
        self._conn: Connection | None = conn
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self._data: bytes | None = None
        self.pool: Pool | None = None
        connection = headers.get("Connection", "").lower()
        self._keep = ("close" not in connection) and (version == 11 or "keep-alive" in connection)
        self._chunked = False
        self._length: int | None = None
        self._read = 0  # body bytes read
        self._chunk_left = 0
        self._done = False
        self._error: WireError | None = None
        if method == "HEAD" or status in _BODYLESS_STATUS or 100 <= status < 200:
            self._length = 0
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._chunked = True
        else:
            value = headers.get("Content-Length", "")
            try:
                length = int(value.split(",")[0]) if value else -1
            except ValueError:
                length = -1
            if length >= 0:
                self._length = length
            else:
                self._keep = False  # the body ends when the connection does
        if self._length == 0:
            self._done = True

    @property
    def complete(self) -> bool:
        """True once the whole body was read."""
        return self._done

    @property
    def data(self) -> bytes:
        """The whole body (read on first use, then the connection is released)."""
        if self._data is None:
            self._data = self.read()
            self.release_conn()
        return self._data

    def read(self, amt: int | None = None) -> bytes:
        """Up to *amt* bytes of the body (all of it for None or a negative *amt*); fewer
        only at its end."""
        if self._data is not None:
            data, self._data = self._data, b""
            return data
        if amt is None or amt < 0:
            parts = []
            while chunk := self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        if (self._done and self._error is None) or amt == 0:
            return b""
        if self._length is not None:
            amt = max(1, min(amt, self._length - self._read))  # no larger buffer than the rest
            buf = bytearray(amt)
            n = self.readinto(memoryview(buf))
            return bytes(buf) if n == amt else bytes(buf[:n])
        parts = []  # no length: read in pieces, as large a body may not come
        while amt > 0:
            piece = bytearray(min(amt, _RECV * 4))
            n = self.readinto(memoryview(piece))
            parts.append(bytes(piece[:n]))
            amt -= n
            if n < len(piece):
                break
        return b"".join(parts)

    def readinto(self, view: memoryview) -> int:
        """Fill *view* with body bytes; fewer than its length only at the end of the body.

        When the connection fails part-way, the bytes read so far are returned
        and the failure is raised by the next call.
        """
        if self._error is not None:
            raise self._error
        got = 0
        want = len(view)
        while got < want and not self._done:
            try:
                n = self._read_some(view[got:])
            except WireError as e:
                if not got:
                    raise
                self._error = e
                break
            if n == 0:
                break
            got += n
        return got

    def _read_some(self, view: memoryview) -> int:
        conn = self._conn
        if conn is None:
            raise WireError("connection closed")
        if self._chunked:
            return self._read_chunked(conn, view)
        want = len(view)
        if self._length is not None:
            want = min(want, self._length - self._read)
        n = conn.recv_into(view[:want]) if want else 0
        if n == 0:
            if self._length is not None and self._read < self._length:
                got, total = self._read, self._length
                self._finish(reusable=False)
                raise WireError(f"connection closed early (got {got} of {total} bytes)")
            self._finish(reusable=False)  # read to the end of the connection
            return 0
        self._read += n
        if self._length is not None and self._read >= self._length:
            self._finish(reusable=True)
        return n

    def _read_chunked(self, conn: Connection, view: memoryview) -> int:
        try:
            if self._chunk_left == 0:
                line = conn.readline()
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise WireError(
                        f"invalid chunked encoding (size {size_text[:20]!r})", retryable=False
                    ) from None
                if size < 0:
                    raise WireError("invalid chunked encoding", retryable=False)
                if size == 0:
                    while conn.readline():  # trailers, up to the empty line
                        pass
                    self._finish(reusable=True)
                    return 0
                self._chunk_left = size
            n = conn.recv_into(view[: min(len(view), self._chunk_left)])
            if n == 0:
                raise WireError("connection closed early")
            self._chunk_left -= n
            self._read += n
            if self._chunk_left == 0 and conn.readline():
                raise WireError("invalid chunked encoding", retryable=False)
            return n
        except WireError as e:
            self._finish(reusable=False)
            if e.reason == "connection closed early":
                raise WireError(
                    f"connection closed early (got {self._read} bytes of a chunked body)"
                ) from None
            raise

    def _finish(self, reusable: bool) -> None:
        self._done = True
        if not reusable:
            self._keep = False
            if self._conn is not None:
                self._conn.close()

    def close(self) -> None:
        """Done with the answer: a body read to its end leaves the connection to its pool;
        otherwise the connection is shut down (a read in another thread ends) and closed."""
        if self._done and self._keep:
            self.release_conn()
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.leave_scope()
            conn.abort()

    def release_conn(self) -> None:
        """Hand the connection back to its pool if the body was read to its end, else close it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.leave_scope()
        if self._done and self._keep and conn.sock is not None and self.pool is not None:
            self.pool.put(conn)
        else:
            conn.close()

    def __del__(self) -> None:
        conn = self._conn
        if conn is not None:
            conn.leave_scope()
            conn.close()


class Pool:
    """Idle connections by (scheme, host:port, verify), at most *maxsize* kept per key."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._idle: dict[tuple[str, str, bool], list[Connection]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, bool]) -> Connection | None:
        """The most recently used idle connection of *key* that is still open, if any."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                conn = idle.pop()
            if not conn.dropped():
                return conn
            conn.close()

    def put(self, conn: Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(conn.key, [])
            if len(idle) < self.maxsize:
                idle.append(conn)
                return
        conn.close()

    def clear(self) -> None:
        """Close every idle connection."""
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()
