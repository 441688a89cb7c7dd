"""luff.readahead: a stream read in a thread of its own gives the same bytes, its errors
reach the consumer, and closing it ends a read in progress; big blobs go through it."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from luff import cancel
from luff.context import Context
from luff.errors import TransportError
from luff.model.digest import Digest
from luff.ops import basic, layout
from luff.readahead import ReadAhead
from luff.registry.auth import ANONYMOUS
from luff.stores.registry import READ_AHEAD, RegistryStore
from luff.testing import random_image
from tests.conftest import Reg
from tests.faultproxy import FaultProxy, Rule


class Pieces(io.RawIOBase):
    """Returns *data* in pieces of *step* bytes, then raises *error* (if any) at the end."""

    def __init__(self, data: bytes, step: int, error: BaseException | None = None) -> None:
        self._data = memoryview(data)
        self._step = step
        self._error = error
        self.closed_by: list[str] = []

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._data and self._error is not None:
            raise self._error
        n = min(len(b), self._step, len(self._data))
        b[:n] = self._data[:n]
        self._data = self._data[n:]
        return n

    def close(self) -> None:
        self.closed_by.append(threading.current_thread().name)
        super().close()


@pytest.mark.parametrize("step", [1, 1000, 1 << 20, 3 << 20])
def test_the_same_bytes_by_read_and_readinto(step: int) -> None:
    # Byte by byte, 5 MiB took four minutes: the same shapes, scaled down 256 times.
    scale = 256 if step == 1 else 1
    data = os.urandom(((5 << 20) + 123) // scale)
    with ReadAhead(Pieces(data, step), chunk=(1 << 20) // scale, depth=2) as r:
        out = bytearray()
        buf = bytearray(300_001 // scale)
        while n := r.readinto(buf):
            out += buf[:n]
            out += r.read(777)
    assert bytes(out) == data


def test_an_error_of_the_reader_is_raised_by_the_consumer() -> None:
    r = ReadAhead(Pieces(b"x" * 5000, 1000, TransportError("connection reset")), chunk=1024)
    got = bytearray()
    with pytest.raises(TransportError, match="connection reset"):
        while chunk := r.read(100):
            got += chunk
    assert bytes(got) == b"x" * 5000
    r.close()


def test_closing_ends_a_read_in_progress() -> None:
    started, release = threading.Event(), threading.Event()
    released: list[bool] = []

    class Stalls(Pieces):
        def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
            started.set()
            released.append(release.wait(10))  # False: nothing closed the stream meanwhile
            if self.closed_by:
                raise TransportError("closed")
            return 0

        def close(self) -> None:
            super().close()
            release.set()  # as a socket shut down under a blocked read

    s = Stalls(b"", 1)
    r = ReadAhead(s)
    assert started.wait(10)
    r.close()
    r._thread.join(10)
    assert not r._thread.is_alive() and s.closed_by
    assert released == [True]  # the read ended because close() closed the stream


def test_the_reader_runs_in_the_callers_cancel_scope() -> None:
    scope = cancel.CancelScope()
    seen: list[cancel.CancelScope | None] = []

    class Looks(Pieces):
        def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
            seen.append(cancel.current())
            return 0

    with cancel.entered(scope):
        ReadAhead(Looks(b"", 1)).read()
    assert seen == [scope]


@pytest.fixture
def big(registry: Reg) -> Iterator[tuple[str, Digest]]:
    ctx = Context(credentials=lambda h: ANONYMOUS)
    img = random_image(size=READ_AHEAD + 1000)
    img.push(f"{registry.host}/readahead/big:1", ctx)
    ctx.close()
    yield f"{registry.host}/readahead/big:1", img.digest


def test_a_big_blob_cut_off_mid_body_is_resumed_through_the_read_ahead(
    registry: Reg, big: tuple[str, Digest], tmp_path: Path
) -> None:
    ref, digest = big
    proxy = FaultProxy(registry.host)
    try:
        rule = proxy.add(Rule("GET", r"/blobs/sha256:", "cut", times=1))
        ctx = Context(credentials=lambda h: ANONYMOUS, backoff=0.01)
        here = ref.replace(registry.host, proxy.host)
        layout.pull(here, str(tmp_path / "out"), ctx=ctx)
        assert rule.hits == 1
        store = RegistryStore(ctx.client(proxy.host), "readahead/big")
        m = store.fetch_manifest(store.resolve("1"))
        assert m.digest == digest
        assert (tmp_path / "out" / "blobs" / "sha256" / m.layers[0].digest.hex).stat().st_size == (
            m.layers[0].size
        )
        basic.copy(here, f"{proxy.host}/readahead/copy:1", ctx=ctx)
        assert basic.digest(f"{registry.host}/readahead/copy:1", ctx=ctx).digest == digest
    finally:
        proxy.stop()
