"""luff.pool: a signal that interrupts the caller never leaves a worker unjoined."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

import pytest

from luff.pool import Pool


class _Stop(BaseException):
    pass


def test_signal_during_submit_is_raised_after_every_worker_is_recorded() -> None:
    """The worker signals the process while the caller is still submitting; when the
    exception reaches the caller, the pool has joined that worker."""
    assert threading.current_thread() is threading.main_thread()
    done: list[int] = []

    def work(i: int) -> None:
        if i == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        done.append(i)

    def raise_stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop()

    old = signal.signal(signal.SIGTERM, raise_stop)
    try:
        with pytest.raises(_Stop), Pool(max_workers=4, thread_name_prefix="signal-test") as pool:
            for i in range(4):
                pool.submit(work, i)
            time.sleep(10)
        # every task that started has finished: shutdown(wait=True) saw all the workers
        alive = [t for t in threading.enumerate() if t.name.startswith("signal-test")]
        assert alive == []
        assert 0 in done
    finally:
        signal.signal(signal.SIGTERM, old)


def test_leaving_on_an_exception_cancels_queued_tasks() -> None:
    """An interrupt during a long plan does not wait for every queued lookup to run."""
    ran: list[int] = []
    with pytest.raises(_Stop), Pool(max_workers=1) as pool:
        pool.submit(time.sleep, 0.2)
        for i in range(5):
            pool.submit(ran.append, i)
        raise _Stop()
    assert ran == []


def test_signals_racing_the_restore_still_reach_their_handlers() -> None:
    """SIGINT fired at random moments of many submits: afterwards SIGTERM still reaches
    the caller's handler (the stand-in never swallows it) and Ctrl-C still raises."""
    import random

    def raise_stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop()

    import gc

    old = signal.signal(signal.SIGTERM, raise_stop)
    gc.disable()  # a KeyboardInterrupt raised inside a gc callback would be swallowed
    try:
        for _ in range(30):

            def interrupt() -> None:
                time.sleep(random.random() * 0.01)
                os.kill(os.getpid(), signal.SIGINT)

            t = threading.Thread(target=interrupt)
            try:
                try:
                    t.start()  # the interrupt may come before start() returns
                    with Pool(max_workers=2) as pool:
                        for _ in range(20000):
                            pool.submit(int)
                        time.sleep(1)
                finally:
                    t.join()
                time.sleep(1)  # the interrupt always comes, here at the latest
            except KeyboardInterrupt:
                pass
            with pytest.raises(_Stop):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            assert signal.getsignal(signal.SIGTERM) is raise_stop
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
    finally:
        gc.enable()
        signal.signal(signal.SIGTERM, old)


def test_nested_pools_share_one_limit() -> None:
    """-j is one limit for a whole operation: work started inside a task runs in that
    task's slot instead of adding threads, so nesting never exceeds the limit."""
    import threading
    import time

    from luff.pool import Limiter, run_all

    limiter = Limiter(3)
    lock = threading.Lock()
    busy = 0
    most = 0

    def leaf(_: int) -> None:
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)
        time.sleep(0.01)
        with lock:
            busy -= 1

    def parent(_: int) -> None:
        leaf(0)
        run_all(leaf, list(range(5)), limiter)  # nested: no new slots

    run_all(parent, list(range(8)), limiter)
    assert most <= 3
    assert most >= 2  # it did run concurrently
