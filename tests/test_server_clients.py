"""Real clients against the embedded registry: skopeo, buildah and luff; digests must agree."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from luff.context import Context
from luff.errors import LuffError
from luff.model import mediatypes as mt
from luff.ops import basic
from luff.registry.auth import ANONYMOUS
from luff.testing import Registry, random_image, random_index
from tests.registries import DistributionRegistry

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; run the README's test command, which installs it")


def run(*cmd: str, env: dict[str, str] | None = None, ok: bool = True) -> str:
    p = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )
    if ok and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    if not ok and p.returncode == 0:
        raise AssertionError(f"{' '.join(cmd)} unexpectedly succeeded")
    return p.stdout


def skopeo(*args: str, ok: bool = True) -> str:
    need("skopeo")
    return run("skopeo", *args, ok=ok)


def raw_digest(ref: str, *creds: str) -> str:
    data = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", *creds, f"docker://{ref}"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    """A plain distribution registry (always the real one, whatever the conftest compares)."""
    need("docker-registry")
    reg = DistributionRegistry(tmp_path_factory.mktemp("dist")).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def emb() -> Iterator[Registry]:
    with Registry() as reg:
        yield reg


def anon() -> Context:
    return Context(credentials=lambda h: ANONYMOUS, backoff=0.01)


def test_luff_push_skopeo_copy_out_and_back(emb: Registry, tmp_path: Path) -> None:
    ctx = anon()
    desc = random_index(PLATFORMS, layers=2, size=2048).push(f"{emb.host}/src/app:1", ctx)
    assert raw_digest(f"{emb.host}/src/app:1") == str(desc.digest)
    layout = tmp_path / "layout"
    skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        f"docker://{emb.host}/src/app:1",
        f"oci:{layout}:one",
    )
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(desc.digest)
    skopeo(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        f"oci:{layout}:one",
        f"docker://{emb.host}/back/app:2",
    )
    assert basic.digest(f"{emb.host}/back/app:2", ctx=ctx).digest == desc.digest
    # every child and blob is there: luff copies the whole graph out again
    again = basic.copy(f"{emb.host}/back/app:2", f"{emb.host}/third/app:3", ctx=ctx)
    assert again.digest == desc.digest


def test_skopeo_between_distribution_and_embedded(
    emb: Registry, distribution: DistributionRegistry, ctx: Context
) -> None:
    for media in ("oci", "docker"):
        src = f"{distribution.host}/emb-src-{media}/app:1"
        desc = random_index(PLATFORMS, size=4096, media=media).push(src, ctx)
        skopeo(
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{src}",
            f"docker://{emb.host}/from-dist-{media}/app:1",
        )
        assert raw_digest(f"{emb.host}/from-dist-{media}/app:1") == str(desc.digest)
        got = basic.digest(f"{emb.host}/from-dist-{media}/app:1", ctx=ctx)
        assert (got.digest, got.media_type) == (desc.digest, desc.media_type)
        skopeo(
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{emb.host}/from-dist-{media}/app:1",
            f"docker://{distribution.host}/emb-back-{media}/app:1",
        )
        assert raw_digest(f"{distribution.host}/emb-back-{media}/app:1") == str(desc.digest)


def test_luff_copy_between_distribution_and_embedded(
    emb: Registry, distribution: DistributionRegistry, ctx: Context
) -> None:
    src = f"{distribution.host}/luff-emb/app:1"
    desc = random_index(PLATFORMS).push(src, ctx)
    assert basic.copy(src, f"{emb.host}/in/app:1", ctx=ctx).digest == desc.digest
    out = f"{distribution.host}/luff-emb-out/app:1"
    assert basic.copy(f"{emb.host}/in/app:1", out, ctx=ctx).digest == desc.digest
    assert raw_digest(out) == str(desc.digest)


def test_luff_copy_inside_embedded_mounts_blobs() -> None:
    log = io.StringIO()
    with Registry(log=log) as reg:
        ctx = anon()
        desc = random_image(layers=3).push(f"{reg.host}/a/app:1", ctx)
        assert basic.copy(f"{reg.host}/a/app:1", f"{reg.host}/b/app:1", ctx=ctx).digest == (
            desc.digest
        )
    mounts = [ln for ln in log.getvalue().splitlines() if "mount=" in ln and " 201 " in ln]
    assert len(mounts) == 4  # config and three layers, none re-uploaded


def test_buildah_manifest_push_all(emb: Registry, tmp_path: Path) -> None:
    need("buildah")
    root = tmp_path / "buildah"
    env = {"STORAGE_DRIVER": "vfs"}
    # buildah insists that the (isolated) Docker config file exists
    cfg = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('{"auths": {}}')
    b = ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run")]
    b += ["--storage-driver", "vfs"]
    payload = tmp_path / "hello.txt"
    payload.write_text("hello from buildah\n")
    list_name = "luff-test-list"
    run(*b, "manifest", "create", list_name, env=env)
    try:
        for arch in ("amd64", "arm64"):
            c = run(*b, "from", "--arch", arch, "scratch", env=env).strip()
            run(*b, "copy", c, str(payload), f"/hello-{arch}.txt", env=env)
            run(*b, "config", "--arch", arch, "--os", "linux", c, env=env)
            run(*b, "commit", "-q", c, f"luff-img-{arch}", env=env)
            run(*b, "rm", c, env=env)
            run(
                *b,
                "manifest",
                "add",
                list_name,
                f"containers-storage:localhost/luff-img-{arch}:latest",
                env=env,
            )
        digestfile = tmp_path / "digest"
        run(
            *b,
            "manifest",
            "push",
            "--all",
            "--tls-verify=false",
            "--digestfile",
            str(digestfile),
            list_name,
            f"docker://{emb.host}/buildah/app:1",
            env=env,
        )
    finally:
        subprocess.run(
            [*b, "rmi", "--all", "--force"], capture_output=True, env={**os.environ, **env}
        )
    pushed = digestfile.read_text().strip()
    ctx = anon()
    desc = basic.digest(f"{emb.host}/buildah/app:1", ctx=ctx)
    assert str(desc.digest) == pushed
    assert raw_digest(f"{emb.host}/buildah/app:1") == pushed
    assert mt.is_index(desc.media_type)
    children = json.loads(basic.manifest(f"{emb.host}/buildah/app:1", ctx=ctx))["manifests"]
    assert sorted(c["platform"]["architecture"] for c in children) == ["amd64", "arm64"]
    # the whole graph is fetchable and verifies
    assert basic.copy(f"{emb.host}/buildah/app:1", f"{emb.host}/copy/app:1", ctx=ctx).digest == (
        desc.digest
    )


@pytest.mark.parametrize("auth", ["basic", "token"])
def test_cli_server_with_auth_and_skopeo(auth: str) -> None:
    """``luff registry serve`` in a subprocess (htpasswd file; token mode) with skopeo."""
    with Registry(auth=auth, process=True) as reg:  # type: ignore[arg-type]
        ctx = reg.context()
        desc = random_index(PLATFORMS[:2]).push(f"{reg.host}/src/app:1", ctx)
        creds = f"{reg.username}:{reg.password}"
        skopeo(
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"--src-creds={creds}",
            f"--dest-creds={creds}",
            f"docker://{reg.host}/src/app:1",
            f"docker://{reg.host}/dst/app:1",
        )
        assert raw_digest(f"{reg.host}/dst/app:1", f"--creds={creds}") == str(desc.digest)
        skopeo(
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"--creds={reg.username}:wrong",
            f"docker://{reg.host}/dst/app:1",
            ok=False,
        )
        with pytest.raises(LuffError):
            basic.digest(f"{reg.host}/dst/app:1", ctx=anon())


def test_demo_script() -> None:
    """examples/demo.py (what ``make demo`` runs) works and its digests agree."""
    demo = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
    p = subprocess.run(
        [sys.executable, str(demo)], capture_output=True, text=True, timeout=300, check=False
    )
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    for plat in PLATFORMS:
        assert plat in out
    pinned = next(ln for ln in out.splitlines() if "/release/app@sha256:" in ln)
    descriptor = json.loads(out[out.index("{") : out.index("}") + 1])
    assert pinned.endswith(descriptor["digest"])
    assert descriptor["mediaType"] == mt.OCI_INDEX
    assert "registry stopped" in out
