"""Shared settings and connection state for one run of luff operations."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import urllib3

    from luff.copy import Progress
    from luff.registry.auth import Credentials
    from luff.registry.client import RegistryClient


def is_local_host(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (with or without a port)."""
    h = host
    if h.startswith("["):
        h = h[1 : h.find("]")]
    elif h.count(":") == 1:
        h = h.split(":")[0]
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@dataclass
class Context:
    """Settings shared by operations: insecure hosts, credentials, concurrency.

    One context keeps one HTTP connection pool and one client (with its token
    cache) per registry host. Pass it to any operation, or let operations use
    :func:`default_context`.
    """

    insecure: set[str] = field(default_factory=set)
    jobs: int = 4
    max_attempts: int = 5
    backoff: float = 0.25
    timeout: float = 60.0
    credentials: Callable[[str], Credentials] | None = None
    progress: Progress | None = None
    log: Callable[[str], None] | None = None
    _clients: dict[str, RegistryClient] = field(default_factory=dict, repr=False)
    _pool: urllib3.PoolManager | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.insecure = set(self.insecure)

    def add_insecure(self, hosts: Iterable[str]) -> None:
        """Treat *hosts* as plain-HTTP (or unverified TLS) registries."""
        self.insecure.update(hosts)

    def is_insecure(self, host: str) -> bool:
        """True when *host* is served over plain HTTP."""
        return host in self.insecure or is_local_host(host)

    @property
    def pool(self) -> urllib3.PoolManager:
        """The shared connection pool."""
        with self._lock:
            if self._pool is None:
                import urllib3

                from luff.registry.connections import pool_manager

                self._pool = pool_manager(
                    num_pools=32,
                    maxsize=max(8, self.jobs * 2),
                    block=False,
                    retries=False,
                    timeout=urllib3.Timeout(connect=min(self.timeout, 15.0), read=self.timeout),
                    cert_reqs="CERT_REQUIRED",
                    blocksize=1 << 20,
                )
            return self._pool

    def client(self, host: str) -> RegistryClient:
        """The client for registry *host* (API host, e.g. ``registry-1.docker.io``)."""
        with self._lock:
            c = self._clients.get(host)
        if c is None:
            from luff.registry.client import RegistryClient

            c = RegistryClient(host, self)
            with self._lock:
                c = self._clients.setdefault(host, c)
        return c

    def say(self, message: str) -> None:
        """Log a message (stderr in the CLI; silent by default in the library)."""
        if self.log is not None:
            self.log(message)

    def close(self) -> None:
        """Close pooled connections."""
        with self._lock:
            if self._pool is not None:
                self._pool.clear()
                self._pool = None
            self._clients.clear()


_default: Context | None = None


def default_context() -> Context:
    """The process-wide context used when none is given."""
    global _default
    if _default is None:
        _default = Context()
    return _default
