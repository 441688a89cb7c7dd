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


def test_workers_hold_back_sigint_and_sigterm() -> None:
    """Workers never take SIGINT/SIGTERM, so the kernel hands them to the main thread."""
    with Pool(max_workers=2) as pool:
        masks = list(pool.map(lambda _: signal.pthread_sigmask(signal.SIG_BLOCK, []), range(4)))
    assert all({signal.SIGINT, signal.SIGTERM} <= m for m in masks)
    # ... and the caller's own mask is left as it was
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


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
        with pytest.raises(_Stop), Pool(max_workers=4) as pool:
            for i in range(4):
                pool.submit(work, i)
            time.sleep(10)
        # every task that started has finished: shutdown(wait=True) saw all the workers
        alive = [t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor")]
        assert alive == []
        assert 0 in done
    finally:
        signal.signal(signal.SIGTERM, old)
