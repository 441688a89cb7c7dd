"""Content digests: parsing, computing and streaming verification."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import BinaryIO

from luff.errors import DigestMismatch, InvalidDigest

_HEX = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")


@dataclass(frozen=True, order=True)
class Digest:
    """A content digest such as ``sha256:<64 hex>``."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate *text*; only sha256 and sha512 are accepted."""
        m = _DIGEST_RE.fullmatch(text)
        if not m:
            raise InvalidDigest(f"invalid digest {text!r}: expected ALGORITHM:HEX")
        alg, hx = m.group(1), m.group(2)
        if alg not in _HEX:
            raise InvalidDigest(f"unsupported digest algorithm {alg!r} in {text!r}")
        if len(hx) != _HEX[alg] or not re.fullmatch(r"[0-9a-f]+", hx):
            raise InvalidDigest(
                f"invalid digest {text!r}: {alg} needs {_HEX[alg]} lowercase hex characters"
            )
        return cls(alg, hx)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """Digest of *data*."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        """The first 12 hex characters, for display."""
        return self.hex[:12]


def is_digest(text: str) -> bool:
    """True when *text* is a valid supported digest."""
    try:
        Digest.parse(text)
    except InvalidDigest:
        return False
    return True


class VerifyingReader:
    """Wraps a binary stream; raises :class:`DigestMismatch` when it ends wrong.

    The check happens when the underlying stream reports EOF, and also when
    more bytes than *size* arrive.
    """

    def __init__(self, stream: BinaryIO, digest: Digest | str, size: int | None) -> None:
        self._stream = stream
        self.digest = digest if isinstance(digest, Digest) else Digest.parse(digest)
        self.size = size
        self._hash = self.digest.hasher()
        self._count = 0
        self._done = False

    def read(self, n: int = -1) -> bytes:
        """Up to *n* bytes (all, when negative), hashed on the way; at the end of the
        stream, raises :class:`~luff.errors.DigestMismatch` if size or digest differ."""
        if self._done or n == 0:
            return b""
        data = self._stream.read(n)
        if data:
            self._count += len(data)
            self._hash.update(data)
            if self.size is not None and self._count > self.size:
                self._done = True
                raise DigestMismatch(
                    f"{self.digest}: received more than the expected {self.size} bytes"
                )
        if not data or (n is not None and n < 0):
            self._finish()
        return data

    def _finish(self) -> None:
        self._done = True
        if self.size is not None and self._count != self.size:
            raise DigestMismatch(
                f"{self.digest}: expected {self.size} bytes, received {self._count}"
            )
        got = self._hash.hexdigest()
        if got != self.digest.hex:
            raise DigestMismatch(
                f"content does not match digest {self.digest} (got {self.digest.algorithm}:{got})"
            )

    def readinto(self, b: bytearray | memoryview) -> int:
        """Read into *b*, as :meth:`read` does; returns the number of bytes."""
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        """Always True."""
        return True

    def close(self) -> None:
        """Close the underlying stream (without checking what was not read)."""
        self._stream.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> VerifyingReader:
        return self

    def __next__(self) -> bytes:
        data = self.read(CHUNK)
        if not data:
            raise StopIteration
        return data


CHUNK = 1 << 20


def verified_digest(stream: object) -> Digest | None:
    """The digest *stream* checks as it is read, if it is (or wraps) a :class:`VerifyingReader`.

    Wrappers expose what they wrap as ``__wrapped__``. A store writing such a
    stream to the end need not hash it a second time: the reader raises
    :class:`DigestMismatch` at EOF before the write can be committed.
    """
    for _ in range(8):
        if isinstance(stream, VerifyingReader):
            return stream.digest
        stream = getattr(stream, "__wrapped__", None)
        if stream is None:
            return None
    return None


def verify_bytes(data: bytes, digest: Digest | str, size: int | None = None) -> None:
    """Raise :class:`DigestMismatch` unless *data* matches *digest* (and *size*)."""
    d = digest if isinstance(digest, Digest) else Digest.parse(digest)
    if size is not None and len(data) != size:
        raise DigestMismatch(f"{d}: expected {size} bytes, received {len(data)}")
    got = Digest.of(data, d.algorithm)
    if got != d:
        raise DigestMismatch(f"content does not match digest {d} (got {got})")
