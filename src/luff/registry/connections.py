"""urllib3 connections that a :class:`luff.cancel.CancelScope` can shut down.

A connection joins the scope of the thread that uses it (from before it
connects, so a cancel during the TCP or TLS handshake is not missed) and
leaves it when it goes back to its pool.
"""

from __future__ import annotations

from typing import Any

from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from luff import cancel


class _Tracked:
    _luff_scope: cancel.CancelScope | None = None

    def _join_scope(self) -> None:
        scope = cancel.current()
        if scope is not None and scope is not self._luff_scope:
            self._leave_scope()
            self._luff_scope = scope
            scope.track(self)  # type: ignore[arg-type]

    def _leave_scope(self) -> None:
        if self._luff_scope is not None:
            self._luff_scope.forget(self)  # type: ignore[arg-type]
            self._luff_scope = None

    def connect(self) -> None:
        self._join_scope()
        super().connect()  # type: ignore[misc]
        scope = self._luff_scope
        if scope is not None and scope.cancelled:  # cancelled while the socket was not there
            self.close()  # type: ignore[attr-defined]
            raise cancel.Cancelled()

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._join_scope()
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Tracked, HTTPConnection):
    pass


class _HTTPSConnection(_Tracked, HTTPSConnection):
    pass


class _ReleasingPool(HTTPConnectionPool):
    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _Tracked):
            conn._leave_scope()  # back in the pool: no longer this job's to cancel
        super()._put_conn(conn)


class _HTTPPool(_ReleasingPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(_ReleasingPool, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def pool_manager(**kwargs: Any) -> PoolManager:
    """A ``PoolManager`` whose connections join the calling thread's cancel scope."""
    pm = PoolManager(**kwargs)
    pm.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return pm
