"""What one run of luff operations shares: :class:`Settings` (values) and a :class:`Context`.

:class:`Settings` is what the user chose: insecure hosts, credentials,
concurrency, retry and timeout policy, trusted CAs. It is a plain value;
the registry client takes it, not the whole context.

:class:`Context` adds the runtime state built from the settings: the HTTP
transport (one connection pool), one registry client per host (with its
ping result and token cache), the concurrency limit shared by every pool of
an operation, and the progress receiver.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from luff.record import Record

if TYPE_CHECKING:
    from luff.copy import Progress
    from luff.pool import Limiter
    from luff.registry.auth import Credentials
    from luff.registry.client import RegistryClient
    from luff.registry.transport import Transport


def is_local_host(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (with or without a port)."""
    h = host
    if h.startswith("["):
        h = h[1 : h.find("]")]
    elif h.count(":") == 1:
        h = h.split(":")[0]
    if h == "localhost" or h.endswith(".localhost"):
        return True
    if ":" not in h:
        # A dotted quad (as ipaddress reads one: no leading zeros) in 127.0.0.0/8, or else a
        # name or no address: only localhost is taken as loopback.
        parts = h.split(".")
        return (
            len(parts) == 4
            and parts[0] == "127"
            and all(
                p.isascii() and p.isdigit() and (p == "0" or p[0] != "0") and int(p) < 256
                for p in parts
            )
        )
    import ipaddress

    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


class Settings(Record):
    """The user's choices for one run: hosts, credentials, limits and policies.

    ``jobs`` bounds the concurrent transfers and lookups of a whole
    operation (nested work shares it); its default, 8, comes from
    ``bench/bench_small.py`` and ``bench/bench_copy.py`` (small blobs wait on
    the registry: more requests in flight hide the wait). ``max_attempts``
    and ``backoff`` set the retry policy (:class:`luff.registry.retry.RetryPolicy`); ``timeout``
    bounds connecting and every wait for a byte from a peer (a peer that does
    not answer in time is not retried). ``credentials`` overrides the lookup
    in Docker's and podman's auth files (``host -> Credentials``). ``ca_file``
    adds trusted CAs; ``certs_dirs`` are searched for ``HOST[:PORT]/*.crt``
    CAs and ``*.cert``/``*.key`` client certificates (containers' and
    Docker's ``certs.d`` by default).
    """

    insecure: set[str]
    jobs: int
    max_attempts: int
    backoff: float
    timeout: float
    credentials: Callable[[str], Credentials] | None
    ca_file: str | None
    certs_dirs: tuple[str, ...]
    #: With ``--concurrent``: the window that makes shared tags safe among luff writers on a
    #: registry that ignores conditional writes (the referrers tag schema); None: no wait.
    concurrent_window: float | None
    log: Callable[[str], None] | None
    #: Receives warnings, which the user should see even without -v (a corrupt blob found
    #: and written again); ``log`` receives them when this is not set.
    warn_log: Callable[[str], None] | None

    def __init__(
        self,
        insecure: Iterable[str] = (),
        jobs: int = 8,
        max_attempts: int = 5,
        backoff: float = 0.25,
        timeout: float = 30.0,
        credentials: Callable[[str], Credentials] | None = None,
        ca_file: str | None = None,
        certs_dirs: tuple[str, ...] = ("/etc/containers/certs.d", "/etc/docker/certs.d"),
        concurrent_window: float | None = None,
        log: Callable[[str], None] | None = None,
        warn_log: Callable[[str], None] | None = None,
    ) -> None:
        self.insecure = set(insecure)
        self.jobs = jobs
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        self.credentials = credentials
        self.ca_file = ca_file
        self.certs_dirs = certs_dirs
        self.concurrent_window = concurrent_window
        self.log = log
        self.warn_log = warn_log

    def add_insecure(self, hosts: Iterable[str]) -> None:
        """Treat *hosts* as plain-HTTP (or unverified TLS) registries."""
        self.insecure.update(hosts)

    def is_insecure(self, host: str) -> bool:
        """True when *host* may be spoken to over plain HTTP or unverified TLS."""
        return host in self.insecure or is_local_host(host)

    def say(self, message: str) -> None:
        """Log a message (stderr in the CLI; silent by default in the library)."""
        if self.log is not None:
            self.log(message)

    def warn(self, message: str) -> None:
        """Report a warning (stderr in the CLI, even without -v; else as :meth:`say`)."""
        sink = self.warn_log or self.log
        if sink is not None:
            sink(message)


_SETTINGS_FIELDS = frozenset(Settings._fields)


class Context:
    """Settings plus the runtime state built from them; pass one to any operation.

    ``Context(jobs=8, insecure={"reg:5000"})`` is short for
    ``Context(Settings(jobs=8, insecure={"reg:5000"}))``. Operations use
    :func:`default_context` when given none.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        progress: Progress | None = None,
        **options: Any,
    ) -> None:
        unknown = set(options) - _SETTINGS_FIELDS
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        if settings is None:
            settings = Settings(**options)
        elif options:
            from luff.record import replace

            settings = replace(settings, **options)
        self.settings = settings
        self.progress = progress
        self._clients: dict[str, RegistryClient] = {}
        self._transport: Transport | None = None
        self._limiter: Limiter | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Context {self.settings!r}>"

    @property
    def transport(self) -> Transport:
        """The HTTP transport (one connection pool for every host)."""
        with self._lock:
            if self._transport is None:
                from luff.registry.transport import Transport

                self._transport = Transport(self.settings)
            return self._transport

    @property
    def limiter(self) -> Limiter:
        """The concurrency limit (``settings.jobs``) shared by every pool of this context."""
        with self._lock:
            if self._limiter is None or self._limiter.size != max(1, self.settings.jobs):
                from luff.pool import Limiter

                if self._limiter is not None:
                    self._limiter.close(wait=False)
                self._limiter = Limiter(max(1, self.settings.jobs))
            return self._limiter

    def client(self, host: str) -> RegistryClient:
        """The client for registry *host* (API host, e.g. ``registry-1.docker.io``)."""
        with self._lock:
            c = self._clients.get(host)
        if c is None:
            from luff.registry.client import RegistryClient

            c = RegistryClient(host, self.settings, self.transport)
            with self._lock:
                c = self._clients.setdefault(host, c)
        return c

    def say(self, message: str) -> None:
        """Log a message through the settings' ``log``."""
        self.settings.say(message)

    def warn(self, message: str) -> None:
        """Report a warning through the settings' ``warn_log`` (else ``log``)."""
        self.settings.warn(message)

    def close(self) -> None:
        """Close pooled connections, end the worker threads, forget clients (tokens, pings)."""
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None
            self._clients.clear()
            limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.close()


_default: Context | None = None


def default_context() -> Context:
    """The process-wide context used when none is given."""
    global _default
    if _default is None:
        _default = Context()
    return _default
