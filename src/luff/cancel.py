"""Cancelling work that runs in other threads: a scope, checks, sleeps and connections.

A :class:`CancelScope` is entered by each worker thread of one job (a copy's
transfers). When the job stops (the caller was interrupted, or another
transfer failed), :meth:`CancelScope.cancel` sets its event and shuts down
every connection the scope's threads have used, so a thread blocked in a
read, a write or a wait for response headers returns at once; retries and
backoff sleeps in the scope end with :class:`Cancelled`.
"""

from __future__ import annotations

import _socket
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Protocol


class Cancelled(BaseException):
    """The job this thread works for was stopped (not an error of its own)."""


class _HasSocket(Protocol):
    sock: _socket.socket | None


class CancelScope:
    """Shared by the threads of one job; :meth:`cancel` stops them all."""

    def __init__(self, parent: CancelScope | None = None) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[_HasSocket] = set()
        self._children: set[CancelScope] = set()
        self._parent = parent
        if parent is not None:
            parent._adopt(self)

    def _adopt(self, child: CancelScope) -> None:
        with self._lock:
            self._children.add(child)
        if self.event.is_set():
            child.cancel()

    def close(self) -> None:
        """The job is over: its parent no longer needs to cancel it."""
        if self._parent is not None:
            with self._parent._lock:
                self._parent._children.discard(self)

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self.event.is_set()

    def cancel(self) -> None:
        """Stop the job: set the event and shut down the connections in use."""
        self.event.set()
        with self._lock:
            conns = list(self._connections)
            children = list(self._children)
        for child in children:
            child.cancel()
        for c in conns:
            sock = c.sock
            if sock is not None:
                # The plain socket's shutdown: SSLSocket's would tear down its TLS state
                # under a thread that is still reading.
                with contextlib.suppress(OSError):
                    _socket.socket.shutdown(sock, _socket.SHUT_RDWR)

    def track(self, conn: _HasSocket) -> None:
        """Record a connection this scope's thread is about to use (raises when cancelled).

        It stays recorded until :meth:`forget`, when it goes back to its pool, so a
        cancel never reaches a connection that another job has taken since.
        """
        with self._lock:
            self._connections.add(conn)
        if self.event.is_set():
            raise Cancelled()

    def forget(self, conn: _HasSocket) -> None:
        """The connection is no longer used by this scope."""
        with self._lock:
            self._connections.discard(conn)


_local = threading.local()


@contextlib.contextmanager
def entered(scope: CancelScope) -> Iterator[None]:
    """Run the block (in this thread) as part of *scope*."""
    prev = getattr(_local, "scope", None)
    _local.scope = scope
    try:
        yield
    finally:
        _local.scope = prev


def current() -> CancelScope | None:
    """The scope this thread works in, if any."""
    scope: CancelScope | None = getattr(_local, "scope", None)
    return scope


def check() -> None:
    """Raise :class:`Cancelled` when this thread's scope was cancelled."""
    scope = current()
    if scope is not None and scope.cancelled:
        raise Cancelled()


def sleep(seconds: float) -> None:
    """``time.sleep`` that a cancel of this thread's scope cuts short (with Cancelled)."""
    scope = current()
    if scope is None:
        time.sleep(seconds)
    elif scope.event.wait(seconds):
        raise Cancelled()
