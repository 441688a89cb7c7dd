"""Every CLI verb against registries with basic and token auth, after `luff auth login`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from luff.context import Context
from luff.testing import random_index
from tests.conftest import Reg
from tests.registries import PASSWORD, USER
from tests.test_cli import luff, skopeo_raw_digest


@pytest.mark.parametrize("kind", ["auth_registry", "token_registry"])
def test_every_verb_with_auth(
    kind: str, request: pytest.FixtureRequest, registry: Reg, tmp_path: Path
) -> None:
    reg: Reg = request.getfixturevalue(kind)
    env = {"DOCKER_CONFIG": str(tmp_path / "dc")}
    idx = random_index(["linux/amd64", "linux/arm64"], size=3000)
    idx.push(f"{registry.host}/src/app:1", Context())

    p = luff("auth", "login", reg.host, "-u", USER, "--password-stdin", stdin=PASSWORD, env=env)
    assert p.returncode == 0, p.stderr
    repo = f"{reg.host}/verbs/{kind}"

    p = luff("copy", f"{registry.host}/src/app:1", f"{repo}:1", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"{repo}@{idx.digest}"
    creds = ("--creds", f"{USER}:{PASSWORD}")
    assert skopeo_raw_digest(f"{repo}:1", *creds) == str(idx.digest)

    assert luff("digest", f"{repo}:1", env=env).stdout.strip() == str(idx.digest)
    m = luff("manifest", f"{repo}:1", env=env)
    assert "sha256:" + hashlib.sha256(m.stdout.encode().rstrip(b"\n")).hexdigest() == str(
        idx.digest
    )
    cfg = json.loads(luff("--platform", "linux/arm64", "config", f"{repo}:1", env=env).stdout)
    assert cfg["architecture"] == "arm64"
    layer = idx.children[0].manifest.layers[0].digest
    b = subprocess.run(
        [sys.executable, "-m", "luff", "blob", f"{repo}@{layer}"],
        capture_output=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert b.returncode == 0, b.stderr
    assert "sha256:" + hashlib.sha256(b.stdout).hexdigest() == str(layer)
    t = luff("tag", f"{repo}:1", "two", env=env)
    assert t.returncode == 0, t.stderr
    assert luff("ls", repo, env=env).stdout.split() == ["1", "two"]
    assert f"verbs/{kind}" in luff("catalog", reg.host, env=env).stdout.split()
    d = luff("delete", f"{repo}:two", env=env)
    assert d.returncode == 0, d.stderr
    gone = luff("digest", f"{repo}:1", env=env)
    assert gone.returncode == 1 and "manifest unknown" in gone.stderr

    # Without the login every verb fails with one line naming authentication.
    assert luff("auth", "logout", reg.host, env=env).returncode == 0
    for args in (
        ["ls", repo],
        ["catalog", reg.host],
        ["copy", f"{registry.host}/src/app:1", f"{repo}:3"],
    ):
        p = luff(*args, env=env)
        assert p.returncode == 1, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "auth" in p.stderr, p.stderr


def test_login_writes_registry_auth_file(auth_registry: Reg, tmp_path: Path) -> None:
    """With REGISTRY_AUTH_FILE set, login writes there (podman's file), not to Docker's config."""
    authfile = tmp_path / "auth.json"
    env = {"DOCKER_CONFIG": str(tmp_path / "dc"), "REGISTRY_AUTH_FILE": str(authfile)}
    p = luff(
        "auth", "login", auth_registry.host, "-u", USER, "--password-stdin", stdin=PASSWORD, env=env
    )
    assert p.returncode == 0, p.stderr
    assert auth_registry.host in json.loads(authfile.read_text())["auths"]
    assert not (tmp_path / "dc" / "config.json").exists()
    assert luff("ls", f"{auth_registry.host}/nothing/here", env=env).stderr.count("auth") == 0
    # skopeo reads the same file.
    sk = subprocess.run(
        [
            "skopeo",
            "login",
            "--tls-verify=false",
            "--authfile",
            str(authfile),
            "--get-login",
            auth_registry.host,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sk.returncode == 0 and sk.stdout.strip() == USER, sk.stderr
    assert luff("auth", "logout", auth_registry.host, env=env).returncode == 0
    assert auth_registry.host not in json.loads(authfile.read_text())["auths"]
