"""``Registry``: the embedded registry on a free loopback port, for tests."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Literal, TextIO

from luff.context import Context
from luff.registry.auth import ANONYMOUS, Credentials

AuthMode = Literal["none", "basic", "token"]


class Registry:
    """An embedded OCI registry for tests, as a context manager.

    >>> from luff.testing import Registry, random_image
    >>> with Registry() as reg:                       # doctest: +SKIP
    ...     random_image().push(f"{reg.host}/app:1", reg.context())

    Parameters (all keyword-only):

    - ``auth``: ``"none"`` (default), ``"basic"`` (htpasswd) or ``"token"``
      (bearer tokens from the registry's own ``/token`` endpoint).
    - ``username``/``password``: the one user when ``auth`` is not ``"none"``
      (default ``"luff"`` and a random password).
    - ``anonymous_pull``: in token mode, repository name prefixes that
      anonymous clients may pull.
    - ``storage``: a directory to keep content in (default: memory).
    - ``process``: run ``luff registry serve`` in a subprocess instead of a
      thread of this process.
    - ``log``: a text stream for the access log (default: none).
    - ``tls_cert``/``tls_key``: PEM files; the registry then serves HTTPS
      (luff reaches loopback registries over unverified TLS when they speak it).

    Attributes once started: ``host`` (``"127.0.0.1:PORT"``), ``url``,
    ``username``, ``password`` (empty without auth), ``auth``.
    """

    def __init__(
        self,
        *,
        auth: AuthMode = "none",
        username: str = "luff",
        password: str | None = None,
        anonymous_pull: tuple[str, ...] = (),
        storage: str | os.PathLike[str] | None = None,
        process: bool = False,
        log: TextIO | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
    ) -> None:
        if auth not in ("none", "basic", "token"):
            raise ValueError(f"auth must be 'none', 'basic' or 'token', not {auth!r}")
        self.auth: AuthMode = auth
        self.username = username if auth != "none" else ""
        self.password = (password or secrets.token_urlsafe(12)) if auth != "none" else ""
        self.anonymous_pull = anonymous_pull
        self.storage = storage
        self.process = process
        self.log = log
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.port = 0
        self._server: object = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: str | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` with TLS)."""
        return f"{'https' if self.tls_cert else 'http'}://{self.host}"

    @property
    def credentials(self) -> Credentials:
        """This registry's user, or anonymous."""
        return Credentials(self.username, self.password) if self.username else ANONYMOUS

    def context(self) -> Context:
        """A fresh :class:`~luff.context.Context` that logs in to this registry only."""
        creds = self.credentials
        host = self.host
        return Context(credentials=lambda h: creds if h == host else ANONYMOUS)

    def _users(self, scheme: str) -> dict[str, str]:
        from luff.server.auth import hash_password

        if self.auth == "none":
            return {}
        return {self.username: hash_password(self.password, scheme, rounds=4)}

    def start(self) -> Registry:
        """Start serving; returns self."""
        if self.process:
            self._start_process()
        else:
            from luff.server import RegistryServer

            srv = RegistryServer(
                self.storage,
                address="127.0.0.1:0",
                users=self._users("bcrypt"),
                token=self.auth == "token",
                anonymous_pull=self.anonymous_pull,
                access_log=self.log,
                tls_cert=self.tls_cert,
                tls_key=self.tls_key,
            ).start_thread()
            self._server = srv
            self.port = srv.port
        return self

    def _start_process(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="luff-registry-")
        cmd = [
            sys.executable,
            "-m",
            "luff",
            "registry",
            "serve",
            "--address",
            "127.0.0.1:0",
        ]
        if self.storage is not None:
            cmd += ["--storage", str(self.storage)]
        if self.auth != "none":
            path = Path(self._tmp) / "htpasswd"
            path.write_text("".join(f"{u}:{h}\n" for u, h in self._users("bcrypt").items()))
            cmd += ["--htpasswd", str(path)]
        if self.auth == "token":
            cmd.append("--token")
            for prefix in self.anonymous_pull:  # meaningful (and accepted) in token mode only
                cmd += ["--anonymous-pull", prefix]
        if self.tls_cert is not None and self.tls_key is not None:
            cmd += ["--tls-cert", os.fspath(self.tls_cert), "--tls-key", os.fspath(self.tls_key)]
        if self.log is None:
            cmd.append("--quiet")
        err: IO[bytes] | int = subprocess.DEVNULL
        if self.log is not None:
            err = open(Path(self._tmp) / "server.log", "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        if not isinstance(err, int):
            err.close()
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().decode().strip()
        if not line:
            self.stop()
            raise RuntimeError("luff registry serve exited before printing its address")
        self.port = int(line.rpartition(":")[2])

    def stop(self) -> None:
        """Stop serving (content in memory is gone)."""
        from luff.server import RegistryServer

        if isinstance(self._server, RegistryServer):
            self._server.shutdown()
            self._server = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        if self._tmp is not None:
            if self.log is not None:
                logf = Path(self._tmp) / "server.log"
                if logf.exists():
                    self.log.write(logf.read_text())
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Registry {self.host} auth={self.auth}>"
