"""Content digests: parsing, computing and streaming verification."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, BinaryIO

from luff.errors import DigestMismatch, InvalidDigest

if TYPE_CHECKING:
    import hashlib

_HEX = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")


class Digest:
    """A content digest such as ``sha256:<64 hex>``: a frozen value, ordered by
    ``(algorithm, hex)`` (written out, not a dataclass: it is made and compared often,
    and its module is loaded by every command)."""

    __slots__ = ("algorithm", "hex")
    algorithm: str
    hex: str

    def __init__(self, algorithm: str, hex: str) -> None:
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "hex", hex)

    def __setattr__(self, name: str, value: Any) -> None:
        from luff.record import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from luff.record import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Digest, (self.algorithm, self.hex))

    def __repr__(self) -> str:
        return f"Digest(algorithm={self.algorithm!r}, hex={self.hex!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Digest:
            return NotImplemented
        return self.hex == other.hex and self.algorithm == other.algorithm

    def __hash__(self) -> int:
        return hash((self.algorithm, self.hex))

    def __lt__(self, other: Digest) -> bool:
        if other.__class__ is not Digest:
            return NotImplemented
        return (self.algorithm, self.hex) < (other.algorithm, other.hex)

    def __le__(self, other: Digest) -> bool:
        if other.__class__ is not Digest:
            return NotImplemented
        return (self.algorithm, self.hex) <= (other.algorithm, other.hex)

    def __gt__(self, other: Digest) -> bool:
        if other.__class__ is not Digest:
            return NotImplemented
        return (self.algorithm, self.hex) > (other.algorithm, other.hex)

    def __ge__(self, other: Digest) -> bool:
        if other.__class__ is not Digest:
            return NotImplemented
        return (self.algorithm, self.hex) >= (other.algorithm, other.hex)

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
        if algorithm == "sha256" and len(data) <= _SMALL:
            return cls(algorithm, _small_sha256(data))
        import hashlib

        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm."""
        import hashlib

        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        """The first 12 hex characters, for display."""
        return self.hex[:12]


#: Data up to this size (manifests, configs) is hashed by Python's own SHA-256: loading
#: OpenSSL's (hashlib) costs more than it saves there. Blobs are hashed with hashlib.
_SMALL = 1 << 20


def _small_sha256(data: bytes) -> str:
    global _sha256
    if _sha256 is None:
        # The builtin module: _sha256 up to Python 3.11, _sha2 since; hashlib without them.
        for name in ("_sha256", "_sha2", "hashlib"):
            try:
                _sha256 = __import__(name).sha256
                break
            except ImportError:
                continue
    return str(_sha256(data).hexdigest())


_sha256: Any = None


def is_digest(text: str) -> bool:
    """True when *text* is a valid supported digest."""
    try:
        Digest.parse(text)
    except InvalidDigest:
        return False
    return True


def readinto(stream: Any, b: bytearray | memoryview) -> int | None:
    """``stream.readinto(b)``, or None when the stream has no (working) ``readinto``."""
    into = getattr(stream, "readinto", None)
    if into is None:
        return None
    try:
        return int(into(b))
    except NotImplementedError:  # an io.RawIOBase that only implements read()
        return None


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
        """Fill *b* from the stream (its own ``readinto`` when it has one), hashed."""
        if self._done or not len(b):
            return 0
        n = readinto(self._stream, b)
        if n is None:
            data = self.read(len(b))
            b[: len(data)] = data
            return len(data)
        if n:
            self._count += n
            self._hash.update(memoryview(b)[:n])
            if self.size is not None and self._count > self.size:
                self._done = True
                raise DigestMismatch(
                    f"{self.digest}: received more than the expected {self.size} bytes"
                )
        else:
            self._finish()
        return int(n)

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
