"""Referrers: signatures, SBOMs and attestations travel with the images.

Against both registries: the embedded one serves the OCI 1.1 referrers
API, distribution 2.8 has none (luff falls back to the ``sha256-<hex>`` tag
schema). Copies go both ways between them, and afterwards every referrer is
found on the target by the target's own mechanism.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from luff.context import Context
from luff.copy import Referrers
from luff.errors import InvalidManifest, UsageError
from luff.model import mediatypes as mt
from luff.model.referrers import fallback_tag
from luff.ops import basic, referrers
from luff.ops import index as index_ops
from luff.ops import layout as lay
from luff.stores import open_source
from luff.stores.memory import MemoryStore
from luff.testing import Image, Registry, random_image, random_index
from tests.images import (
    SPDX,
    artifact,
    cosign_signature,
    index_with_attestation,
    sbom,
)
from tests.registries import DistributionRegistry


def luff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    reg = DistributionRegistry(tmp_path_factory.mktemp("ref-dist")).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def emb() -> Iterator[Registry]:
    reg = Registry().start()
    yield reg
    reg.stop()


def peer(kind: str, dist: DistributionRegistry, emb: Registry) -> str:
    return dist.host if kind == "distribution" else emb.host


class Signed:
    """A 2-platform index, each image with an SBOM and an OCI 1.1 signature, the index
    with an SBOM (itself signed) and a cosign signature under its .sig tag."""

    def __init__(self, host: str, repo: str) -> None:
        self.ref = f"{host}/{repo}:1"
        self.index = random_index(["linux/amd64", "linux/arm64"], size=300)
        self.index.push(self.ref, Context())
        self.attached: list[Image] = []
        for child in self.index.children:
            self.attached += [
                sbom(child, seed=len(self.attached)),
                cosign_signature(child, oci11=True),
            ]
        top = sbom(self.index, seed=99)
        self.attached += [top, cosign_signature(top, oci11=True)]  # a signature on an SBOM
        for a in self.attached:
            a.push(f"{host}/{repo}@{a.digest}", Context())
        self.cosign = cosign_signature(self.index)
        self.cosign.push(f"{host}/{repo}:{fallback_tag(self.index.digest)}.sig", Context())

    @property
    def digests(self) -> set[str]:
        return {str(a.digest) for a in self.attached}


def tree_digests(ref: str) -> set[str]:
    tree = referrers.list_referrers(ref, recursive=True, ctx=Context())
    return {str(r.descriptor.digest) for r in tree.walk()}


# --- listing ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["embedded", "distribution"])
def test_list_finds_everything_by_the_registry_s_own_mechanism(
    kind: str, dist: DistributionRegistry, emb: Registry
) -> None:
    host = peer(kind, dist, emb)
    s = Signed(host, f"ref/list-{kind}")
    assert tree_digests(s.ref) == s.digests | {str(s.cosign.digest)}
    tree = referrers.list_referrers(s.ref, ctx=Context())
    via = {r.via for r in tree.referrers}
    assert ("referrers API" if kind == "embedded" else "tag schema") in via
    assert any(r.via.startswith("cosign tag") for r in tree.referrers)
    # --type filters; the table and JSON name the columns
    only = referrers.list_referrers(s.ref, types=[SPDX], recursive=True, ctx=Context())
    assert {r.descriptor.artifact_type for r in only.walk()} == {SPDX}
    p = luff("referrers", "-r", s.ref)
    assert p.returncode == 0, p.stderr
    head = p.stdout.splitlines()[0].split()
    assert head[:3] == ["DIGEST", "ARTIFACT", "TYPE"] and "CREATED" in head
    assert "2026-01-01T00:00:00Z" in p.stdout
    obj = json.loads(luff("referrers", "--json", "-r", s.ref).stdout)
    assert {m["digest"] for m in obj["manifests"]} == {str(c.digest) for c in s.index.children}


# --- copying --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src_kind", "dst_kind"), [("embedded", "distribution"), ("distribution", "embedded")]
)
def test_copy_referrers_between_the_two_kinds(
    src_kind: str, dst_kind: str, dist: DistributionRegistry, emb: Registry, tmp_path: Path
) -> None:
    src = peer(src_kind, dist, emb)
    dst = peer(dst_kind, dist, emb)
    s = Signed(src, f"ref/from-{src_kind}")
    target = f"{dst}/ref/to-{dst_kind}:1"
    p = luff("-v", "copy", "--referrers", s.ref, target)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("referrer copy") == len(s.attached)
    # Found on the target by the target's own mechanism, cosign's tag included.
    assert tree_digests(target) == s.digests | {str(s.cosign.digest)}
    # A re-run transfers nothing.
    again = luff("-v", "copy", "--referrers", s.ref, target)
    assert again.returncode == 0, again.stderr
    assert " copy " not in again.stderr.replace("referrer exists", ""), again.stderr
    # skopeo still copies the result whole.
    r = subprocess.run(
        [
            "skopeo",
            "copy",
            "--all",
            "--src-tls-verify=false",
            f"docker://{target}",
            f"oci:{tmp_path / 'sk'}:1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


def test_referrers_the_target_holds_but_does_not_list_are_listed_again(
    dist: DistributionRegistry, emb: Registry
) -> None:
    """An interrupted copy can leave a referrer's manifest on a tag-schema registry without
    its sha256-<hex> index: a re-run with --referrers lists it again (it is not re-sent)."""
    s = Signed(emb.host, "ref/relist")
    target = f"{dist.host}/ref/relist:1"
    assert luff("copy", "--referrers", s.ref, target).returncode == 0
    child = s.index.children[0]
    tag_index = f"{dist.host}/ref/relist:{fallback_tag(child.digest)}"
    p = luff("delete", tag_index)
    assert p.returncode == 0, p.stderr
    lost = {
        str(a.digest)
        for a in s.attached
        if a.manifest.subject is not None and a.manifest.subject.digest == child.digest
    }
    assert lost and not lost & tree_digests(target)
    p = luff("-v", "copy", "--referrers", s.ref, target)
    assert p.returncode == 0, p.stderr
    assert tree_digests(target) == s.digests | {str(s.cosign.digest)}


def test_index_append_and_filter_carry_referrers(emb: Registry) -> None:
    a, b = random_image("linux/amd64", size=200), random_image("linux/arm64", size=200)
    a.push(f"{emb.host}/ref/app-a:1")
    b.push(f"{emb.host}/ref/app-b:1")
    sa, sb = sbom(a), sbom(b, seed=1)
    sa.push(f"{emb.host}/ref/app-a@{sa.digest}")
    sb.push(f"{emb.host}/ref/app-b@{sb.digest}")
    rel = f"{emb.host}/ref/rel:1"
    assert luff("index", "create", rel, f"{emb.host}/ref/app-a:1").returncode == 0
    assert tree_digests(rel) == set()
    p = luff("index", "append", "--referrers", rel, f"{emb.host}/ref/app-b:1")
    assert p.returncode == 0, p.stderr
    assert tree_digests(rel) == {str(sb.digest)}
    p = luff(
        "index", "filter", "--referrers", "--platform", "linux/arm64", rel, "-t",
        f"{emb.host}/ref/arm:1",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert tree_digests(f"{emb.host}/ref/arm:1") == {str(sb.digest)}


def test_referrers_type_keeps_only_those(dist: DistributionRegistry, emb: Registry) -> None:
    s = Signed(emb.host, "ref/typed")
    target = f"{dist.host}/ref/typed:1"
    p = luff("copy", "--referrers-type", SPDX, s.ref, target)
    assert p.returncode == 0, p.stderr
    copied = tree_digests(target)
    spdx = {str(a.digest) for a in s.attached if a.manifest.artifact_type == SPDX}
    assert copied == spdx


def test_index_create_carries_each_source_s_referrers(
    dist: DistributionRegistry, emb: Registry
) -> None:
    a, b = random_image("linux/amd64", size=200), random_image("linux/arm64", size=200)
    a.push(f"{emb.host}/ref/ca:1")
    b.push(f"{dist.host}/ref/cb:1")
    sa, sb = sbom(a), cosign_signature(b, oci11=True)
    sa.push(f"{emb.host}/ref/ca@{sa.digest}")
    sb.push(f"{dist.host}/ref/cb@{sb.digest}")
    # Written by luff to distribution, the signature is listed in the tag schema.
    assert str(sb.digest) in luff("referrers", f"{dist.host}/ref/cb:1").stdout
    attached = referrers.attach(
        f"{dist.host}/ref/cb:1", [__file__], artifact_type="application/x-test", ctx=Context()
    )
    target = f"{emb.host}/ref/combined:1"
    p = luff(
        "index",
        "create",
        "--referrers",
        "--json",
        target,
        f"{emb.host}/ref/ca:1",
        f"{dist.host}/ref/cb:1",
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["mediaType"] == mt.OCI_INDEX  # the new index, to sign
    found = tree_digests(target)
    assert {str(sa.digest), str(attached.digest)} <= found
    # Without --referrers nothing attached comes along.
    assert luff("index", "create", f"{emb.host}/ref/bare:1", f"{emb.host}/ref/ca:1").returncode == 0
    assert tree_digests(f"{emb.host}/ref/bare:1") == set()


def test_pull_keeps_referrers_and_push_sends_them(
    emb: Registry, dist: DistributionRegistry, tmp_path: Path
) -> None:
    s = Signed(emb.host, "ref/staged")
    lay_dir = tmp_path / "stage"
    p = luff("pull", "--referrers", s.ref, f"oci:{lay_dir}")
    assert p.returncode == 0, p.stderr
    assert tree_digests(f"oci:{lay_dir}:1") == s.digests | {str(s.cosign.digest)}
    p = luff("push", f"oci:{lay_dir}:1", f"{dist.host}/ref/pushed:1")
    assert p.returncode == 0, p.stderr
    assert tree_digests(f"{dist.host}/ref/pushed:1") == s.digests | {str(s.cosign.digest)}
    # The layout's attachments are not images to push: without a tag it is unambiguous.
    p = luff("push", str(lay_dir), f"{dist.host}/ref/pushed2:1")
    assert p.returncode == 0, p.stderr
    # --no-referrers leaves them behind.
    p = luff("push", "--no-referrers", f"oci:{lay_dir}:1", f"{emb.host}/ref/pushed3:1")
    assert p.returncode == 0, p.stderr
    assert tree_digests(f"{emb.host}/ref/pushed3:1") == set()


def test_buildkit_attestations_and_oci_referrers_on_one_image(
    dist: DistributionRegistry, emb: Registry
) -> None:
    idx = index_with_attestation("linux/amd64")
    idx.push(f"{emb.host}/ref/bk:1")
    img = idx.children[0]
    sig = cosign_signature(img, oci11=True)
    sig.push(f"{emb.host}/ref/bk@{sig.digest}")
    p = luff("copy", "--referrers", f"{emb.host}/ref/bk:1", f"{dist.host}/ref/bk:1")
    assert p.returncode == 0, p.stderr
    assert tree_digests(f"{dist.host}/ref/bk:1") == {str(sig.digest)}
    # The in-index attestation travelled as part of the index.
    assert basic.digest(f"{dist.host}/ref/bk:1", ctx=Context()).digest == idx.digest


# --- attach ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["embedded", "distribution"])
def test_attach(kind: str, dist: DistributionRegistry, emb: Registry, tmp_path: Path) -> None:
    host = peer(kind, dist, emb)
    idx = random_index(["linux/amd64", "linux/arm64"], size=200)
    idx.push(f"{host}/ref/att:1")
    f = tmp_path / "sbom.spdx.json"
    f.write_text('{"spdxVersion": "SPDX-2.3"}')
    p = luff(
        "attach", f"{host}/ref/att:1", "--artifact-type", SPDX, f"{f}:{SPDX}", "--annotation", "a=b"
    )
    assert p.returncode == 0, p.stderr
    pinned = p.stdout.strip()
    m = json.loads(luff("manifest", pinned).stdout)
    assert m["artifactType"] == SPDX and m["subject"]["digest"] == str(idx.digest)
    assert m["config"]["mediaType"] == mt.OCI_EMPTY and m["config"]["size"] == 2
    assert m["layers"][0]["annotations"]["org.opencontainers.image.title"] == "sbom.spdx.json"
    assert m["annotations"]["a"] == "b" and "org.opencontainers.image.created" in m["annotations"]
    # --platform attaches to one image of the index.
    p = luff(
        "attach",
        "--platform",
        "linux/arm64",
        f"{host}/ref/att:1",
        "--artifact-type",
        "x/sig",
        str(f),
    )
    assert p.returncode == 0, p.stderr
    arm = idx.children[1]
    assert tree_digests(f"{host}/ref/att@{arm.digest}") == {p.stdout.strip().rsplit("@", 1)[1]}
    # A missing file, or a subject that does not exist: one line, nothing pushed.
    before = luff("ls", f"{host}/ref/att").stdout
    p = luff("attach", f"{host}/ref/att:1", "--artifact-type", SPDX, str(tmp_path / "nope"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    p = luff("attach", f"{host}/ref/att:nothere", "--artifact-type", SPDX, str(f))
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert luff("ls", f"{host}/ref/att").stdout == before


def test_attach_to_a_layout_and_reproducible_created(tmp_path: Path) -> None:
    img = random_image(size=100)
    img.push(f"oci:{tmp_path / 'lay'}:1")
    f = tmp_path / "x.txt"
    f.write_text("x")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    outs = [
        subprocess.run(
            [
                sys.executable,
                "-m",
                "luff",
                "attach",
                f"oci:{tmp_path / 'lay'}:1",
                "--artifact-type",
                "x/y",
                str(f),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        ).stdout
        for _ in range(2)
    ]
    assert outs[0] == outs[1] and outs[0].startswith(f"oci:{tmp_path / 'lay'}@sha256:")
    assert tree_digests(f"oci:{tmp_path / 'lay'}:1") == {outs[0].strip().rsplit("@", 1)[1]}
    tree = referrers.list_referrers(f"oci:{tmp_path / 'lay'}:1", ctx=Context())
    created = [r.created for r in tree.walk()]
    assert created == ["2023-11-14T22:13:20Z"]  # SOURCE_DATE_EPOCH, not the clock


# --- bad input and faults -----------------------------------------------------------------


def test_a_malformed_or_dangling_listing_fails_unless_best_effort(emb: Registry) -> None:
    """The referrers API answers a digest that does not exist, then something not an index."""
    from tests.faultproxy import FaultProxy, Rule

    img = random_image(size=100)
    img.push(f"{emb.host}/ref/bad:1")
    ghost = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": "sha256:" + "e" * 64,
        "size": 100,
        "artifactType": SPDX,
    }
    listing = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [ghost]})
    proxy = FaultProxy(emb.host)
    try:
        proxy.add(
            Rule(
                "GET",
                "/referrers/",
                "status",
                status=200,
                times=-1,
                headers={"Content-Type": mt.OCI_INDEX},
                body=listing.encode(),
            )
        )
        with Registry() as dst:
            p = luff("copy", "--referrers", f"{proxy.host}/ref/bad:1", f"{dst.host}/ref/bad:1")
            assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
            assert str(img.digest) in p.stderr  # names the subject
            assert luff("ls", f"{dst.host}/ref/bad").stdout.split() == []  # nothing written
            p = luff(
                "copy",
                "--referrers-best-effort",
                f"{proxy.host}/ref/bad:1",
                f"{dst.host}/ref/bad:1",
            )
            assert p.returncode == 0, p.stderr
            assert "passed over" in p.stderr, p.stderr
            proxy.rules.clear()
            proxy.add(Rule("GET", "/referrers/", "status", status=200, times=-1, body=b"[1, 2]"))
            p = luff("copy", "--referrers", f"{proxy.host}/ref/bad:1", f"{dst.host}/ref/bad2:1")
            assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    finally:
        proxy.stop()


def test_a_referrer_that_lists_a_wrong_subject_is_refused(emb: Registry) -> None:
    """A listing naming a manifest whose subject is something else (a cycle through the
    subject itself included) is an error, not a walk."""
    store = MemoryStore("cyclic")
    img = random_image(size=100, store=store)
    other = random_image("linux/arm64", size=100, store=store)
    unrelated = artifact(other, SPDX, b"{}", SPDX, store=store)

    class Lying(MemoryStore):
        def referrers(self, subject: Any, artifact_types: Any = ()) -> Any:
            from luff.model.referrers import ReferrerList

            # the subject itself, and a referrer of another image
            return ReferrerList(subject.digest, (img.descriptor, unrelated.descriptor), "memory")

    lying = Lying("lying")
    lying.blobs, lying.manifests = store.blobs, store.manifests
    with pytest.raises(InvalidManifest, match="not its referrer"):
        from luff.copy import copy_graph

        copy_graph(
            lying, img.descriptor, MemoryStore(), manifest=img.manifest, referrers=Referrers()
        )


def test_a_thousand_referrers_are_listed_and_copied(
    emb: Registry, dist: DistributionRegistry
) -> None:
    img = random_image(size=100)
    img.push(f"{emb.host}/ref/many:1")
    store = MemoryStore("many")
    arts = [
        artifact(img, "x/many", str(i).encode(), "application/octet-stream", store=store)
        for i in range(1000)
    ]
    dst, _ = open_source(f"{emb.host}/ref/many", Context())
    from luff.copy import copy_graph

    ctx = Context(jobs=8)
    for a in arts:
        copy_graph(store, a.descriptor, dst, manifest=a.manifest, ctx=ctx)
    found = referrers.list_referrers(f"{emb.host}/ref/many:1", ctx=ctx)
    assert len(found.referrers) == 1000
    p = luff("-j", "8", "copy", "--referrers", f"{emb.host}/ref/many:1", f"{dist.host}/ref/many:1")
    assert p.returncode == 0, p.stderr
    assert len(referrers.list_referrers(f"{dist.host}/ref/many:1", ctx=Context()).referrers) == 1000


def test_concurrent_attaches_on_the_tag_schema_lose_nothing(
    dist: DistributionRegistry, tmp_path: Path
) -> None:
    """Six luff processes attach to one image at once on a registry without the referrers
    API: with --concurrent, every attachment ends up listed in the sha256-<hex> index."""
    img = random_image(size=100)
    img.push(f"{dist.host}/ref/race:1")
    files = []
    for i in range(6):
        f = tmp_path / f"f{i}"
        f.write_text(str(i))
        files.append(f)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "luff",
                "attach",
                "--concurrent",
                f"{dist.host}/ref/race:1",
                "--artifact-type",
                "x/race",
                str(f),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in files
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    written = {o.strip().rsplit("@", 1)[1] for o, _ in outs}
    assert tree_digests(f"{dist.host}/ref/race:1") == written


def test_a_slow_registry_is_not_taken_for_a_race_without_concurrent(
    dist: DistributionRegistry, tmp_path: Path
) -> None:
    """Reading the sha256-<hex> tag takes 1.5 s: without --concurrent that is just a slow
    registry, and the attachment is written (no "other writers kept changing it")."""
    from tests.faultproxy import FaultProxy, Rule

    img = random_image(size=100)
    img.push(f"{dist.host}/ref/slow:1")
    proxy = FaultProxy(dist.host)
    try:
        proxy.rules.append(
            Rule("GET", r"/manifests/sha256-[0-9a-f]{64}$", "delay", seconds=1.5, times=-1)
        )
        f = tmp_path / "note"
        f.write_text("slow")
        p = luff("attach", f"{proxy.host}/ref/slow:1", "--artifact-type", "x/slow", str(f))
        assert p.returncode == 0, p.stderr
        written = p.stdout.strip().rsplit("@", 1)[1]
        assert tree_digests(f"{dist.host}/ref/slow:1") == {written}
    finally:
        proxy.stop()


def test_concurrent_window_alone_does_not_turn_on_the_check(
    dist: DistributionRegistry, tmp_path: Path
) -> None:
    """--concurrent-window only sets --concurrent's window: alone, the tag is read, written
    and read back once, with no check a window later."""
    from tests.faultproxy import FaultProxy

    img = random_image(size=100)
    img.push(f"{dist.host}/ref/window:1")
    proxy = FaultProxy(dist.host)
    try:
        f = tmp_path / "note"
        f.write_text("window")
        ref = f"{proxy.host}/ref/window:1"
        p = luff("attach", "--concurrent-window", "1", ref, "--artifact-type", "x/w", str(f))
        assert p.returncode == 0, p.stderr
        tag = re.compile(r"/manifests/sha256-[0-9a-f]{64}$")
        reads = [x for x in proxy.seen if x.method == "GET" and tag.search(x.path)]
        assert len(reads) == 2, [x.path for x in proxy.seen]
    finally:
        proxy.stop()


# --- oras-py ---------------------------------------------------------------------------------


def test_oras_py_interop(emb: Registry, tmp_path: Path) -> None:
    pytest.importorskip("oras.client")
    import oras.client
    import oras.oci

    img = random_image(size=100)
    img.push(f"{emb.host}/ref/oras:1")
    client = oras.client.OrasClient(hostname=emb.host, insecure=True)
    f = tmp_path / "hello.txt"
    f.write_text("from oras-py")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        client.push(
            target=f"{emb.host}/ref/oras:sbom",
            files=["hello.txt:text/plain"],
            subject=oras.oci.Subject(mt.OCI_MANIFEST, str(img.digest), img.descriptor.size),
            quiet=True,
        )
    finally:
        os.chdir(cwd)
    found = tree_digests(f"{emb.host}/ref/oras:1")
    assert len(found) == 1
    with Registry() as other:
        assert (
            luff(
                "copy", "--referrers", f"{emb.host}/ref/oras:1", f"{other.host}/ref/oras:1"
            ).returncode
            == 0
        )
        assert tree_digests(f"{other.host}/ref/oras:1") == found
    # Content attached by luff is read by oras-py.
    g = tmp_path / "luff.txt"
    g.write_text("from luff")
    p = luff("attach", f"{emb.host}/ref/oras:1", "--artifact-type", "text/plain", f"{g}:text/plain")
    assert p.returncode == 0, p.stderr
    out = tmp_path / "pulled"
    pulled = client.pull(
        target=f"{emb.host}/ref/oras@{p.stdout.strip().rsplit('@', 1)[1]}", outdir=str(out)
    )
    assert [Path(x).read_text() for x in pulled] == ["from luff"]


def test_library_api() -> None:
    import luff

    assert luff.referrers.list is referrers.list_referrers
    assert luff.referrers.attach is referrers.attach
    with pytest.raises(UsageError):
        referrers.attach("localhost:1/x:1", [], artifact_type="")
    assert callable(basic.copy) and callable(index_ops.create) and callable(lay.pull)
