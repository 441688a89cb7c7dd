"""A thread pool whose workers are always joined, even when a signal interrupts the caller.

``ThreadPoolExecutor`` starts a worker and then records it; a SIGINT/SIGTERM
that the main thread turns into an exception between those two steps leaves a
running worker that ``shutdown(wait=True)`` never joins, so cleanup (removing a
staging directory, say) can race with that worker still writing. Here the
signals are held back while a task is submitted, so they are raised only once
every started worker is on record.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

_T = TypeVar("_T")
_HELD = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def signals_held() -> Iterator[None]:
    """Defer SIGINT and SIGTERM in this thread until the block ends.

    Threads started inside the block inherit the mask, so the kernel later
    delivers these signals to a thread that can take them (the main one).
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not on POSIX
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Pool(ThreadPoolExecutor):
    """``ThreadPoolExecutor`` that cannot lose track of a worker to a signal."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        with signals_held():
            return super().submit(fn, *args, **kwargs)
