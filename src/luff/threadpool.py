"""The thread pool of :mod:`luff.pool` (kept apart: it imports :mod:`concurrent.futures`)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from luff import cancel
from luff.pool import signals_deferred

_T = TypeVar("_T")


class Workers(ThreadPoolExecutor):
    """The threads of a :class:`~luff.pool.Limiter`: started as work comes (at most its
    size), then kept, so that an operation's pools do not each start their own.

    Submitting defers SIGINT and SIGTERM as :class:`Pool` does; the tasks
    bring their own cancel scope (see :func:`luff.pool.run_all`).
    """

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        # Signals are deferred while a submit may start a thread (see luff.pool); once
        # every worker runs, a submit only queues the task.
        if len(self._threads) < self._max_workers:
            with signals_deferred():
                return super().submit(fn, *args, **kwargs)
        return super().submit(fn, *args, **kwargs)


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
