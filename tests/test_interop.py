"""Interop with independent tools: skopeo and umoci read what luff writes, and vice versa."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from luff.context import Context
from luff.model.digest import Digest
from luff.ops import basic
from luff.ops import layout as lay
from luff.testing import random_image, random_index
from tests.registries import DistributionRegistry


@pytest.fixture(autouse=True)
def _tools() -> None:
    for tool in ("skopeo", "umoci"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (apt-get install {tool})")


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.json"
    p.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return p


def run(*args: str) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stderr}"
    return r.stdout


def skopeo(policy: Path, *args: str) -> str:
    return run("skopeo", "--policy", str(policy), *args)


def inspect_config(policy: Path, ref: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(
        skopeo(policy, "inspect", "--tls-verify=false", "--config", f"docker://{ref}")
    )
    return out


def raw_digest(policy: Path, ref: str) -> Digest:
    raw = skopeo(policy, "inspect", "--tls-verify=false", "--raw", f"docker://{ref}")
    return Digest.of(raw.encode())


# --- skopeo reads luff ------------------------------------------------------------------------


def test_skopeo_copies_luff_layout_index(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context, policy: Path
) -> None:
    idx = random_index(("linux/amd64", "linux/arm64"))
    st = tmp_path / "l"
    idx.push(f"oci:{st}:multi")
    dest = f"{registry.host}/interop/sk-layout:1"
    skopeo(
        policy, "copy", "--all", "--dest-tls-verify=false", f"oci:{st}:multi", f"docker://{dest}"
    )
    assert raw_digest(policy, dest) == idx.digest
    assert basic.digest(dest, ctx=ctx).digest == idx.digest


def test_skopeo_copies_luff_oci_archive(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context, policy: Path
) -> None:
    img = random_image("linux/amd64", layers=2)
    a = tmp_path / "img.tar"
    img.push(f"oci-archive:{a}:v1")
    dest = f"{registry.host}/interop/sk-ociarc:1"
    skopeo(policy, "copy", "--dest-tls-verify=false", f"oci-archive:{a}:v1", f"docker://{dest}")
    assert raw_digest(policy, dest) == img.digest


def test_skopeo_copies_luff_docker_archive(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context, policy: Path
) -> None:
    img = random_image("linux/arm64", layers=2, media="docker")
    src = f"{registry.host}/interop/sk-src:1"
    img.push(src, ctx)
    a = tmp_path / "d.tar"
    lay.pull(src, a, format="docker-archive", ctx=ctx)
    dest = f"{registry.host}/interop/sk-darc:1"
    skopeo(
        policy, "copy", "--dest-tls-verify=false",
        f"docker-archive:{a}:{src}", f"docker://{dest}",
    )  # fmt: skip
    assert inspect_config(policy, dest) == inspect_config(policy, src)
    # and without naming the image (it holds one)
    skopeo(policy, "copy", "--dest-tls-verify=false", f"docker-archive:{a}", f"docker://{dest}-2")
    assert inspect_config(policy, f"{dest}-2")["rootfs"] == inspect_config(policy, src)["rootfs"]


# --- umoci reads luff ---------------------------------------------------------------------


def test_umoci_lists_and_unpacks_luff_layout(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context
) -> None:
    img = random_image("linux/amd64", layers=2, size=300)
    src = f"{registry.host}/interop/umoci:1"
    img.push(src, ctx)
    st = tmp_path / "l"
    lay.pull(src, st, ctx=ctx)
    lay.append(st, [f"oci:{st}:1"], tag="other")
    tags = run("umoci", "ls", "--layout", str(st)).split()
    assert sorted(tags) == ["1", "other"]
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"{st}:1", str(bundle))
    files = sorted(p.name for p in (bundle / "rootfs" / "data").iterdir())
    assert len(files) == 2 and all(f.endswith(".bin") for f in files)
    assert all((bundle / "rootfs" / "data" / f).stat().st_size == 300 for f in files)


def test_umoci_reads_complete_parts_of_sparse_layout(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context, policy: Path
) -> None:
    img = random_image("linux/amd64", size=300)
    src = f"{registry.host}/interop/umoci-sparse:1"
    img.push(src, ctx)
    st = tmp_path / "sparse"
    lay.init(st)
    lay.append(st, [src], sparse=True, tag="s", ctx=ctx)
    assert run("umoci", "ls", "--layout", str(st)).split() == ["s"]
    stat = json.loads(run("umoci", "stat", "--json", "--image", f"{st}:s"))
    assert len(stat["history"]) == 1  # read the manifest and config
    info = json.loads(skopeo(policy, "inspect", f"oci:{st}:s"))
    assert info["Digest"] == str(img.digest) and info["Architecture"] == "amd64"
    lay.fill(st, ctx=ctx)
    run("umoci", "unpack", "--rootless", "--image", f"{st}:s", str(tmp_path / "b"))


# --- luff reads skopeo ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["oci", "oci-archive", "docker-archive"])
def test_luff_copies_skopeo_written_stores(
    tmp_path: Path,
    registry: DistributionRegistry,
    ctx: Context,
    policy: Path,
    kind: str,
) -> None:
    img = random_image(
        "linux/s390x", layers=2, media="docker" if kind == "docker-archive" else "oci"
    )
    src = f"{registry.host}/interop/from-skopeo-{kind}:1"
    img.push(src, ctx)
    local = {
        "oci": f"oci:{tmp_path / 'l'}:t",
        "oci-archive": f"oci-archive:{tmp_path / 'a.tar'}:t",
        "docker-archive": f"docker-archive:{tmp_path / 'd.tar'}:{src}",
    }[kind]
    skopeo(policy, "copy", "--src-tls-verify=false", f"docker://{src}", local)
    dest = f"{registry.host}/interop/to-luff-{kind}:1"
    d = basic.copy(local, dest, ctx=ctx)
    assert inspect_config(policy, dest) == inspect_config(policy, src)
    if kind != "docker-archive":
        assert d.digest == img.digest
    # and `luff push` of the plain path does the same
    path = local.split(":", 2)[1] if kind != "oci" else str(tmp_path / "l")
    d2 = lay.push(path, f"{dest}-push", ctx=ctx)
    assert d2.digest == d.digest


def test_skopeo_index_layout_round_trip(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context, policy: Path
) -> None:
    """skopeo copy --all into a layout; luff stages it flattened plus one more, push --index."""
    idx = random_index(("linux/amd64", "linux/arm64"))
    src = f"{registry.host}/interop/rt-src:1"
    idx.push(src, ctx)
    skopeo_dir = tmp_path / "sk"
    skopeo(
        policy, "copy", "--all", "--src-tls-verify=false", f"docker://{src}", f"oci:{skopeo_dir}:x"
    )
    extra = random_image("linux/riscv64")
    extra.push(f"oci:{tmp_path / 'extra'}:e")
    st = tmp_path / "stage"
    lay.init(st)
    lay.append(st, [f"oci:{skopeo_dir}:x"], flatten=True)
    lay.append(st, [f"oci:{tmp_path / 'extra'}:e"])
    dest = f"{registry.host}/interop/rt-dst:1"
    d = lay.push(str(st), dest, index=True, ctx=ctx)
    assert raw_digest(policy, dest) == d.digest
    raw = json.loads(skopeo(policy, "inspect", "--tls-verify=false", "--raw", f"docker://{dest}"))
    assert [m["digest"] for m in raw["manifests"]] == [
        *(str(c.digest) for c in idx.children),
        str(extra.digest),
    ]
    # skopeo reads every child back
    out = tmp_path / "back"
    skopeo(policy, "copy", "--all", "--src-tls-verify=false", f"docker://{dest}", f"oci:{out}:b")
    assert basic.digest(f"oci:{out}:b").digest == d.digest
