"""An embedded OCI registry (the distribution API) for local use and tests.

>>> from luff.server import RegistryServer
>>> with RegistryServer(address="127.0.0.1:0") as srv:   # runs in a thread
...     print(srv.host)                                  # doctest: +SKIP
127.0.0.1:40123

``luff registry serve`` runs the same server in the foreground.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from aiohttp import web

from luff.errors import UsageError
from luff.limits import DEFAULT_MAX_UPLOADS, DEFAULT_UPLOAD_TIMEOUT
from luff.server.app import AccessLog, RegistryApp, access_logger
from luff.server.auth import Authenticator, hash_problem, load_htpasswd
from luff.server.disk import DiskStorage
from luff.server.memory import MemoryStorage
from luff.server.storage import Storage

__all__ = ["DiskStorage", "MemoryStorage", "RegistryServer", "parse_listen_address"]

DEFAULT_ADDRESS = "127.0.0.1:5000"


def parse_listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all interfaces) -> ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"invalid address {text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"invalid address {text!r}: write IPv6 hosts in brackets")
    return host or "0.0.0.0", int(port)


def _client_host(host: str, port: int) -> str:
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


class RegistryServer:
    """The embedded registry: storage, auth, an aiohttp server.

    *storage* is a directory (content persists) or None (memory). *users*
    maps user names to passwords hashed as in htpasswd files (see
    :func:`luff.server.auth.hash_password`); *htpasswd* reads them from a
    file. With *token*, clients get bearer tokens from ``/token`` on this
    server (anonymous clients get ``pull`` on repositories whose names start
    with one of *anonymous_pull*, or everything when there are no users).
    *access_log* is a text stream for one line per request. With *tls_cert*
    and *tls_key* (PEM files) it serves HTTPS.

    Uploads in progress are bounded: one untouched for *upload_timeout*
    seconds is dropped, and while *max_uploads* are in progress starting
    another answers ``429 TOOMANYREQUESTS``.

    A directory storage is checked at start-up: what an interrupted delete
    left half-done is removed, and described in :attr:`repairs` (one line
    each; ``luff registry serve`` prints them on stderr).

    Use :meth:`run` to serve in the foreground, or the object as a context
    manager to serve from a background thread.
    """

    def __init__(
        self,
        storage: str | os.PathLike[str] | Storage | None = None,
        *,
        address: str = DEFAULT_ADDRESS,
        users: Mapping[str, str] | None = None,
        htpasswd: str | os.PathLike[str] | None = None,
        token: bool = False,
        token_ttl: int = 300,
        anonymous_pull: tuple[str, ...] = (),
        access_log: TextIO | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT,
        max_uploads: int = DEFAULT_MAX_UPLOADS,
    ) -> None:
        if not upload_timeout > 0:
            raise UsageError(f"upload timeout must be positive, not {upload_timeout}")
        if max_uploads < 1:
            raise UsageError(f"the upload limit must be at least 1, not {max_uploads}")
        self.upload_timeout = float(upload_timeout)
        self.max_uploads = max_uploads
        self.ssl_context = _tls_context(tls_cert, tls_key)
        if isinstance(storage, Storage):
            self.storage = storage
        elif storage is None:
            self.storage = MemoryStorage()
        else:
            self.storage = DiskStorage(Path(storage))
        all_users = dict(load_htpasswd(htpasswd)) if htpasswd else {}
        for user, hashed in (users or {}).items():
            problem = hash_problem(hashed)
            if problem:
                raise UsageError(f"user {user!r}: {problem}")
            all_users[user] = hashed
        self.auth = Authenticator(
            users=all_users, token=token, token_ttl=token_ttl, anonymous_pull=anonymous_pull
        )
        self.bind_host, self.port = parse_listen_address(address)
        self.access_log = access_log
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self.repairs: list[str] = self.storage.repair()

    @property
    def host(self) -> str:
        """``HOST:PORT`` for clients (a wildcard bind address becomes loopback)."""
        return _client_host(self.bind_host, self.port)

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, or ``https://`` with TLS."""
        return f"{'https' if self.ssl_context else 'http'}://{self.host}"

    async def start(self) -> None:
        """Bind and start serving on the running event loop."""
        app = RegistryApp(
            self.storage,
            self.auth,
            upload_timeout=self.upload_timeout,
            max_uploads=self.max_uploads,
        ).application()
        kw: dict[str, object] = {}
        if self.access_log is not None:
            kw = {"access_log_class": AccessLog, "access_log": access_logger(self.access_log)}
        else:
            kw = {"access_log": None}
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=3.0, **kw)  # type: ignore[arg-type]
        await runner.setup()
        try:
            sock = _bind(self.bind_host, self.port)
        except OSError as e:
            await runner.cleanup()
            raise UsageError(
                f"cannot listen on {self.bind_host}:{self.port}: {e.strerror or e}"
            ) from None
        site = web.SockSite(runner, sock, ssl_context=self.ssl_context)
        await site.start()
        self.port = sock.getsockname()[1]
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving and drop uploads in progress."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.storage.close()

    def run(self, on_ready: Callable[[RegistryServer], None] | None = None) -> None:
        """Serve in the foreground until interrupted; *on_ready* is called once bound."""

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            if threading.current_thread() is threading.main_thread():
                # Stop gracefully: requests in flight finish (and are logged) first.
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.add_signal_handler(sig, self._stopped.set)
            await self.start()
            if on_ready is not None:
                on_ready(self)
            try:
                await self._stopped.wait()
            finally:
                await self.stop()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())

    # --- background thread -------------------------------------------------
    def start_thread(self) -> RegistryServer:
        """Serve from a daemon thread; returns once the port is bound."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def target() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._stopped = asyncio.Event()
                loop.run_until_complete(self.start())
            except BaseException as e:
                errors.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self._stopped.wait())
                loop.run_until_complete(self.stop())
            finally:
                loop.close()

        self._thread = threading.Thread(target=target, name="luff-registry", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self

    def shutdown(self) -> None:
        """Stop a server started with :meth:`start_thread` or :meth:`run`."""
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> RegistryServer:
        return self.start_thread()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _tls_context(
    cert: str | os.PathLike[str] | None, key: str | os.PathLike[str] | None
) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    for path in (cert, key):
        if not os.path.isfile(path):
            raise UsageError(f"{os.fspath(path)}: no such file")

    def no_passphrase() -> str:
        raise UsageError(f"{os.fspath(key)}: the key is encrypted; give an unencrypted key")

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key, password=no_passphrase)
    except (ssl.SSLError, OSError) as e:
        raise UsageError(
            f"cannot load the TLS certificate {os.fspath(cert)} with key {os.fspath(key)}: "
            f"{getattr(e, 'reason', None) or e}"
        ) from None
    return ctx


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    fam, kind, proto, _, addr = infos[0]
    sock = socket.socket(fam, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
