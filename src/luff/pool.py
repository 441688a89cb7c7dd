"""A thread pool whose workers are always joined, even when a signal interrupts the caller.

``ThreadPoolExecutor`` starts a worker and then records it; a SIGINT/SIGTERM
handler that raises in the main thread between those two steps leaves a
running worker that ``shutdown(wait=True)`` never joins, so cleanup (removing a
staging directory, say) races with that worker still writing. Here the main
thread's SIGINT/SIGTERM handlers are deferred while a task is submitted, and
run as soon as the submission is complete and its worker is on record.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

_T = TypeVar("_T")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Run the SIGINT and SIGTERM handlers after the block instead of inside it.

    Only the main thread runs signal handlers; elsewhere this does nothing.
    A signal that arrives in the block is raised again once the previous
    handlers are back, so it is neither lost nor handled twice.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)

    saved: list[tuple[int, Any]] = []
    try:
        for s in _SIGNALS:
            old = signal.getsignal(s)
            if old is None:  # installed outside Python: leave it alone
                continue
            signal.signal(s, hold)
            saved.append((s, old))
        yield
    finally:
        for signum, handler in saved:
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)


class Pool(ThreadPoolExecutor):
    """``ThreadPoolExecutor`` that cannot lose track of a worker to a signal.

    Leaving the ``with`` block on an exception (an interrupt, say) cancels the
    tasks that have not started, then waits for the running ones.
    """

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        with signals_deferred():
            return super().submit(fn, *args, **kwargs)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
