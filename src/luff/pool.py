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

from luff import cancel

_T = TypeVar("_T")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Run the SIGINT and SIGTERM handlers after the block instead of inside it.

    Only the main thread runs signal handlers; elsewhere this does nothing.
    Each signal that arrives in the block is handed, once the previous
    handlers are back, to its handler, so none is lost or handled twice.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    saved: dict[int, Any] = {}
    deferring = True

    def hold(signum: int, frame: object) -> None:
        if deferring:
            pending.append(signum)
            return
        # The block is over but this stand-in is still installed (a signal interrupted
        # the restoring): put the real handler back and let it have the signal.
        signal.signal(signum, saved[signum])
        _deliver([signum])

    try:
        for s in _SIGNALS:
            old = signal.getsignal(s)
            if old is None:  # installed outside Python: leave it alone
                continue
            saved[s] = old
            signal.signal(s, hold)
        yield
    finally:
        deferring = False
        try:
            for signum, handler in saved.items():
                signal.signal(signum, handler)
        finally:
            _deliver(list(dict.fromkeys(pending)))


def _deliver(signums: list[int]) -> None:
    """Call the handler of each signal in turn, even when an earlier one raises."""
    if not signums:
        return
    try:
        handler = signal.getsignal(signums[0])
        if callable(handler):
            handler(signums[0], None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signums[0])
    finally:
        _deliver(signums[1:])


class Pool(ThreadPoolExecutor):
    """``ThreadPoolExecutor`` that cannot lose track of a worker to a signal.

    Its tasks run in a :class:`~luff.cancel.CancelScope` (a child of the
    caller's). Leaving the ``with`` block on an exception (an interrupt, say)
    cancels that scope, so running tasks' connections are shut down, drops
    the tasks that have not started, and waits for the running ones.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scope = cancel.CancelScope(parent=cancel.current())

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        scope = self.scope

        def run() -> _T:
            with cancel.entered(scope):
                return fn(*args, **kwargs)

        with signals_deferred():
            return super().submit(run)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.scope.cancel()
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        self.scope.close()
