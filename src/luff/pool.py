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
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from luff import cancel

if TYPE_CHECKING:
    from concurrent.futures import Future

    from luff.threadpool import Pool, Workers

__all__ = ["Limiter", "Pool", "run_all", "signals_deferred"]

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


class Limiter:
    """At most *size* tasks of one operation at work at once, however their pools nest.

    A task takes a slot for as long as it runs (:meth:`slot`). Work started
    from inside a task that holds a slot runs in that task's thread, one
    item after another (:func:`run_all`), so nesting never exceeds the limit
    and never waits for a slot its own parent holds.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._sem = threading.Semaphore(self.size)
        self._local = threading.local()
        self._workers: Workers | None = None
        self._lock = threading.Lock()

    def workers(self) -> Workers:
        """The threads that run this limiter's tasks (made on first use, then kept)."""
        with self._lock:
            if self._workers is None:
                from luff.threadpool import Workers

                self._workers = Workers(max_workers=self.size, thread_name_prefix="luff")
            return self._workers

    def close(self, wait: bool = True) -> None:
        """End the worker threads (once the tasks given to them are done, with *wait*)."""
        with self._lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=wait)

    def held(self) -> bool:
        """True when the calling thread holds a slot."""
        return bool(getattr(self._local, "depth", 0))

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the block (re-entrant; waits are cut short by a cancel)."""
        depth = getattr(self._local, "depth", 0)
        if not depth:
            while not self._sem.acquire(timeout=0.05):
                cancel.check()
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if not depth:
                self._sem.release()


_R = TypeVar("_R")


def __getattr__(name: str) -> object:
    # Pool is in its own module: concurrent.futures (and logging with it) is imported
    # only by work that runs in threads.
    if name == "Pool":
        from luff.threadpool import Pool

        return Pool
    raise AttributeError(f"module 'luff.pool' has no attribute {name!r}")


def run_all(fn: Callable[[_T], _R], items: list[_T], limiter: Limiter) -> list[_R]:
    """``[fn(x) for x in items]``, up to ``limiter.size`` at a time; results in order.

    The calls run in the limiter's worker threads (started once, then reused
    by every call of an operation: a thread start is a wait for the scheduler,
    long on a busy machine), in a cancel scope of their own, a child of the
    caller's. After the first error (or an interrupt of the caller) the scope
    is cancelled: no further call starts, and running ones stop at once (their
    connections are shut down, see :mod:`luff.cancel`). The running calls are
    awaited, then the first error is raised. Called from a task that already
    holds a slot, the items run one by one in this thread.
    """
    if not items:
        return []
    if limiter.held() or len(items) == 1:
        return [fn(x) for x in items]
    errors: list[BaseException] = []
    results: list[Any] = [None] * len(items)
    scope = cancel.CancelScope(parent=cancel.current())

    def run(i: int, x: _T) -> None:
        if scope.cancelled:
            return
        with cancel.entered(scope):
            try:
                with limiter.slot():
                    if not scope.cancelled:
                        results[i] = fn(x)
            except BaseException as e:
                errors.append(e)
                scope.cancel()

    futures: list[Future[None]] = []
    try:
        workers = limiter.workers()
        for i, x in enumerate(items):
            futures.append(workers.submit(run, i, x))
        for f in futures:
            f.result()
    except BaseException:
        # Interrupted (or the workers are shut down): stop the calls, drop those not
        # started, and wait for the running ones before the caller cleans up.
        scope.cancel()
        for f in futures:
            f.cancel()
        from concurrent.futures import wait

        wait(futures)
        raise
    finally:
        scope.close()
    if errors:
        first = errors[0]
        errors.clear()  # the list and the traceback's frames would keep each other alive
        raise first
    return results
