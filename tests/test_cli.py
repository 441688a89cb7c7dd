"""The crane-style CLI verbs against real registries, checked by skopeo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from luff.context import Context
from luff.testing import random_image, random_index
from tests.registries import PASSWORD, USER, DistributionRegistry


def luff(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)


def skopeo_digest(ref: str, *creds: str) -> str:
    p = skopeo(
        "inspect", "--tls-verify=false", *creds, "--format", "{{.Digest}}", f"docker://{ref}"
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def skopeo_raw_digest(ref: str, *creds: str) -> str:
    import hashlib

    p = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *creds, "--raw", f"docker://{ref}"],
        capture_output=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return "sha256:" + hashlib.sha256(p.stdout).hexdigest()


def one_line_error(p: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("luff: error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


@pytest.fixture(scope="module")
def pushed(registry: DistributionRegistry) -> dict[str, str]:
    ctx = Context()
    idx = random_index(["linux/amd64", "linux/arm64", "linux/arm/v7"], size=4000)
    idx.push(f"{registry.host}/cli/multi:1", ctx)
    img = random_image("linux/s390x", layers=2, size=3000, media="docker")
    img.push(f"{registry.host}/cli/single:1", ctx)
    return {
        "index": str(idx.digest),
        "arm": str(idx.children[2].digest),
        "single": str(img.digest),
        "layer": str(img.manifest.layers[0].digest),
    }


def test_copy_index_and_skopeo_agrees(
    registry: DistributionRegistry,
    registry2: DistributionRegistry,
    pushed: dict[str, str],
    tmp_path: Path,
) -> None:
    p = luff("copy", f"{registry.host}/cli/multi:1", f"{registry2.host}/cli/copied:2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"{registry2.host}/cli/copied@{pushed['index']}"
    assert p.stderr == ""  # no progress bar in a pipe
    assert skopeo_raw_digest(f"{registry2.host}/cli/copied:2") == pushed["index"]
    # Every blob is pullable: skopeo copies the whole index out.
    out = skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        f"docker://{registry2.host}/cli/copied:2",
        f"oci:{tmp_path}/out:x",
    )
    assert out.returncode == 0, out.stderr


def test_copy_verbose_prints_plan(
    registry: DistributionRegistry, registry2: DistributionRegistry, pushed: dict[str, str]
) -> None:
    p = luff("-v", "copy", f"{registry.host}/cli/multi:1", f"{registry2.host}/cli/plan:1")
    assert p.returncode == 0, p.stderr
    assert "blob     copy" in p.stderr and "manifest tag" in p.stderr and "total" in p.stderr
    again = luff("-v", "copy", f"{registry.host}/cli/multi:1", f"{registry2.host}/cli/plan:2")
    assert "blob     copy" not in again.stderr and "manifest exists" in again.stderr
    mount = luff("-v", "copy", f"{registry2.host}/cli/plan:1", f"{registry2.host}/cli/plan-m:1")
    assert "blob     mount" in mount.stderr and "blob     copy" not in mount.stderr


def test_copy_json_and_all_tags(
    registry: DistributionRegistry, registry2: DistributionRegistry, pushed: dict[str, str]
) -> None:
    p = luff("copy", "--json", f"{registry.host}/cli/single:1", f"{registry2.host}/cli/single:1")
    d = json.loads(p.stdout)
    assert d["digest"] == pushed["single"] and d["mediaType"].endswith("manifest.v2+json")
    luff("tag", f"{registry.host}/cli/single:1", "extra")
    p = luff("copy", "--all-tags", f"{registry.host}/cli/single", f"{registry2.host}/cli/alltags")
    assert p.returncode == 0, p.stderr
    assert luff("ls", f"{registry2.host}/cli/alltags").stdout.split() == ["1", "extra"]


def test_copy_from_skopeo_pushed(
    registry: DistributionRegistry,
    registry2: DistributionRegistry,
    pushed: dict[str, str],
    tmp_path: Path,
) -> None:
    # skopeo writes a layout and pushes it; luff reads what skopeo pushed.
    lay = f"oci:{tmp_path}/lay:v"
    assert (
        skopeo(
            "copy", "--all", "--src-tls-verify=false", f"docker://{registry.host}/cli/multi:1", lay
        ).returncode
        == 0
    )
    assert (
        skopeo(
            "copy",
            "--all",
            "--dest-tls-verify=false",
            lay,
            f"docker://{registry.host}/cli/by-skopeo:1",
        ).returncode
        == 0
    )
    want = skopeo_raw_digest(f"{registry.host}/cli/by-skopeo:1")
    assert luff("digest", f"{registry.host}/cli/by-skopeo:1").stdout.strip() == want
    p = luff("copy", f"{registry.host}/cli/by-skopeo:1", f"{registry2.host}/cli/by-skopeo:1")
    assert p.returncode == 0, p.stderr
    assert skopeo_raw_digest(f"{registry2.host}/cli/by-skopeo:1") == want


def test_manifest_config_digest_platform(
    registry: DistributionRegistry, pushed: dict[str, str]
) -> None:
    ref = f"{registry.host}/cli/multi:1"
    m = luff("manifest", ref)
    assert json.loads(m.stdout)["mediaType"] == "application/vnd.oci.image.index.v1+json"
    raw = subprocess.run(
        [sys.executable, "-m", "luff", "manifest", ref], capture_output=True
    ).stdout
    import hashlib

    assert (
        "sha256:" + hashlib.sha256(raw.rstrip(b"\n")).hexdigest() == pushed["index"]
        or "sha256:" + hashlib.sha256(raw).hexdigest() == pushed["index"]
    )
    assert luff("digest", ref).stdout.strip() == pushed["index"]
    assert luff("--platform", "linux/arm", "digest", ref).stdout.strip() == pushed["arm"]
    sk = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            "arm",
            "--override-variant",
            "v7",
            "--config",
            "--raw",
            f"docker://{ref}",
        ],
        capture_output=True,
        timeout=60,
    )
    assert sk.returncode == 0, sk.stderr
    mine = subprocess.run(
        [sys.executable, "-m", "luff", "--platform", "linux/arm/v7", "config", ref],
        capture_output=True,
        timeout=60,
    ).stdout
    assert mine.rstrip(b"\n") == sk.stdout.rstrip(b"\n")
    cfg = json.loads(luff("--platform", "linux/arm64/v8", "config", ref).stdout)
    assert cfg["architecture"] == "arm64"
    cfg = json.loads(luff("config", f"{registry.host}/cli/single:1").stdout)
    assert cfg["architecture"] == "s390x"
    j = json.loads(luff("digest", "--json", f"{registry.host}/cli/single:1").stdout)
    assert j["digest"] == pushed["single"] and j["size"] > 0


def test_blob_ls_catalog_tag_delete(registry: DistributionRegistry, pushed: dict[str, str]) -> None:
    import hashlib

    b = subprocess.run(
        [sys.executable, "-m", "luff", "blob", f"{registry.host}/cli/single@{pushed['layer']}"],
        capture_output=True,
        timeout=60,
    )
    assert b.returncode == 0
    assert "sha256:" + hashlib.sha256(b.stdout).hexdigest() == pushed["layer"]
    t = luff("tag", f"{registry.host}/cli/multi:1", "stable")
    assert t.stdout.strip() == f"{registry.host}/cli/multi:stable@{pushed['index']}"
    assert "stable" in luff("ls", f"{registry.host}/cli/multi").stdout.split()
    assert "cli/multi" in luff("catalog", registry.host).stdout.split()
    luff("tag", f"{registry.host}/cli/single:1", "doomed")
    d = luff("delete", f"{registry.host}/cli/single:doomed")
    assert d.returncode == 0, d.stderr
    one_line_error(luff("digest", f"{registry.host}/cli/single:1"))
    assert (
        skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/cli/single:1").returncode
        != 0
    )


def test_auth_login_logout_and_use(
    auth_registry: DistributionRegistry, token_registry: DistributionRegistry, tmp_path: Path
) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path / "dc")}
    for reg in (auth_registry, token_registry):
        bad = luff(
            "auth", "login", reg.host, "-u", USER, "--password-stdin", stdin="nope\n", env=env
        )
        assert "authenticat" in one_line_error(bad)
        ok = luff(
            "auth",
            "login",
            reg.host,
            "-u",
            USER,
            "--password-stdin",
            stdin=PASSWORD + "\n",
            env=env,
        )
        assert ok.returncode == 0, ok.stderr
        cfg = json.loads((tmp_path / "dc" / "config.json").read_text())
        assert reg.host in cfg["auths"]
        img = random_image(size=500)
        Context_ = Context  # push with the library, read with the CLI using the saved login
        img.push(
            f"{reg.host}/cli/authed:1",
            Context_(
                credentials=lambda h: __import__("luff.registry.auth", fromlist=["x"]).Credentials(
                    USER, PASSWORD
                )
            ),
        )
        d = luff("digest", f"{reg.host}/cli/authed:1", env=env)
        assert d.stdout.strip() == str(img.digest), d.stderr
        assert skopeo_digest(f"{reg.host}/cli/authed:1", "--creds", f"{USER}:{PASSWORD}") == str(
            img.digest
        )
        assert luff("auth", "logout", reg.host, env=env).returncode == 0
        assert "authentication required" in one_line_error(
            luff("digest", f"{reg.host}/cli/authed:1", env=env)
        )


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["digest", "Not/Valid:tag"], 2, "must be lowercase"),
        (["digest", "localhost:1/x:bad tag"], 2, "white space"),
        (["digest", "x/y@sha256:abc"], 2, "64"),
        (["--platform", "lunix", "digest", "x/y"], 2, "os/arch"),
        (["blob", "x/y:1"], 2, "REPOSITORY@sha256"),
        (["digest", "dir:/tmp/x"], 2, "unknown transport"),
    ],
)
def test_bad_input_one_line(args: list[str], code: int, needle: str) -> None:
    assert needle in one_line_error(luff(*args), code)


def test_missing_image_and_unreachable(registry: DistributionRegistry) -> None:
    assert "manifest unknown" in one_line_error(luff("digest", f"{registry.host}/cli/nothing:here"))
    from tests.registries import free_port

    assert "connection refused" in one_line_error(luff("ls", f"127.0.0.1:{free_port()}/x"))


def test_click_usage_exit_2() -> None:
    p = luff("copy", "only-one-arg")
    assert p.returncode == 2
    assert luff("version").stdout.strip() == __import__("luff").__version__


def test_verbose_shows_details(registry: DistributionRegistry) -> None:
    p = luff("-v", "digest", f"{registry.host}/cli/nothing:here")
    assert p.returncode == 1 and "Traceback" in p.stderr


def test_copy_keeps_a_tag_that_starts_with_sha(
    registry: DistributionRegistry, registry2: DistributionRegistry
) -> None:
    """A tag like 'sha-1234' or 'shared' is a tag, not a digest, on either side."""
    img = random_image(size=300)
    for t in ("sha-1234", "shared"):
        img.push(f"{registry.host}/cli/shatag:{t}", Context())
        p = luff("copy", f"{registry.host}/cli/shatag:{t}", f"{registry2.host}/cli/shatag:{t}")
        assert p.returncode == 0, p.stderr
        assert luff("digest", f"{registry2.host}/cli/shatag:{t}").stdout.strip() == str(img.digest)


def test_copy_to_an_untagged_repository_means_latest(
    registry: DistributionRegistry, registry2: DistributionRegistry
) -> None:
    """As in crane, skopeo and regctl: REPO is REPO:latest, not the source's tag."""
    img = random_image(size=300)
    img.push(f"{registry.host}/cli/untagged:1.4", Context())
    p = luff("copy", f"{registry.host}/cli/untagged:1.4", f"{registry2.host}/cli/untagged")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"{registry2.host}/cli/untagged@{img.digest}"
    assert luff("ls", f"{registry2.host}/cli/untagged").stdout.split() == ["latest"]


def test_copy_to_a_digest_pushes_no_tag(
    registry: DistributionRegistry, registry2: DistributionRegistry
) -> None:
    img = random_image(size=300)
    other = random_image(size=300)
    img.push(f"{registry.host}/cli/bydigest:1", Context())
    p = luff(
        "copy", f"{registry.host}/cli/bydigest:1", f"{registry2.host}/cli/bydigest@{img.digest}"
    )
    assert p.returncode == 0, p.stderr
    assert luff("digest", f"{registry2.host}/cli/bydigest@{img.digest}").returncode == 0
    assert luff("ls", f"{registry2.host}/cli/bydigest").stdout.split() == []
    bad = luff(
        "copy", f"{registry.host}/cli/bydigest:1", f"{registry2.host}/cli/bydigest@{other.digest}"
    )
    assert bad.returncode == 2 and "differs from the source" in bad.stderr
