"""Response bodies read with bounds: decoded here, never more than asked for.

The connection layer (:mod:`luff.registry.connections`) never decodes, and
a "gzip bomb" of 1 MiB can inflate to a gigabyte: :class:`Body` takes the
raw bytes and inflates them itself, at most as many bytes as the caller
asked for; :func:`read_capped` reads a whole body up to a cap (after
decoding) and raises :class:`LimitExceeded` beyond it.

The caps on bodies read whole:

- :data:`MAX_SMALL` (1 MiB): ``/v2/`` pings, token responses, upload answers;
- :data:`MAX_PAGE` (4 MiB): one page of a tag list, catalog or referrers index;
- :data:`MAX_ERROR` (64 KiB): error bodies, truncated rather than refused.

Manifests use :data:`luff.model.manifest.MAX_MANIFEST` (4 MiB).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from luff import cancel
from luff.errors import LimitExceeded, RegistryError, TransportError
from luff.registry.connections import WireError

if TYPE_CHECKING:
    import zlib

    from luff.registry.connections import Response

MAX_SMALL = 1 << 20
MAX_PAGE = 4 << 20
MAX_ERROR = 64 << 10
_RAW_CHUNK = 16 << 10  # raw bytes per read: inflating one gives at most ~16 MiB


class Body:
    """The body of a streamed response, decoded (gzip, deflate) as it is read.

    A connection failure while reading raises :class:`TransportError`; a
    ``Content-Encoding`` other than gzip, deflate or identity is refused.
    """

    def __init__(self, resp: Response, where: str) -> None:
        self._resp = resp
        self.where = where
        self.headers = resp.headers
        self.status = resp.status
        enc = resp.headers.get("Content-Encoding", "").strip().lower()
        self._encoding = enc
        self._z: zlib._Decompress | None = None
        if enc not in ("", "identity"):
            import zlib
        if enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.decompressobj()
        elif enc not in ("", "identity"):
            self.close()
            raise RegistryError(f"unsupported Content-Encoding {enc!r}", where=where)
        self._first = True
        self._eof = False

    def _raw(self, n: int) -> bytes:
        try:
            return self._resp.read(n)
        except WireError as e:
            cancel.check()  # the connection was shut down on purpose
            raise TransportError(
                f"connection lost while reading: {e.reason}", where=self.where
            ) from None

    def readinto(self, view: memoryview) -> int:
        """Fill *view* with decoded bytes (fewer only at the end); 0 at the end."""
        if self._z is not None:
            data = self.read(len(view))
            view[: len(data)] = data
            return len(data)
        if self._eof:
            return 0
        try:
            n = self._resp.readinto(view)
        except WireError as e:
            cancel.check()
            raise TransportError(
                f"connection lost while reading: {e.reason}", where=self.where
            ) from None
        if n == 0:
            self._eof = True
        return n

    def read(self, n: int | None = -1) -> bytes:
        """Up to *n* decoded bytes (all of them for ``-1``); ``b""`` at the end."""
        if n is None or n < 0:
            return read_all(self.read)
        if n == 0 or self._eof:
            return b""
        if self._z is None:
            data = self._raw(n)
            if not data:
                self._eof = True
            return data
        return self._inflate(n)

    def _inflate(self, n: int) -> bytes:
        import zlib

        z = self._z
        assert z is not None
        out = bytearray()
        while len(out) < n:
            if z.unconsumed_tail:
                raw = z.unconsumed_tail
            elif z.eof and z.unused_data and self._encoding != "deflate":
                raw = z.unused_data  # another gzip member follows
                z = self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                raw = self._raw(_RAW_CHUNK)
                if not raw:
                    self._eof = True
                    break
                if z.eof:
                    if self._encoding == "deflate":
                        continue  # trailing bytes after the stream: ignored
                    z = self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            if self._first and self._encoding == "deflate":
                try:
                    zlib.decompressobj().decompress(raw, 1)
                except zlib.error:
                    # "deflate" is often sent without its zlib header.
                    z = self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            self._first = False
            try:
                out += z.decompress(raw, n - len(out))
            except zlib.error:
                raise TransportError("corrupt compressed body", where=self.where) from None
        return bytes(out)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Close the response; a connection with unread bytes is not reused."""
        self._resp.close()
        self._resp.release_conn()

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_all(read: Callable[[int], bytes]) -> bytes:
    """Everything *read* gives, a MiB at a time."""
    parts = []
    while chunk := read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def declared_length(resp: Response) -> int | None:
    """The ``Content-Length`` of an unencoded body, if the server gave one."""
    value = resp.headers.get("Content-Length", "")
    if value.isdigit() and resp.headers.get("Content-Encoding", "identity") == "identity":
        return int(value)
    return None


def read_capped(resp: Response, cap: int, what: str, where: str) -> bytes:
    """The whole (decoded) body of *resp*; over *cap* bytes raises :class:`LimitExceeded`.

    *what* names the body in the error (``"token response"``). The response
    is released either way.
    """
    too_large = f"{what} larger than {cap} bytes"
    with Body(resp, where) as body:
        length = declared_length(resp)
        if length is not None and length > cap:
            raise LimitExceeded(too_large, where=where)
        data = body.read(cap + 1)
        if len(data) > cap:
            raise LimitExceeded(too_large, where=where)
        if body.read(1):
            raise LimitExceeded(too_large, where=where)
    return data


def read_truncated(resp: Response, cap: int = MAX_ERROR) -> bytes:
    """At most *cap* bytes of the body (an error's): the rest is not read."""
    try:
        with Body(resp, "") as body:
            return body.read(cap)
    except (TransportError, RegistryError):
        return b""


def discard(resp: Response) -> None:
    """Finish with a response whose body does not matter.

    A short body is read so the connection can be reused; a long one is not
    read at all, and the connection is closed instead.
    """
    try:
        length = declared_length(resp)
        if length is None or length <= MAX_ERROR:
            resp.read(MAX_ERROR + 1)
            if resp.read(1):
                resp.close()  # more to come: not worth reading
        else:
            resp.close()
    except Exception:
        resp.close()
    resp.release_conn()
