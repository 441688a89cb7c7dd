"""Digests: parsing, computing and streaming verification (no I/O beyond BytesIO)."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from luff.errors import DigestMismatch, InvalidDigest, LuffError
from luff.model.digest import CHUNK, Digest, VerifyingReader, is_digest, verify_bytes

DATA = b"hello, luff\n" * 1000
SHA256 = "sha256:" + hashlib.sha256(DATA).hexdigest()
SHA512 = "sha512:" + hashlib.sha512(DATA).hexdigest()


def test_parse_sha256_and_sha512() -> None:
    d = Digest.parse(SHA256)
    assert (d.algorithm, d.hex, str(d)) == ("sha256", SHA256[7:], SHA256)
    assert d.short == SHA256[7:19]
    d = Digest.parse(SHA512)
    assert (d.algorithm, len(d.hex), str(d)) == ("sha512", 128, SHA512)


def test_of() -> None:
    assert str(Digest.of(DATA)) == SHA256
    assert str(Digest.of(DATA, "sha512")) == SHA512
    assert Digest.of(b"") == Digest.parse(
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_hasher_is_fresh() -> None:
    d = Digest.parse(SHA512)
    h = d.hasher()
    h.update(DATA)
    assert h.hexdigest() == d.hex
    assert d.hasher().hexdigest() == hashlib.sha512().hexdigest()


def test_equality_and_order() -> None:
    assert Digest.parse(SHA256) == Digest.of(DATA)
    assert len({Digest.parse(SHA256), Digest.of(DATA)}) == 1
    a, b = Digest.parse("sha256:" + "0" * 64), Digest.parse("sha256:" + "f" * 64)
    assert sorted([b, a]) == [a, b]


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("", "expected ALGORITHM:HEX"),
        ("sha256", "expected ALGORITHM:HEX"),
        ("sha256:", "expected ALGORITHM:HEX"),
        (":" + "a" * 64, "expected ALGORITHM:HEX"),
        ("a" * 64, "expected ALGORITHM:HEX"),
        ("sha256:" + "a" * 63, "sha256 needs 64 lowercase hex"),
        ("sha256:" + "a" * 65, "sha256 needs 64 lowercase hex"),
        ("sha256:" + "A" * 64, "sha256 needs 64 lowercase hex"),
        ("sha256:" + "g" * 64, "sha256 needs 64 lowercase hex"),
        ("sha256:" + "a" * 128, "sha256 needs 64 lowercase hex"),
        ("sha512:" + "a" * 64, "sha512 needs 128 lowercase hex"),
        ("SHA256:" + "a" * 64, "expected ALGORITHM:HEX"),
        ("md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("sha1:" + "a" * 40, "unsupported digest algorithm 'sha1'"),
        ("blake3:" + "a" * 64, "unsupported digest algorithm 'blake3'"),
        ("sha256:../../etc/passwd", "expected ALGORITHM:HEX"),
        ("sha256:" + "a" * 62 + "/.", "expected ALGORITHM:HEX"),
        ("../sha256:" + "a" * 64, "expected ALGORITHM:HEX"),
        ("sha256:" + "a" * 64 + "\n", "expected ALGORITHM:HEX"),
        ("sha256:" + "a" * 64 + " ", "expected ALGORITHM:HEX"),
        (" sha256:" + "a" * 64, "expected ALGORITHM:HEX"),
        ("sha256:" + "a" * 64 + "\x00", "expected ALGORITHM:HEX"),
    ],
)
def test_invalid(text: str, part: str) -> None:
    with pytest.raises(InvalidDigest) as e:
        Digest.parse(text)
    assert part in str(e.value), str(e.value)
    assert isinstance(e.value, LuffError)
    assert not is_digest(text)


def test_is_digest() -> None:
    assert is_digest(SHA256)
    assert is_digest(SHA512)
    assert not is_digest("latest")


# --- verify_bytes ----------------------------------------------------------------


def test_verify_bytes_ok() -> None:
    verify_bytes(DATA, SHA256)
    verify_bytes(DATA, Digest.parse(SHA512), len(DATA))


def test_verify_bytes_wrong_content() -> None:
    with pytest.raises(DigestMismatch, match="does not match digest"):
        verify_bytes(DATA + b"x", SHA256)


def test_verify_bytes_wrong_size() -> None:
    with pytest.raises(DigestMismatch, match=f"expected {len(DATA) + 1} bytes"):
        verify_bytes(DATA, SHA256, len(DATA) + 1)


def test_verify_bytes_bad_digest_string() -> None:
    with pytest.raises(InvalidDigest):
        verify_bytes(DATA, "sha256:nope")


# --- VerifyingReader -----------------------------------------------------------


class Trickle(io.RawIOBase):
    """A stream that returns at most *step* bytes per read, like a socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._pos = 0
        self._step = step
        self.closed_called = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = len(self._data)
        chunk = self._data[self._pos : self._pos + min(n, self._step)]
        self._pos += len(chunk)
        return chunk

    def close(self) -> None:
        self.closed_called = True
        super().close()


def trickle(data: bytes, step: int) -> BinaryIO:
    return cast(BinaryIO, Trickle(data, step))


def read_all(r: VerifyingReader, n: int) -> bytes:
    out = bytearray()
    while True:
        b = r.read(n)
        if not b:
            return bytes(out)
        out += b


@pytest.mark.parametrize("digest", [SHA256, SHA512])
@pytest.mark.parametrize("n", [1, 7, 4096, 1 << 20])
def test_reader_success(digest: str, n: int) -> None:
    r = VerifyingReader(trickle(DATA, 1000), digest, len(DATA))
    assert read_all(r, n) == DATA
    assert r.read(10) == b""  # stays at EOF


def test_reader_read_all_at_once() -> None:
    r = VerifyingReader(io.BytesIO(DATA), SHA256, len(DATA))
    assert r.read() == DATA
    assert r.read() == b""


def test_reader_unknown_size() -> None:
    r = VerifyingReader(io.BytesIO(DATA), Digest.parse(SHA256), None)
    assert read_all(r, 100) == DATA


def test_reader_wrong_content() -> None:
    bad = DATA[:-1] + b"?"
    r = VerifyingReader(io.BytesIO(bad), SHA256, len(DATA))
    with pytest.raises(DigestMismatch, match=f"does not match digest {SHA256}"):
        read_all(r, 4096)


def test_reader_wrong_content_unknown_size() -> None:
    r = VerifyingReader(io.BytesIO(b"other"), SHA256, None)
    with pytest.raises(DigestMismatch):
        r.read()


def test_reader_short() -> None:
    r = VerifyingReader(io.BytesIO(DATA[:-10]), SHA256, len(DATA))
    with pytest.raises(
        DigestMismatch, match=f"expected {len(DATA)} bytes, received {len(DATA) - 10}"
    ):
        read_all(r, 4096)


def test_reader_too_long_stops_early() -> None:
    # More bytes than announced: the error comes as soon as the excess arrives,
    # not after reading the whole (possibly endless) stream.
    src = Trickle(DATA * 100, 100)
    r = VerifyingReader(cast(BinaryIO, src), SHA256, len(DATA))
    with pytest.raises(DigestMismatch, match="more than the expected"):
        read_all(r, 100)
    assert src._pos <= len(DATA) + 100
    assert r.read(100) == b""  # no further reads after the failure


def test_reader_read_zero_is_not_eof() -> None:
    r = VerifyingReader(io.BytesIO(DATA), SHA256, len(DATA))
    assert r.read(0) == b""
    assert read_all(r, 4096) == DATA


def test_reader_readinto() -> None:
    r = VerifyingReader(trickle(DATA, 333), SHA256, len(DATA))
    buf = bytearray(1000)
    out = bytearray()
    while n := r.readinto(buf):
        out += buf[:n]
    assert bytes(out) == DATA


def test_reader_iterates_in_chunks() -> None:
    big = DATA * 300  # > CHUNK
    r = VerifyingReader(io.BytesIO(big), Digest.of(big), len(big))
    chunks = list(r)
    assert b"".join(chunks) == big
    assert max(len(c) for c in chunks) <= CHUNK


def test_reader_iteration_detects_mismatch() -> None:
    r = VerifyingReader(io.BytesIO(DATA), Digest.of(b"x"), None)
    with pytest.raises(DigestMismatch):
        list(r)


def test_reader_closes_and_context_manager() -> None:
    src = Trickle(DATA, 10)
    with VerifyingReader(cast(BinaryIO, src), SHA256, len(DATA)) as r:
        assert r.readable()
        r.read(5)
    assert src.closed_called


def test_reader_works_with_copyfileobj() -> None:
    import shutil

    out = io.BytesIO()
    shutil.copyfileobj(VerifyingReader(trickle(DATA, 999), SHA256, len(DATA)), out, 4096)
    assert out.getvalue() == DATA


def test_reader_rejects_bad_digest_string() -> None:
    with pytest.raises(InvalidDigest):
        VerifyingReader(io.BytesIO(DATA), "sha256:../../etc/passwd", None)


@given(st.binary(max_size=3000), st.integers(1, 500), st.integers(1, 700))
def test_reader_property(data: bytes, step: int, n: int) -> None:
    r = VerifyingReader(trickle(data, step), Digest.of(data), len(data))
    assert read_all(r, n) == data


@given(st.binary(min_size=1, max_size=500), st.integers(0, 499), st.integers(1, 64))
def test_reader_detects_any_flipped_byte(data: bytes, pos: int, n: int) -> None:
    pos %= len(data)
    bad = bytearray(data)
    bad[pos] ^= 0x01
    r = VerifyingReader(io.BytesIO(bytes(bad)), Digest.of(data), len(data))
    with pytest.raises(DigestMismatch):
        read_all(r, n)
