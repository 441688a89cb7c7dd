"""Shared fixtures: real registries on loopback and a fresh luff context."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from luff.context import Context
from luff.registry.auth import ANONYMOUS, Credentials
from tests.registries import PASSWORD, USER, DistributionRegistry, self_signed


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; run the README's test command, which installs it")


class EmbeddedRegistry:
    """luff's own registry, with the attributes of :class:`DistributionRegistry`."""

    token_server = None

    def __init__(self, workdir: Path, auth: str = "", tls: bool = False) -> None:
        from luff.testing import Registry

        self.workdir = workdir
        cert, key = self_signed(workdir, ["127.0.0.1", "localhost"]) if tls else (None, None)
        mode = {"": "none", "htpasswd": "basic", "token": "token"}[auth]
        self.username = USER if auth else ""
        self.password = PASSWORD if auth else ""
        self._reg = Registry(
            auth=mode,  # type: ignore[arg-type]
            username=USER,
            password=PASSWORD,
            anonymous_pull=("public/",),
            storage=workdir / "data",
            process=True,
            tls_cert=cert,
            tls_key=key,
        )

    @property
    def host(self) -> str:
        return self._reg.host

    def start(self) -> EmbeddedRegistry:
        self._reg.start()
        return self

    def stop(self) -> None:
        self._reg.stop()


Reg = DistributionRegistry | EmbeddedRegistry


@pytest.fixture(scope="session", params=["distribution", "embedded"])
def registry_kind(request: pytest.FixtureRequest) -> str:
    """Every registry-backed test runs against distribution and luff's embedded registry."""
    return str(request.param)


def _start(
    tmp: Path, auth: str = "", tls: bool = False, kind: str = "distribution"
) -> Iterator[Reg]:
    reg: Reg
    if kind == "embedded":
        reg = EmbeddedRegistry(tmp, auth=auth, tls=tls).start()
    else:
        _need("docker-registry")
        reg = DistributionRegistry(tmp, auth=auth, tls=tls).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, registry_kind: str) -> Iterator[Reg]:
    """A plain registry."""
    yield from _start(tmp_path_factory.mktemp("reg1"), kind=registry_kind)


@pytest.fixture(scope="session")
def registry2(tmp_path_factory: pytest.TempPathFactory, registry_kind: str) -> Iterator[Reg]:
    """A second plain registry."""
    yield from _start(tmp_path_factory.mktemp("reg2"), kind=registry_kind)


@pytest.fixture(scope="session")
def registry3(tmp_path_factory: pytest.TempPathFactory, registry_kind: str) -> Iterator[Reg]:
    """A third plain registry."""
    yield from _start(tmp_path_factory.mktemp("reg3"), kind=registry_kind)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory, registry_kind: str) -> Iterator[Reg]:
    """A registry with htpasswd (basic) auth."""
    yield from _start(tmp_path_factory.mktemp("reg-htpasswd"), "htpasswd", kind=registry_kind)


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, registry_kind: str) -> Iterator[Reg]:
    """A registry with bearer-token auth (distribution: tests.registries.TokenServer)."""
    yield from _start(tmp_path_factory.mktemp("reg-token"), "token", kind=registry_kind)


@pytest.fixture(scope="session")
def dist_token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reg]:
    """A distribution registry with token auth whose token server records requests."""
    yield from _start(tmp_path_factory.mktemp("reg-token-d"), "token")


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, registry_kind: str) -> Iterator[Reg]:
    """A registry serving HTTPS with a self-signed certificate."""
    yield from _start(tmp_path_factory.mktemp("reg-tls"), tls=True, kind=registry_kind)


def creds_for(*regs: Reg) -> dict[str, Credentials]:
    return {r.host: Credentials(r.username, r.password) for r in regs if r.username}


@pytest.fixture
def ctx() -> Iterator[Context]:
    """A fresh context with no credentials (isolated from ~/.docker)."""
    c = Context(credentials=lambda host: ANONYMOUS, backoff=0.01)
    yield c
    c.close()


@pytest.fixture
def auth_ctx(
    auth_registry: Reg, token_registry: Reg, dist_token_registry: Reg
) -> Iterator[Context]:
    """A context holding the test user's credentials for both auth registries."""
    table = creds_for(auth_registry, token_registry, dist_token_registry)
    c = Context(credentials=lambda host: table.get(host, ANONYMOUS), backoff=0.01)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's Docker/podman credentials out of every test."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-run"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
