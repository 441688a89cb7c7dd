"""``luff index`` against real registries, with layouts and archives made by skopeo.

Sources live on two registries (plus a layout and a docker archive); targets
are on a third. skopeo checks what luff pushed; every failure path must leave
the target tag absent and no blob behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import luff
from luff.context import Context
from luff.copy import COPY, EXISTS, MOUNT, Plan
from luff.errors import NotFound
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.platform import Platform
from luff.model.reference import Reference
from luff.ops import basic
from luff.registry.auth import ANONYMOUS
from luff.stores.registry import RegistryStore
from luff.testing import Image, random_image
from tests.images import index_with_attestation
from tests.registries import DistributionRegistry

WIN = Platform("windows", "amd64", "", "10.0.17763.1234")


def luff_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)


def raw(ref: str) -> tuple[str, dict[str, object]]:
    p = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"],
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return "sha256:" + hashlib.sha256(p.stdout).hexdigest(), json.loads(p.stdout)


def platforms(doc: dict[str, object]) -> list[dict[str, object]]:
    ms = doc["manifests"]
    assert isinstance(ms, list)
    return [m["platform"] for m in ms]


def error_line(p: subprocess.CompletedProcess[str], code: int) -> str:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("luff: error: "), p.stderr
    return lines[0]


@pytest.fixture(scope="module")
def actx() -> Iterator[Context]:
    c = Context(credentials=lambda host: ANONYMOUS, backoff=0.01)
    yield c
    c.close()


@pytest.fixture(scope="module")
def srcs(
    registry: DistributionRegistry, registry2: DistributionRegistry, actx: Context
) -> dict[str, Image]:
    """Per-platform images spread over two registries."""
    r1, r2 = registry.host, registry2.host
    images = {
        f"{r1}/src/amd64:1": random_image("linux/amd64", size=2000),
        f"{r1}/src/amd64b:1": random_image("linux/amd64", size=2000),
        f"{r2}/src/arm:1": random_image("linux/arm/v7", size=2000, media="docker"),
        f"{r1}/src/win:1": random_image(WIN, size=2000),
        f"{r2}/src/multi:1": index_with_attestation(
            {"architecture": "arm64", "os": "linux", "variant": "v8"}
        ),
        f"{r1}/src/d-amd64:1": random_image("linux/amd64", media="docker"),
        f"{r1}/src/d-arm64:1": random_image("linux/arm64", media="docker"),
        f"{r1}/src/s390x:1": random_image("linux/s390x", size=2000),
        f"{r1}/src/ppc:1": random_image("linux/ppc64le", size=2000, media="docker"),
    }
    for ref, img in images.items():
        img.push(ref, actx)
    return images


def nothing_pushed(reg: DistributionRegistry, repo: str, blobs: list[Descriptor]) -> None:
    store = RegistryStore.for_reference(Reference.parse(f"{reg.host}/{repo}"), Context())
    with pytest.raises(NotFound):
        store.resolve("1")
    for b in blobs:
        assert not store.exists(b), f"{b.digest} was pushed to {repo}"
    p = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{reg.host}/{repo}:1")
    assert p.returncode != 0


def blobs_of(img: Image) -> list[Descriptor]:
    return img.manifest.blobs()


# --- create ---------------------------------------------------------------------


def test_create_from_registries_layout_and_archive(
    registry: DistributionRegistry,
    registry2: DistributionRegistry,
    registry3: DistributionRegistry,
    srcs: dict[str, Image],
    tmp_path: Path,
) -> None:
    r1, r2, r3 = registry.host, registry2.host, registry3.host
    # skopeo writes the layout and the docker archive.
    lay = f"oci:{tmp_path}/layout:s390x"
    arch = f"docker-archive:{tmp_path}/ppc.tar"
    for src, dst in ((f"{r1}/src/s390x:1", lay), (f"{r1}/src/ppc:1", f"{arch}:src/ppc:1")):
        p = skopeo("copy", "--src-tls-verify=false", f"docker://{src}", dst)
        assert p.returncode == 0, p.stderr
    target = f"{r3}/rel/app:1"
    p = luff_cli(
        "index",
        "create",
        target,
        f"{r1}/src/amd64:1",
        f"{r2}/src/arm:1",
        f"ref={r1}/src/win:1,os.features=win32k,annotation.org.example.flavour=ltsc2019",
        f"{r2}/src/multi:1",
        lay,
        arch,
        "--annotation",
        "org.opencontainers.image.source=https://example.com/app",
        "-t",
        "latest",
    )
    assert p.returncode == 0, p.stderr
    digest, doc = raw(target)
    assert p.stdout.strip() == f"{r3}/rel/app@{digest}"
    assert raw(f"{r3}/rel/app:latest")[0] == digest
    assert doc["mediaType"] == mt.OCI_INDEX
    assert doc["annotations"] == {"org.opencontainers.image.source": "https://example.com/app"}
    plats = platforms(doc)
    assert plats[0] == {"architecture": "amd64", "os": "linux"}
    assert plats[1] == {"architecture": "arm", "os": "linux", "variant": "v7"}
    assert plats[2] == {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.1234",
        "os.features": ["win32k"],
    }
    assert plats[3] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert plats[4] == {"architecture": "unknown", "os": "unknown"}  # attestation kept
    assert plats[5] == {"architecture": "s390x", "os": "linux"}
    assert plats[6] == {"architecture": "ppc64le", "os": "linux"}
    ms = doc["manifests"]
    assert isinstance(ms, list)
    assert ms[2]["annotations"] == {"org.example.flavour": "ltsc2019"}
    assert ms[4]["annotations"][mt.REFERENCE_DIGEST] == ms[3]["digest"]
    # Every blob is there: skopeo copies the whole index out.
    out = skopeo(
        "copy", "--all", "--src-tls-verify=false", f"docker://{target}", f"oci:{tmp_path}/o"
    )
    assert out.returncode == 0, out.stderr
    # skopeo picks the arm/v7 image.
    p = skopeo(
        "inspect",
        "--tls-verify=false",
        "--override-os",
        "linux",
        "--override-arch",
        "arm",
        "--override-variant",
        "v7",
        f"docker://{target}",
    )
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    arm = srcs[f"{r2}/src/arm:1"]
    assert info["Architecture"] == "arm"  # skopeo 1.9 prints no Variant; the layers tell
    assert info["Layers"] == [str(x.digest) for x in arm.manifest.layers]


def test_create_python_api_and_rerun(
    registry: DistributionRegistry, registry3: DistributionRegistry, srcs: dict[str, Image]
) -> None:
    r1, r3 = registry.host, registry3.host
    ctx = Context(credentials=lambda host: ANONYMOUS)
    said: list[str] = []
    ctx.settings.log = said.append
    sources = [f"{r1}/src/amd64:1", f"{r1}/src/d-arm64:1"]
    desc = luff.index.create(f"{r3}/api/app:1", sources, ctx=ctx)
    assert desc.media_type == mt.OCI_INDEX
    assert raw(f"{r3}/api/app:1")[0] == str(desc.digest)
    # Re-running onto the filled target transfers nothing.
    built = luff.index.build(sources, ctx=ctx)
    assert built.digest == desc.digest
    plan = built.plan(f"{r3}/api/app:1")
    assert plan.blobs == [] and {m.action for m in plan.manifests} == {EXISTS, "tag"}
    assert built.push(f"{r3}/api/app:1").digest == desc.digest
    assert any("already up to date" in s for s in said)
    listing = luff.index.list(f"{r3}/api/app:1", ctx=ctx)
    assert [str(e.platform) for e in listing.entries] == ["linux/amd64", "linux/arm64"]


def test_same_registry_sources_are_mounted(
    registry: DistributionRegistry, registry3: DistributionRegistry, srcs: dict[str, Image]
) -> None:
    r1, r3 = registry.host, registry3.host
    ctx = Context(credentials=lambda host: ANONYMOUS)
    # Put the sources on the target's registry first.
    for name in ("amd64", "s390x"):
        basic.copy(f"{r1}/src/{name}:1", f"{r3}/stage/{name}:1", ctx=ctx)
    built = luff.index.build([f"{r3}/stage/amd64:1", f"{r3}/stage/s390x:1"], ctx=ctx)
    plan = built.plan(f"{r3}/rel/mounted:1")
    assert plan.blobs and {b.action for b in plan.blobs} == {MOUNT}
    assert plan.bytes_to_copy == 0
    seen: list[Plan] = []
    built.push(f"{r3}/rel/mounted:1", on_plan=seen.append)
    # Still "mount" after the transfer: no mount fell back to a download.
    assert seen and {b.action for b in seen[0].blobs} == {MOUNT}
    out = skopeo("inspect", "--tls-verify=false", f"docker://{r3}/rel/mounted:1")
    assert out.returncode == 0, out.stderr


def test_dry_run_prints_index_and_plan_and_pushes_nothing(
    registry: DistributionRegistry, registry3: DistributionRegistry, srcs: dict[str, Image]
) -> None:
    r1, r3 = registry.host, registry3.host
    args = ["index", "create", f"{r3}/dry/app:1", f"{r1}/src/amd64:1", f"{r1}/src/s390x:1"]
    p = luff_cli(*args, "--dry-run")
    assert p.returncode == 0, p.stderr
    # stdout holds the index alone (pipeable); the plan goes to stderr.
    doc = json.loads(p.stdout)
    assert [m["platform"]["architecture"] for m in doc["manifests"]] == ["amd64", "s390x"]
    plan = p.stderr.partition("plan for ")[2]
    assert plan.startswith(f"{r3}/dry/app:1:")
    assert "blob     copy" in plan and "manifest tag" in plan and "total    copy: 4" in plan
    p = luff_cli(*args, "--dry-run", "--json")
    j = json.loads(p.stdout)
    assert j["plans"][0]["totals"][COPY]["count"] == 4
    assert j["descriptor"]["digest"].startswith("sha256:")
    assert j["index"] == doc
    amd = srcs[f"{r1}/src/amd64:1"]
    nothing_pushed(registry3, "dry/app", blobs_of(amd))


def test_json_output_and_docker_format(
    registry: DistributionRegistry, registry3: DistributionRegistry, srcs: dict[str, Image]
) -> None:
    r1, r3 = registry.host, registry3.host
    p = luff_cli(
        "index",
        "create",
        f"{r3}/rel/docker:1",
        f"{r1}/src/d-amd64:1",
        f"{r1}/src/d-arm64:1",
        "--format",
        "docker",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["mediaType"] == mt.DOCKER_LIST
    digest, doc = raw(f"{r3}/rel/docker:1")
    assert d["digest"] == digest and d["size"] > 0
    assert doc["mediaType"] == mt.DOCKER_LIST
    assert "annotations" not in doc


def test_allow_duplicate_platforms(
    registry: DistributionRegistry, registry3: DistributionRegistry, srcs: dict[str, Image]
) -> None:
    r1, r3 = registry.host, registry3.host
    p = luff_cli(
        "index",
        "create",
        f"{r3}/rel/dups:1",
        f"{r1}/src/amd64:1",
        f"{r1}/src/amd64b:1",
        "--allow-duplicate-platforms",
    )
    assert p.returncode == 0, p.stderr
    assert len(platforms(raw(f"{r3}/rel/dups:1")[1])) == 2


def test_spec_file(
    registry: DistributionRegistry,
    registry2: DistributionRegistry,
    registry3: DistributionRegistry,
    srcs: dict[str, Image],
    tmp_path: Path,
) -> None:
    r1, r2, r3 = registry.host, registry2.host, registry3.host
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""
target: {r3}/spec/app:1
tags: [stable]
annotations:
  org.opencontainers.image.version: "1"
set:
  - '.annotations["org.example.edited"] = "yes"'
sources:
  - {r1}/src/amd64:1
  - ref: {r2}/src/arm:1
    platform: linux/arm/v6
    annotations: {{org.example.note: "relabelled"}}
  - ref: {r1}/src/win:1
    platform: {{os: windows, architecture: amd64, os.version: "10.0.20348.2"}}
"""
    )
    p = luff_cli("index", "create", "-f", str(spec))
    assert p.returncode == 0, p.stderr
    digest, doc = raw(f"{r3}/spec/app:stable")
    assert p.stdout.strip() == f"{r3}/spec/app@{digest}"
    assert doc["annotations"] == {
        "org.opencontainers.image.version": "1",
        "org.example.edited": "yes",
    }
    plats = platforms(doc)
    assert plats[1] == {"architecture": "arm", "os": "linux", "variant": "v6"}
    assert plats[2]["os.version"] == "10.0.20348.2"

    # append takes a spec too: its sources are added, its tags become extra targets.
    more = tmp_path / "more.yaml"
    more.write_text(
        f"""
tags: [with-arm7]
sources:
  - ref: {r2}/src/arm:1
    platform: linux/arm/v7
    annotations: {{org.example.note: "appended"}}
"""
    )
    p = luff_cli("index", "append", f"{r3}/spec/app:1", "-f", str(more))
    assert p.returncode == 0, p.stderr
    digest2, doc2 = raw(f"{r3}/spec/app:with-arm7")
    assert p.stdout.strip() == f"{r3}/spec/app@{digest2}"
    assert raw(f"{r3}/spec/app:1")[0] == digest2
    # The same image again amends its entry in place: platform and annotations.
    assert len(doc2["manifests"]) == len(doc["manifests"])
    assert platforms(doc2)[1] == {"architecture": "arm", "os": "linux", "variant": "v7"}
    assert doc2["manifests"][1]["annotations"] == {"org.example.note": "appended"}
    more.write_text(f"target: {r3}/x:1\nsources: [{r2}/src/arm:1]\n")
    p = luff_cli("index", "append", f"{r3}/spec/app:1", "-f", str(more))
    assert p.returncode == 2 and "target" in p.stderr


# --- failure paths: a clear error and nothing pushed ------------------------------------


FAILURES = {
    "duplicate": (
        ["{r1}/src/amd64:1", "{r1}/src/amd64b:1"],
        [],
        2,
        ["duplicate platform linux/amd64", "src/amd64:1", "src/amd64b:1"],
    ),
    "bad-jq": (
        ["{r1}/src/amd64:1"],
        ["--set", ".manifests[0] |||"],
        2,
        ["invalid jq program", "line 1, column"],
    ),
    "missing-content": (
        ["{r1}/src/amd64:1"],
        ["--set", '.manifests[0].digest = "sha256:' + "0" * 64 + '"'],
        1,
        ["manifests[0]", "no source provides"],
    ),
    "wrong-size": (
        ["{r1}/src/amd64:1"],
        ["--set", ".manifests[0].size = 12"],
        1,
        ["says size 12"],
    ),
    "unknown-source": (
        ["{r1}/src/amd64:1", "{r1}/src/nope:1"],
        [],
        1,
        ["unknown source", "src/nope:1"],
    ),
    "docker-with-oci-image": (
        ["{r1}/src/d-amd64:1", "{r1}/src/s390x:1"],
        ["--format", "docker"],
        2,
        ["only Docker v2 manifests", "src/s390x:1"],
    ),
    "docker-with-annotations": (
        ["{r1}/src/d-amd64:1"],
        ["--format", "docker", "--annotation", "a=b"],
        2,
        ["no annotations"],
    ),
    "bad-override": (
        ["ref={r1}/src/amd64:1,platfrom=linux/arm64"],
        [],
        2,
        ["unknown key 'platfrom'"],
    ),
    "only-no-match": (
        ["{r1}/src/amd64:1", "ref={r1}/src/s390x:1,only=linux/arm64,only=windows/amd64"],
        [],
        2,
        ["src/s390x:1", "linux/s390x", "not linux/arm64 or windows/amd64"],
    ),
    "only-bad-platform": (
        ["ref={r1}/src/amd64:1,only=lunix"],
        [],
        2,
        ["only:", "lunix"],
    ),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failures_push_nothing(
    case: str,
    registry: DistributionRegistry,
    registry3: DistributionRegistry,
    srcs: dict[str, Image],
) -> None:
    r1 = registry.host
    sources, options, code, words = FAILURES[case]
    repo = f"fail/{case}"
    p = luff_cli(
        "index",
        "create",
        f"{registry3.host}/{repo}:1",
        *[s.format(r1=r1) for s in sources],
        *options,
    )
    line = error_line(p, code)
    for w in words:
        assert w in line, line
    blobs = [
        b
        for text in sources
        for ref in [text.format(r1=r1).removeprefix("ref=").split(",")[0]]
        if ref in srcs
        for b in blobs_of(srcs[ref])
    ]
    assert blobs
    nothing_pushed(registry3, repo, blobs)


# --- append ------------------------------------------------------------------------


def test_append_adds_replaces_and_upgrades(
    registry: DistributionRegistry,
    registry2: DistributionRegistry,
    registry3: DistributionRegistry,
    srcs: dict[str, Image],
) -> None:
    r1, r2, r3 = registry.host, registry2.host, registry3.host
    base = f"{r3}/app/appended:1"
    # A missing base: append acts as create.
    p = luff_cli("index", "append", base, f"{r1}/src/amd64:1")
    assert p.returncode == 0, p.stderr
    assert [q["architecture"] for q in platforms(raw(base)[1])] == ["amd64"]
    p = luff_cli("index", "append", base, f"{r2}/src/arm:1")
    assert p.returncode == 0, p.stderr
    assert [q["architecture"] for q in platforms(raw(base)[1])] == ["amd64", "arm"]
    # Same platform: the new image replaces the old one, and says so.
    p = luff_cli("index", "append", base, f"{r1}/src/amd64b:1")
    assert p.returncode == 0, p.stderr
    amd, amdb = srcs[f"{r1}/src/amd64:1"], srcs[f"{r1}/src/amd64b:1"]
    assert f"replacing linux/amd64 {amd.digest}" in p.stderr
    assert f"with {amdb.digest}" in p.stderr
    digest, doc = raw(base)
    ms = doc["manifests"]
    assert isinstance(ms, list)
    assert [m["digest"] for m in ms] == [str(amdb.digest), str(srcs[f"{r2}/src/arm:1"].digest)]
    # -t writes elsewhere and leaves the base alone.
    p = luff_cli("index", "append", base, f"{r1}/src/s390x:1", "-t", "with-s390x")
    assert p.returncode == 0, p.stderr
    assert raw(base)[0] == digest
    assert len(platforms(raw(f"{r3}/app/appended:with-s390x")[1])) == 3


def test_append_upgrades_a_plain_image(
    registry: DistributionRegistry, registry3: DistributionRegistry, srcs: dict[str, Image]
) -> None:
    r1, r3 = registry.host, registry3.host
    ctx = Context(credentials=lambda host: ANONYMOUS)
    basic.copy(f"{r1}/src/win:1", f"{r3}/app/plain:1", ctx=ctx)
    desc = luff.index.append(f"{r3}/app/plain:1", [f"{r1}/src/amd64:1"], ctx=ctx)
    digest, doc = raw(f"{r3}/app/plain:1")
    assert digest == str(desc.digest) and doc["mediaType"] == mt.OCI_INDEX
    plats = platforms(doc)
    assert plats[0] == {"architecture": "amd64", "os": "windows", "os.version": WIN.os_version}
    assert plats[1] == {"architecture": "amd64", "os": "linux"}


# --- filter and list ------------------------------------------------------------------


def test_filter_keeps_and_drops_with_attestations(
    registry: DistributionRegistry,
    registry2: DistributionRegistry,
    registry3: DistributionRegistry,
    srcs: dict[str, Image],
) -> None:
    r1, r2, r3 = registry.host, registry2.host, registry3.host
    ref = f"{r3}/flt/app:1"
    p = luff_cli(
        "index", "create", ref, f"{r1}/src/amd64:1", f"{r2}/src/arm:1", f"{r2}/src/multi:1"
    )
    assert p.returncode == 0, p.stderr
    multi = srcs[f"{r2}/src/multi:1"]
    arm64, att = (str(c.digest) for c in multi.children)
    # linux/arm64 matches linux/arm64/v8; its attestation comes along.
    p = luff_cli("index", "filter", ref, "--platform", "linux/arm64", "-t", "arm64")
    assert p.returncode == 0, p.stderr
    ms = raw(f"{r3}/flt/app:arm64")[1]["manifests"]
    assert isinstance(ms, list)
    assert [m["digest"] for m in ms] == [arm64, att]
    # Excluding arm64 drops its attestation too.
    p = luff_cli("index", "filter", ref, "--exclude", "linux/arm64/v8", "-t", "no-arm64")
    assert p.returncode == 0, p.stderr
    plats = platforms(raw(f"{r3}/flt/app:no-arm64")[1])
    assert [q["architecture"] for q in plats] == ["amd64", "arm"]
    # Without -t the result goes back to REF.
    p = luff_cli("index", "filter", ref, "--platform", "linux/arm")
    assert p.returncode == 0, p.stderr
    assert [q["variant"] for q in platforms(raw(ref)[1])] == ["v7"]
    p = luff_cli("index", "filter", ref, "--platform", "linux/mips64le")
    assert "no entries would remain" in error_line(p, 2)
    p = luff_cli("index", "filter", ref)
    assert "--platform" in error_line(p, 2)


def test_only_picks_platforms_out_of_index_sources(
    registry: DistributionRegistry,
    registry2: DistributionRegistry,
    registry3: DistributionRegistry,
    srcs: dict[str, Image],
    tmp_path: Path,
) -> None:
    """only= takes some images (and their attestations) from an index source; with a
    single one picked, a platform override on an index source is allowed."""
    r1, r2, r3 = registry.host, registry2.host, registry3.host
    base = f"{r2}/only/base:1"
    p = luff_cli(
        "index", "create", base, f"{r1}/src/amd64:1", f"{r2}/src/arm:1", f"{r2}/src/multi:1"
    )
    assert p.returncode == 0, p.stderr
    amd64 = str(srcs[f"{r1}/src/amd64:1"].digest)
    arm64, att = (str(c.digest) for c in srcs[f"{r2}/src/multi:1"].children)
    arm = str(srcs[f"{r2}/src/arm:1"].digest)

    # linux/arm64 matches the index's linux/arm64/v8; the attestation follows its image.
    p = luff_cli(
        "index",
        "create",
        f"{r3}/only/two:1",
        f"ref={base},only=linux/arm64,only=linux/amd64",
        f"{r1}/src/s390x:1",
    )
    assert p.returncode == 0, p.stderr
    ms = raw(f"{r3}/only/two:1")[1]["manifests"]
    assert isinstance(ms, list)
    assert [m["digest"] for m in ms] == [amd64, arm64, att, str(srcs[f"{r1}/src/s390x:1"].digest)]
    assert (
        skopeo(
            "copy",
            "--all",
            "--src-tls-verify=false",
            f"docker://{r3}/only/two:1",
            f"oci:{tmp_path / 'two'}:x",
        ).returncode
        == 0
    )

    # One image picked: its platform may be overridden (an arm/v7 build relabelled v6).
    p = luff_cli("index", "create", f"{r3}/only/one:1", f"{base},only=linux/arm/v7,variant=v6")
    assert p.returncode == 0, p.stderr
    ms = raw(f"{r3}/only/one:1")[1]["manifests"]
    assert isinstance(ms, list)
    assert [(m["digest"], m["platform"]["variant"]) for m in ms] == [(arm, "v6")]

    # Without only=, the override is refused with a hint.
    p = luff_cli("index", "create", f"{r3}/only/bad:1", f"{base},variant=v6")
    assert "only=OS/ARCH" in error_line(p, 2)
    # No match names what the index has; --no-flatten cannot pick.
    p = luff_cli("index", "create", f"{r3}/only/bad:1", f"{base},only=linux/ppc64le")
    line = error_line(p, 2)
    assert "no image is linux/ppc64le" in line and "linux/arm/v7" in line
    p = luff_cli("index", "create", f"{r3}/only/bad:1", f"{base},only=linux/arm", "--no-flatten")
    assert "--no-flatten" in error_line(p, 2)
    assert luff_cli("digest", f"{r3}/only/bad:1").returncode == 1

    # The same from a spec file, as a list or a single platform.
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""
sources:
  - ref: {base}
    only: [linux/amd64, linux/arm64/v8]
  - ref: {r1}/src/s390x:1
    only: linux/s390x
"""
    )
    p = luff_cli("index", "create", f"{r3}/only/spec:1", "-f", str(spec))
    assert p.returncode == 0, p.stderr
    assert raw(f"{r3}/only/spec:1")[0] == raw(f"{r3}/only/two:1")[0]
    spec.write_text(f"sources:\n  - ref: {base}\n    only: []\n")
    p = luff_cli("index", "create", f"{r3}/only/bad:1", "-f", str(spec))
    assert "'only' must name at least one platform" in error_line(p, 2)


def test_list_table_and_json(
    registry: DistributionRegistry,
    registry2: DistributionRegistry,
    registry3: DistributionRegistry,
    srcs: dict[str, Image],
) -> None:
    r1, r2, r3 = registry.host, registry2.host, registry3.host
    ref = f"{r3}/lst/app:1"
    p = luff_cli("index", "create", ref, f"{r1}/src/win:1", f"{r2}/src/multi:1")
    assert p.returncode == 0, p.stderr
    p = luff_cli("index", "list", ref)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0].split() == ["DIGEST", "TYPE", "PLATFORM", "SIZE", "NOTE"]
    assert "windows/amd64:10.0.17763.1234" in lines[1]
    assert "linux/arm64" in lines[2]
    arm64 = srcs[f"{r2}/src/multi:1"].children[0].digest
    assert f"attestation of {arm64.short}" in lines[3]
    j = json.loads(luff_cli("index", "list", ref, "--json").stdout)
    assert [m["attestation"] for m in j["manifests"]] == [False, False, True]
    assert j["manifests"][2]["subject"] == str(arm64)
    assert j["mediaType"] == mt.OCI_INDEX


def test_create_into_a_layout_read_by_skopeo(
    registry: DistributionRegistry, srcs: dict[str, Image], tmp_path: Path
) -> None:
    r1 = registry.host
    target = f"oci:{tmp_path}/lay:multi"
    p = luff_cli("index", "create", target, f"{r1}/src/amd64:1", f"{r1}/src/s390x:1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().startswith(f"oci:{tmp_path}/lay@sha256:")
    q = subprocess.run(["skopeo", "inspect", "--raw", target], capture_output=True, timeout=60)
    assert q.returncode == 0, q.stderr
    assert p.stdout.strip().endswith("sha256:" + hashlib.sha256(q.stdout).hexdigest())
    out = skopeo("copy", "--all", target, f"oci:{tmp_path}/copy:x")
    assert out.returncode == 0, out.stderr
    listed = luff_cli("index", "list", target)
    assert "linux/s390x" in listed.stdout, listed.stderr
