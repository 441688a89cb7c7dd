"""urllib3 connections that a :class:`luff.cancel.CancelScope` can shut down."""

from __future__ import annotations

from typing import Any

from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from luff import cancel


class _Tracked:
    def request(self, *args: Any, **kwargs: Any) -> None:
        scope = cancel.current()
        if scope is not None:
            scope.track(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Tracked, HTTPConnection):
    pass


class _HTTPSConnection(_Tracked, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def pool_manager(**kwargs: Any) -> PoolManager:
    """A ``PoolManager`` whose connections join the calling thread's cancel scope."""
    pm = PoolManager(**kwargs)
    pm.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return pm
