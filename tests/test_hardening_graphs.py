"""Graph shapes: diamonds, ladders, cycles and nesting deeper than MAX_DEPTH.

Work is counted, not timed: a :class:`CountingStore` (a real MemoryStore)
counts how often each manifest is fetched. A cycle needs a hash collision
with verified content, so :class:`RiggedStore` serves fixed manifests for
descriptors without verifying them, to test the engine's own checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from luff.context import Context
from luff.copy import MAX_DEPTH, Copier, copy_graph
from luff.errors import InvalidManifest, LimitExceeded
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.ops import index as index_ops
from luff.ops.common import select_platform
from luff.ops.index import Source
from luff.ops.index.resolve import Resolver
from luff.stores.layout import LayoutStore
from luff.stores.memory import MemoryStore
from luff.testing import Image, random_image

AMD64 = {"os": "linux", "architecture": "amd64"}


class CountingStore(MemoryStore):
    """A MemoryStore that counts each manifest fetch and each read, by digest."""

    def __init__(self, name: str = "counting") -> None:
        super().__init__(name)
        self.fetches: Counter[Digest] = Counter()
        self.opens: Counter[Digest] = Counter()
        self._count_lock = threading.Lock()

    def fetch_manifest(self, desc: Descriptor) -> Manifest:
        with self._count_lock:
            self.fetches[desc.digest] += 1
        return super().fetch_manifest(desc)

    def _open(self, desc: Descriptor):  # type: ignore[no-untyped-def]
        with self._count_lock:
            self.opens[desc.digest] += 1
        return super()._open(desc)


def index_of(store: MemoryStore, entries: list[dict[str, object]], **annotations: str) -> Manifest:
    body: dict[str, object] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    if annotations:
        body["annotations"] = annotations
    m = Manifest.from_dict(body)
    store.push_manifest(m)
    return m


def images(store: MemoryStore) -> list[Image]:
    return [
        random_image("linux/amd64", size=64, store=store),
        random_image("linux/arm64", size=64, store=store),
    ]


def diamond(store: MemoryStore, depth: int = 30) -> tuple[Manifest, list[Image]]:
    """*depth* levels, each an index with two entries that both point at the next level's."""
    imgs = images(store)
    cur = index_of(store, [i.descriptor.to_dict() for i in imgs])
    for level in range(depth):
        entry = cur.descriptor().to_dict()
        twin = {**entry, "annotations": {"twin": "yes"}}
        cur = index_of(store, [entry, twin], level=str(level))
    return cur, imgs


def ladder(store: MemoryStore, levels: int = 120) -> tuple[Manifest, list[Image]]:
    """*levels* levels of two nodes, each pointing at both nodes of the level below."""
    imgs = images(store)
    below = [i.descriptor.to_dict() for i in imgs]
    for level in range(levels - 1):
        nodes = [index_of(store, below, level=str(level), side=s) for s in "ab"]
        below = [n.descriptor().to_dict() for n in nodes]
    return index_of(store, below, level="top"), imgs


def manifests_below(store: MemoryStore, root: Manifest) -> set[Digest]:
    seen: set[Digest] = set()
    todo = [root]
    while todo:
        m = todo.pop()
        if m.digest in seen:
            continue
        seen.add(m.digest)
        todo += [store.manifests[c.digest] for c in m.manifests]
    return seen


def luff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args],
        capture_output=True,
        text=True,
        timeout=300,  # a guard against an exponential walk, not a timing assertion
        stdin=subprocess.DEVNULL,
    )


def one_error_line(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode != 0, r.stdout
    assert r.stderr.startswith("luff: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert needle in r.stderr, r.stderr


# --- diamonds ------------------------------------------------------------------------------


def test_copy_of_a_diamond_fetches_each_manifest_once(ctx: Context) -> None:
    store = CountingStore()
    root, _imgs = diamond(store)
    target = MemoryStore("t")
    copy_graph(store, root.descriptor(), target, tags=["d"], ctx=ctx)
    distinct = manifests_below(store, root)
    assert len(distinct) == 31 + 2
    assert set(store.fetches) == distinct
    assert max(store.fetches.values()) == 1
    assert max(store.opens.values()) == 1  # every blob and manifest read once
    assert set(target.manifests) == distinct
    assert set(target.blobs) == set(store.blobs)
    assert target.resolve("d").digest == root.digest


def test_index_create_of_a_diamond_fetches_each_manifest_once(ctx: Context) -> None:
    store = CountingStore()
    root, imgs = diamond(store)
    built = index_ops.build([Source.from_store(store, str(root.digest))], ctx=ctx)
    target = MemoryStore("t")
    built.push(target, ["i"])
    assert [e.digest for e in built.entries] == [i.digest for i in imgs]
    assert set(store.fetches) == manifests_below(store, root)
    assert max(store.fetches.values()) == 1
    assert target.resolve("i").digest == built.digest
    assert {i.digest for i in imgs} <= set(target.manifests)


def test_index_create_without_flattening_a_diamond(ctx: Context) -> None:
    store = CountingStore()
    root, _ = diamond(store)
    built = index_ops.build([Source.from_store(store, str(root.digest))], flatten=False, ctx=ctx)
    target = MemoryStore("t")
    built.push(target, ["i"])
    assert [e.digest for e in built.entries] == [root.digest]
    assert set(target.manifests) == manifests_below(store, root) | {built.digest}
    assert set(store.fetches) == manifests_below(store, root)
    assert max(store.fetches.values()) == 1


def test_cli_copy_and_index_create_of_a_diamond(tmp_path: Path, ctx: Context) -> None:
    store = MemoryStore()
    root, imgs = diamond(store)
    src = tmp_path / "src"
    with LayoutStore.open(src, create=True, ctx=ctx) as lay:
        copy_graph(store, root.descriptor(), lay, tags=["d"], ctx=ctx)
    r = luff("copy", f"oci:{src}:d", f"oci:{tmp_path / 'copy'}:d")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(str(root.digest))
    r = luff("index", "create", f"oci:{tmp_path / 'idx'}:i", f"oci:{src}:d", "--json")
    assert r.returncode == 0, r.stderr
    written = json.loads((tmp_path / "idx" / "index.json").read_text())["manifests"][0]
    body = (tmp_path / "idx" / "blobs" / "sha256" / written["digest"][7:]).read_text()
    assert [e["digest"] for e in json.loads(body)["manifests"]] == [str(i.digest) for i in imgs]


# --- ladders -------------------------------------------------------------------------------


def test_copy_of_a_ladder_is_linear_in_distinct_manifests(ctx: Context) -> None:
    store = CountingStore()
    root, _ = ladder(store)
    distinct = manifests_below(store, root)
    assert len(distinct) == 2 * 119 + 1 + 2
    target = MemoryStore("t")
    copy_graph(store, root.descriptor(), target, tags=["l"], ctx=ctx)
    assert sum(store.fetches.values()) == len(distinct)
    assert set(store.fetches) == distinct
    assert set(target.manifests) == distinct and set(target.blobs) == set(store.blobs)


def test_index_create_of_a_ladder_reads_each_index_once(ctx: Context) -> None:
    store = CountingStore()
    root, imgs = ladder(store)
    built = index_ops.build([Source.from_store(store, str(root.digest))], ctx=ctx)
    assert [e.digest for e in built.entries] == [i.digest for i in imgs]
    built.push(MemoryStore("t"), ["l"])
    assert sum(store.fetches.values()) == len(manifests_below(store, root))


# --- cycles --------------------------------------------------------------------------------


class RiggedStore(MemoryStore):
    """Serves fixed manifests for digests, unverified (a cycle would need a collision)."""

    def __init__(self, table: dict[Digest, Manifest]) -> None:
        super().__init__("rigged")
        self.table = table
        self.fetches: Counter[Digest] = Counter()

    def fetch_manifest(self, desc: Descriptor) -> Manifest:
        self.fetches[desc.digest] += 1
        return self.table[desc.digest]


def _fake(name: str) -> Digest:
    return Digest.of(name.encode())


def _rigged_cycle(length: int) -> tuple[RiggedStore, Descriptor, Manifest]:
    """Indexes n0 -> n1 -> ... -> n(length-1) -> n0, each entry of platform linux/amd64."""
    names = [_fake(f"node{i}") for i in range(length)]
    table = {}
    for i, d in enumerate(names):
        nxt = names[(i + 1) % length]
        entry = {"mediaType": mt.OCI_INDEX, "digest": str(nxt), "size": 100, "platform": AMD64}
        table[d] = Manifest.from_dict(
            {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}
        )
    store = RiggedStore(table)
    root = Descriptor(mt.OCI_INDEX, names[0], 100)
    return store, root, table[names[0]]


@pytest.mark.parametrize("length", [1, 2, 5])
def test_the_copy_engine_refuses_a_cycle(ctx: Context, length: int) -> None:
    store, root, _ = _rigged_cycle(length)
    c = Copier(MemoryStore("t"), ctx)
    c.add(store, root)
    with pytest.raises(InvalidManifest, match="cycle"):
        c.plan()
    assert max(store.fetches.values()) == 1


@pytest.mark.parametrize("length", [1, 2, 5])
def test_the_index_resolver_refuses_a_cycle(ctx: Context, length: int) -> None:
    store, _root, m = _rigged_cycle(length)
    with pytest.raises(InvalidManifest, match="cycle"):
        Resolver(ctx).flattened(store, m, "rigged")
    assert max(store.fetches.values(), default=0) <= 1


def test_platform_selection_in_a_cycle_stops(ctx: Context) -> None:
    store, root, m = _rigged_cycle(2)
    with pytest.raises(LimitExceeded, match="nested too deeply"):
        select_platform(store, root, m, "linux/amd64")
    assert sum(store.fetches.values()) <= MAX_DEPTH + 1


# --- nesting deeper than MAX_DEPTH ----------------------------------------------------------


def nested_layout(path: Path, levels: int, ctx: Context) -> Manifest:
    """A layout holding *levels* indexes, each the only entry of the one above (platform
    linux/amd64 on every entry), around one image; the top one is tagged ``deep``."""
    store = MemoryStore()
    img = random_image("linux/amd64", size=64, store=store)
    cur_entry = img.descriptor.to_dict()
    top: Manifest | None = None
    lay = LayoutStore.open(path, create=True, ctx=ctx)
    for b, data in store.blobs.items():
        lay.push_blob(Descriptor(mt.OCI_LAYER, b, len(data)), _bytes(data))
    lay.write_manifest(img.manifest)
    for _ in range(levels):
        top = Manifest.from_dict(
            {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [cur_entry]}
        )
        lay.write_manifest(top)
        cur_entry = {**top.descriptor().to_dict(), "platform": AMD64}
    assert top is not None
    lay.add_entries([top.descriptor(annotations={mt.REF_NAME: "deep"})])
    lay.abort()
    return top


def _bytes(data: bytes):  # type: ignore[no-untyped-def]
    import io

    return io.BytesIO(data)


def test_nesting_within_max_depth_works_everywhere(tmp_path: Path, ctx: Context) -> None:
    src = tmp_path / "src"
    nested_layout(src, MAX_DEPTH - 28, ctx)  # 100 levels
    r = luff("copy", f"oci:{src}:deep", f"oci:{tmp_path / 'c'}:deep")
    assert r.returncode == 0, r.stderr
    r = luff("index", "create", f"oci:{tmp_path / 'i'}:i", f"oci:{src}:deep")
    assert r.returncode == 0, r.stderr
    r = luff("digest", "--platform", "linux/amd64", f"oci:{src}:deep")
    assert r.returncode == 0, r.stderr
    r = luff("pull", f"oci:{src}:deep", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr
    r = luff("pull", "--platform", "linux/amd64", f"oci:{src}:deep", str(tmp_path / "pp"))
    assert r.returncode == 0, r.stderr


def test_nesting_deeper_than_max_depth_is_one_error_everywhere(
    tmp_path: Path, ctx: Context
) -> None:
    src = tmp_path / "src"
    nested_layout(src, MAX_DEPTH + 10, ctx)
    deep = f"oci:{src}:deep"
    one_error_line(luff("copy", deep, f"oci:{tmp_path / 'c'}:deep"), "nested too deeply")
    one_error_line(luff("index", "create", f"oci:{tmp_path / 'i'}:i", deep), "nested too deeply")
    one_error_line(
        luff("index", "create", "--no-flatten", f"oci:{tmp_path / 'i2'}:i", deep),
        "nested too deeply",
    )
    one_error_line(luff("digest", "--platform", "linux/amd64", deep), "nested too deeply")
    one_error_line(luff("pull", deep, str(tmp_path / "p")), "nested too deeply")
    one_error_line(
        luff("pull", "--platform", "linux/amd64", deep, str(tmp_path / "pp")),
        "nested too deeply",
    )
    one_error_line(
        luff("pull", deep, str(tmp_path / "p.tar"), "--format", "oci-archive"),
        "nested too deeply",
    )
    # Nothing was half-written: no archive, no staging directory, no entry in the layout.
    assert not (tmp_path / "p.tar").exists() and not list(tmp_path.glob(".p.tar*"))
    c = tmp_path / "c" / "index.json"
    assert not c.exists() or json.loads(c.read_text())["manifests"] == []
