"""Reading a stream ahead of its consumer, in a thread of its own.

A big blob goes through three steps per chunk: receive it, hash it, write it
(to a file or another connection). In one thread they take turns; here the
receiving runs in a second thread, a few chunks ahead, while the consumer
hashes and writes: all three release the GIL for the bulk of their work, so
on two cores the transfer takes about as long as its slowest step instead
of the sum of all three (what ``curl | sha256sum`` gets from two processes).
"""

from __future__ import annotations

import contextlib
import threading
from queue import SimpleQueue
from typing import Any

from luff import cancel

#: Bytes per buffer.
CHUNK = 1 << 20
#: Buffers between the reader and the consumer.
DEPTH = 4


class ReadAhead:
    """A stream that reads the stream it wraps (by ``readinto``) in a background thread.

    The thread runs in the cancel scope of the thread that made it, so a
    cancel stops its reads (and its reconnections) as it stops the consumer's.
    A failure of the reader is raised by the consumer's next read.
    """

    def __init__(self, stream: Any, chunk: int = CHUNK, depth: int = DEPTH) -> None:
        self._stream = stream
        self._free: SimpleQueue[bytearray | None] = SimpleQueue()
        self._full: SimpleQueue[tuple[bytearray | None, int, BaseException | None]] = SimpleQueue()
        for _ in range(depth):
            self._free.put(bytearray(chunk))
        self._buf: bytearray | None = None  # the buffer being consumed
        self._view = memoryview(b"")
        self._eof = False
        self._closed = False
        scope = cancel.current()
        self._thread = threading.Thread(
            target=self._run, args=(scope,), name="luff-readahead", daemon=True
        )
        self._thread.start()

    def _run(self, scope: cancel.CancelScope | None) -> None:
        with cancel.entered(scope) if scope is not None else contextlib.nullcontext():
            try:
                while True:
                    buf = self._free.get()
                    if buf is None:
                        return  # closed
                    n = self._stream.readinto(memoryview(buf))
                    self._full.put((buf, n, None))
                    if not n:
                        return
            except BaseException as e:
                self._full.put((None, 0, e))

    def _next(self) -> bool:
        """Move to the next filled buffer; False at the end."""
        if self._buf is not None:
            self._free.put(self._buf)
            self._buf = None
        if self._eof:
            return False
        buf, n, error = self._full.get()
        if error is not None:
            self._eof = True
            raise error
        if not n:
            self._eof = True
            return False
        self._buf = buf
        assert buf is not None
        self._view = memoryview(buf)[:n]
        return True

    def readinto(self, b: bytearray | memoryview) -> int:
        """Copy the next bytes into *b* (at most one buffer's worth); 0 at the end."""
        if not len(b):
            return 0
        if not self._view and not self._next():
            return 0
        n = min(len(b), len(self._view))
        b[:n] = self._view[:n]
        self._view = self._view[n:]
        return n

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if not n or (not self._view and not self._next()):
            return b""
        data = bytes(self._view[:n])
        self._view = self._view[len(data) :]
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Stop reading and close the wrapped stream (which ends a read in progress)."""
        if self._closed:
            return
        self._closed = True
        self._free.put(None)
        self._stream.close()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
