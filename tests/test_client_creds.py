"""Credentials on the command line for one run (--creds, --creds-stdin), auth files that
are symlinks, and the warning for a password given with -p."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from luff.context import Context
from luff.testing import random_image
from tests.conftest import Reg
from tests.registries import PASSWORD, USER
from tests.test_cli import luff


def _no_auth_files() -> None:
    """Nothing was written where luff keeps credentials (the test's isolated homes)."""
    for base in (os.environ["DOCKER_CONFIG"], os.environ["HOME"], os.environ["XDG_RUNTIME_DIR"]):
        found = [p for p in Path(base).rglob("*.json")] if Path(base).exists() else []
        assert found == [], found


@pytest.fixture
def pushed(auth_registry: Reg, token_registry: Reg, auth_ctx: Context) -> str:
    img = random_image(size=500)
    for reg in (auth_registry, token_registry):
        img.push(f"{reg.host}/creds/app:1", auth_ctx)
    return str(img.digest)


@pytest.mark.parametrize("kind", ["auth_registry", "token_registry"])
def test_creds_for_one_run(kind: str, request: pytest.FixtureRequest, pushed: str) -> None:
    reg: Reg = request.getfixturevalue(kind)
    ref = f"{reg.host}/creds/app:1"
    denied = luff("digest", ref)
    assert denied.returncode == 1 and "auth" in denied.stderr
    p = luff("--creds", f"{USER}:{PASSWORD}", "digest", ref)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == pushed
    p = luff("digest", "--creds", f"{USER}:{PASSWORD}", ref)  # after the command too
    assert p.stdout.strip() == pushed
    p = luff("--creds-stdin", "ls", f"{reg.host}/creds/app", stdin=f"{USER}:{PASSWORD}\n")
    assert p.returncode == 0 and p.stdout.split() == ["1"], p.stderr
    wrong = luff("--creds", f"{USER}:wrong", "digest", ref)
    assert wrong.returncode == 1 and len(wrong.stderr.splitlines()) == 1
    _no_auth_files()


def test_creds_for_one_host_of_several(auth_registry: Reg, registry: Reg, pushed: str) -> None:
    """HOST=USER:PASSWORD goes to HOST only: the other registry of a copy gets none."""
    from tests.faultproxy import FaultProxy

    plain = FaultProxy(registry.host)
    try:
        p = luff(
            "--creds",
            f"{auth_registry.host}={USER}:{PASSWORD}",
            "copy",
            f"{auth_registry.host}/creds/app:1",
            f"{plain.host}/creds/copy:1",
        )
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip().endswith(pushed)
        assert not [x for x in plain.seen if "Authorization" in x.headers]
    finally:
        plain.stop()
    _no_auth_files()


@pytest.mark.parametrize("bad", ["alice", ":pw", "host.example="])
def test_malformed_creds_are_a_usage_error(bad: str) -> None:
    p = luff("--creds", bad, "digest", "example.com/app:1")
    assert p.returncode == 2
    assert p.stderr == "luff: error: --creds: expected [HOST=]USER:PASSWORD\n"


@pytest.mark.parametrize("name", ["config.json", "auth.json"])
def test_login_and_logout_write_through_a_symlinked_auth_file(
    auth_registry: Reg, tmp_path: Path, name: str
) -> None:
    real = tmp_path / "dotfiles" / name
    real.parent.mkdir()
    real.write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"}}}))
    real.chmod(0o640)
    if name == "config.json":
        d = tmp_path / "docker"
        d.mkdir()
        link = d / name
        env = {"DOCKER_CONFIG": str(d)}
    else:
        link = tmp_path / name
        env = {"REGISTRY_AUTH_FILE": str(link)}
    link.symlink_to(real)

    p = luff(
        "auth", "login", auth_registry.host, "-u", USER, "--password-stdin", stdin=PASSWORD, env=env
    )
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and link.resolve() == real.resolve()
    auths = json.loads(real.read_text())["auths"]
    assert set(auths) == {"other.example", auth_registry.host}
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert [p.name for p in real.parent.iterdir()] == [name]  # no temporary file left

    p = luff("auth", "logout", auth_registry.host, env=env)
    assert p.returncode == 0, p.stderr
    assert link.is_symlink()
    assert set(json.loads(real.read_text())["auths"]) == {"other.example"}
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


def test_a_password_on_the_command_line_is_warned_about(auth_registry: Reg) -> None:
    p = luff("auth", "login", auth_registry.host, "-u", USER, "-p", PASSWORD)
    assert p.returncode == 0, p.stderr
    warning, done = p.stderr.splitlines()
    assert warning.startswith("luff: warning: ") and "visible to other users" in warning
    assert "--password-stdin" in warning and done.startswith("logged in")
    p = luff("auth", "login", auth_registry.host, "-u", USER, "--password-stdin", stdin=PASSWORD)
    assert "warning" not in p.stderr
