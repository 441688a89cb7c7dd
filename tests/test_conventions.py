"""Platforms as the ecosystem means them, and the conventions users trip on.

Each test here failed on luff before the platform/conventions work: the
wrong image picked, images relabelled, requests silently ignored.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from luff.context import Context
from luff.model import mediatypes as mt
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.stores.memory import MemoryStore
from luff.testing import Image, random_image
from tests.images import index_with_attestation


def luff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args], capture_output=True, text=True, timeout=120
    )


def index_of(*children: Image, store: MemoryStore) -> Image:
    m = Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [c.descriptor.to_dict() for c in children],
        }
    )
    store.push_manifest(m)
    return Image(m.descriptor(), m, store, list(children))


def images(*platforms: str | Platform) -> tuple[Image, list[Image]]:
    store = MemoryStore()
    kids = [random_image(p, store=store, size=200) for p in platforms]
    return index_of(*kids, store=store), kids


def entries(reg: Any, ref: str) -> list[dict[str, Any]]:
    p = luff("manifest", f"{reg.host}/{ref}")
    assert p.returncode == 0, p.stderr
    return list(json.loads(p.stdout)["manifests"])


# --- picking an image by platform ---------------------------------------------------------


def test_platform_picks_the_best_match_not_the_first(registry: Any) -> None:
    idx, (_v3, plain, _i386) = images("linux/amd64/v3", "linux/amd64", "linux/386")
    idx.push(f"{registry.host}/conv/rank:1", Context())
    p = luff("--platform", "linux/amd64", "digest", f"{registry.host}/conv/rank:1")
    assert p.stdout.strip() == str(plain.digest), p.stderr  # v3 code may crash on a v1 CPU
    # A 386 image is what an amd64 host runs when nothing better is there.
    only386, (x,) = images("linux/386")
    only386.push(f"{registry.host}/conv/rank:2", Context())
    p = luff("--platform", "linux/amd64", "digest", f"{registry.host}/conv/rank:2")
    assert p.stdout.strip() == str(x.digest), p.stderr
    # arm64 runs arm/v7, and prefers arm64.
    arm, (_v7, a64) = images("linux/arm/v7", "linux/arm64")
    arm.push(f"{registry.host}/conv/rank:3", Context())
    p = luff("--platform", "linux/arm64", "digest", f"{registry.host}/conv/rank:3")
    assert p.stdout.strip() == str(a64.digest), p.stderr


def test_single_component_platforms_as_docker_takes_them(registry: Any) -> None:
    idx, (amd, arm) = images("linux/amd64", "linux/arm64")
    idx.push(f"{registry.host}/conv/single:1", Context())
    for word, want in (("arm64", arm), ("aarch64", arm), ("x86_64", amd)):
        p = luff("--platform", word, "digest", f"{registry.host}/conv/single:1")
        assert p.stdout.strip() == str(want.digest), (word, p.stderr)


def test_windows_prefers_the_requested_build(registry: Any) -> None:
    store = MemoryStore()
    old = random_image(Platform("windows", "amd64", "", "10.0.17763.1"), store=store, size=100)
    new = random_image(Platform("windows", "amd64", "", "10.0.20348.2"), store=store, size=100)
    index_of(old, new, store=store).push(f"{registry.host}/conv/win:1", Context())
    # A host at a later revision of build 20348 runs that build's image, not 17763's.
    p = luff("--platform", "windows/amd64:10.0.20348.5", "digest", f"{registry.host}/conv/win:1")
    assert p.stdout.strip() == str(new.digest), p.stderr
    p = luff("--platform", "windows/amd64:10.0.17763.9", "digest", f"{registry.host}/conv/win:1")
    assert p.stdout.strip() == str(old.digest), p.stderr


def test_platform_on_a_single_image_of_another_platform_fails(registry: Any) -> None:
    img = random_image("linux/amd64", size=100)
    img.push(f"{registry.host}/conv/one:1", Context())
    for verb in ("digest", "config", "manifest"):
        p = luff("--platform", "linux/arm/v7", verb, f"{registry.host}/conv/one:1")
        assert p.returncode == 1, (verb, p.stdout)
        line = p.stderr.strip()
        assert "\n" not in line and "linux/amd64" in line and "linux/arm/v7" in line
    p = luff(
        "copy",
        "--platform",
        "linux/arm/v7",
        f"{registry.host}/conv/one:1",
        f"{registry.host}/conv/one-copy:1",
    )
    assert p.returncode == 1 and "linux/amd64" in p.stderr
    assert luff("ls", f"{registry.host}/conv/one-copy").stdout.split() == []
    # Compatible is fine: an amd64 host runs a 386 image.
    i386 = random_image("linux/386", size=100)
    i386.push(f"{registry.host}/conv/one:386", Context())
    assert (
        luff("--platform", "linux/amd64", "digest", f"{registry.host}/conv/one:386").returncode == 0
    )


# --- filters are strict ----------------------------------------------------------------


def test_filter_keeps_only_the_default_variant(registry: Any) -> None:
    idx, kids = images("linux/amd64", "linux/amd64/v3", "linux/arm64", "linux/arm64/v9")
    idx.push(f"{registry.host}/conv/filter:1", Context())
    p = luff(
        "index",
        "filter",
        f"{registry.host}/conv/filter:1",
        "--platform",
        "linux/amd64",
        "--platform",
        "linux/arm64",
        "-t",
        "slim",
    )
    assert p.returncode == 0, p.stderr
    kept = [e["digest"] for e in entries(registry, "conv/filter:slim")]
    assert kept == [str(kids[0].digest), str(kids[2].digest)]
    # only= picks the same way.
    p = luff(
        "index",
        "create",
        f"{registry.host}/conv/filter:only",
        f"{registry.host}/conv/filter:1,only=linux/amd64",
    )
    assert p.returncode == 0, p.stderr
    assert [e["digest"] for e in entries(registry, "conv/filter:only")] == [str(kids[0].digest)]


# --- entries say what the image says ----------------------------------------------------


def test_entries_keep_the_config_platform_as_written(registry: Any) -> None:
    a64 = random_image(Platform("linux", "arm64", "v8"), size=100)
    arm = random_image(Platform("linux", "arm"), size=100)
    a64.push(f"{registry.host}/conv/asis:a64", Context())
    arm.push(f"{registry.host}/conv/asis:arm", Context())
    p = luff(
        "index",
        "create",
        f"{registry.host}/conv/asis:1",
        f"{registry.host}/conv/asis:a64",
        f"{registry.host}/conv/asis:arm",
    )
    assert p.returncode == 0, p.stderr
    plats = [e["platform"] for e in entries(registry, "conv/asis:1")]
    assert plats == [
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
        {"architecture": "arm", "os": "linux"},
    ]


def test_an_override_is_written_as_given(registry: Any) -> None:
    img = random_image("linux/arm/v7", size=100)
    img.push(f"{registry.host}/conv/override:src", Context())
    p = luff(
        "index",
        "create",
        f"{registry.host}/conv/override:1",
        f"{registry.host}/conv/override:src,platform=linux/arm/7",
    )
    assert p.returncode == 0, p.stderr
    assert entries(registry, "conv/override:1")[0]["platform"] == {
        "architecture": "arm",
        "os": "linux",
        "variant": "7",
    }


def test_docker_archive_index_entry_carries_the_platform(tmp_path: Path) -> None:
    img = random_image("linux/arm64/v8", size=100)
    img.push(f"oci:{tmp_path / 'lay'}:1")
    out = tmp_path / "d.tar"
    p = luff("pull", f"oci:{tmp_path / 'lay'}:1", f"docker-archive:{out}")
    assert p.returncode == 0, p.stderr
    with tarfile.open(out) as tf:
        member = tf.extractfile("index.json")
        assert member is not None
        index = json.loads(member.read())
    assert index["manifests"][0]["platform"] == {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
    }


# --- --platform is never silently ignored -------------------------------------------


def test_copy_with_two_platforms_makes_an_index_of_them(registry: Any) -> None:
    store = MemoryStore()
    att_idx = index_with_attestation("linux/arm64")
    amd = random_image("linux/amd64", store=store, size=100)
    s390 = random_image("linux/s390x", store=store, size=100)
    arm, att = att_idx.children
    for c in (arm, att):
        store.manifests[c.digest] = c.manifest
        for b in c.manifest.blobs():
            store.blobs[b.digest] = att_idx.store.blobs[b.digest]
    att_entry = att.descriptor.with_(annotations=att_idx.manifest.manifests[1].annotations)
    m = Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                amd.descriptor.to_dict(),
                arm.descriptor.to_dict(),
                att_entry.to_dict(),
                s390.descriptor.to_dict(),
            ],
        }
    )
    store.push_manifest(m)
    Image(m.descriptor(), m, store).push(f"{registry.host}/conv/multi:1", Context())
    p = luff(
        "copy",
        "--platform",
        "linux/amd64",
        "--platform",
        "linux/arm64",
        f"{registry.host}/conv/multi:1",
        f"{registry.host}/conv/multi-copy:1",
    )
    assert p.returncode == 0, p.stderr
    got = [e["digest"] for e in entries(registry, "conv/multi-copy:1")]
    assert got == [str(amd.digest), str(arm.digest), str(att.digest)]
    # One platform copies the image itself, not a one-entry index.
    p = luff(
        "copy",
        "--platform",
        "linux/s390x",
        f"{registry.host}/conv/multi:1",
        f"{registry.host}/conv/multi-copy:2",
    )
    assert p.returncode == 0, p.stderr
    assert luff("digest", f"{registry.host}/conv/multi-copy:2").stdout.strip() == str(s390.digest)


# --- addresses and tags --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["oci", "oci-archive", "docker-archive"])
def test_pull_writes_to_the_path_of_an_address(registry: Any, tmp_path: Path, kind: str) -> None:
    img = random_image(size=100)
    img.push(f"{registry.host}/conv/pull:1", Context())
    dest = tmp_path / ("dir" if kind == "oci" else "file.tar")
    p = luff("pull", f"{registry.host}/conv/pull:1", f"{kind}:{dest}")
    assert p.returncode == 0, p.stderr
    assert dest.exists()
    assert not list(tmp_path.glob(f"{kind}:*"))  # no directory named after the address
    assert luff("digest", f"{kind}:{dest}").returncode == 0


def test_untag_removes_only_the_tag(registry: Any, registry_kind: str) -> None:
    img = random_image(size=100)
    img.push(f"{registry.host}/conv/untag:a", Context())
    img.push(f"{registry.host}/conv/untag:b", Context())
    p = luff("untag", f"{registry.host}/conv/untag:a")
    if registry_kind == "distribution":
        # distribution 2.8 deletes manifests only: a clear refusal, nothing deleted.
        assert p.returncode == 1 and "does not delete a tag alone" in p.stderr
        assert sorted(luff("ls", f"{registry.host}/conv/untag").stdout.split()) == ["a", "b"]
        return
    assert p.returncode == 0, p.stderr
    assert luff("ls", f"{registry.host}/conv/untag").stdout.split() == ["b"]
    assert luff("digest", f"{registry.host}/conv/untag:b").stdout.strip() == str(img.digest)
    p = luff("untag", f"{registry.host}/conv/untag@{img.digest}")
    assert p.returncode == 2 and "name the tag" in p.stderr


def test_t_means_a_target_everywhere(registry: Any) -> None:
    a, b = random_image("linux/amd64", size=100), random_image("linux/arm64", size=100)
    a.push(f"{registry.host}/conv/t:a", Context())
    b.push(f"{registry.host}/conv/t:b", Context())
    h = registry.host
    assert luff("index", "create", f"{h}/conv/t:1", f"{h}/conv/t:a", "-t", "one").returncode == 0
    assert luff("index", "append", f"{h}/conv/t:1", f"{h}/conv/t:b", "-t", "two").returncode == 0
    assert (
        luff(
            "index", "filter", f"{h}/conv/t:two", "--exclude", "linux/arm64", "-t", "three"
        ).returncode
        == 0
    )
    assert len(entries(registry, "conv/t:1")) == 1  # append -t wrote elsewhere
    assert len(entries(registry, "conv/t:two")) == 2  # filter -t wrote elsewhere
    assert len(entries(registry, "conv/t:three")) == 1
    assert luff("digest", f"{h}/conv/t:one").stdout == luff("digest", f"{h}/conv/t:1").stdout
    for cmd in (["index", "create"], ["index", "append"], ["index", "filter"]):
        assert "-t, --target, --tag TAG|ADDRESS" in luff(*cmd, "--help").stdout


def test_ls_hints(tmp_path: Path) -> None:
    p = luff("ls", "localhost:5000")
    assert p.returncode == 2 and "luff catalog localhost:5000" in p.stderr
    p = luff("ls", str(tmp_path))
    assert p.returncode == 2 and f"oci:{tmp_path}" in p.stderr


def test_platform_help_shows_os_version() -> None:
    for cmd in (
        ["copy"],
        ["digest"],
        ["config"],
        ["manifest"],
        ["pull"],
        ["index", "filter"],
        ["layout", "append"],
    ):
        out = luff(*cmd, "--help").stdout
        assert "OS/ARCH[/VARIANT][:OS.VERSION]" in out, cmd


def test_config_without_platform_takes_the_best_image_for_this_host(registry: Any) -> None:
    from luff.model.platform import host_platform

    host = host_platform()
    if host.architecture != "amd64":
        pytest.skip("the index below is built for an amd64 host")
    idx, (_v3, plain) = images("linux/amd64/v3", "linux/amd64")
    idx.push(f"{registry.host}/conv/config:1", Context())
    p = luff("config", f"{registry.host}/conv/config:1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.encode() == plain.store.blobs[plain.manifest.config.digest]
