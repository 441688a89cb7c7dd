"""Shared fixtures: real registries on loopback and a fresh luff context."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from luff.context import Context
from luff.registry.auth import ANONYMOUS, Credentials
from tests.registries import DistributionRegistry


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; run the README's test command, which installs it")


def _start(tmp: Path, auth: str = "", tls: bool = False) -> Iterator[DistributionRegistry]:
    _need("docker-registry")
    reg = DistributionRegistry(tmp, auth=auth, tls=tls).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    """A plain distribution registry."""
    yield from _start(tmp_path_factory.mktemp("reg1"))


@pytest.fixture(scope="session")
def registry2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    """A second plain distribution registry."""
    yield from _start(tmp_path_factory.mktemp("reg2"))


@pytest.fixture(scope="session")
def registry3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    """A third plain distribution registry."""
    yield from _start(tmp_path_factory.mktemp("reg3"))


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    """A distribution registry with htpasswd (basic) auth."""
    yield from _start(tmp_path_factory.mktemp("reg-htpasswd"), "htpasswd")


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    """A distribution registry with bearer-token auth from tests.registries.TokenServer."""
    yield from _start(tmp_path_factory.mktemp("reg-token"), "token")


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    """A distribution registry serving HTTPS with a self-signed certificate."""
    yield from _start(tmp_path_factory.mktemp("reg-tls"), tls=True)


def creds_for(*regs: DistributionRegistry) -> dict[str, Credentials]:
    return {r.host: Credentials(r.username, r.password) for r in regs if r.username}


@pytest.fixture
def ctx() -> Iterator[Context]:
    """A fresh context with no credentials (isolated from ~/.docker)."""
    c = Context(credentials=lambda host: ANONYMOUS, backoff=0.01)
    yield c
    c.close()


@pytest.fixture
def auth_ctx(
    auth_registry: DistributionRegistry, token_registry: DistributionRegistry
) -> Iterator[Context]:
    """A context holding the test user's credentials for both auth registries."""
    table = creds_for(auth_registry, token_registry)
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
