"""One contract, run against every Store: registries (both kinds), layout, archives, memory.

Each kind is written through its target form and read back through its
source form (an archive is written on close and reopened), so the test
checks what every operation above the stores relies on: push, exists,
resolve by tag and digest, verified fetch, tag, and each optional ability
the store declares.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from luff.context import Context
from luff.copy import copy_graph
from luff.errors import DigestMismatch, NotFound, RegistryError
from luff.model import mediatypes as mt
from luff.model.digest import Digest
from luff.stores import open_source, open_target
from luff.stores.base import (
    BlobFetcher,
    Deleter,
    EntryLister,
    Mounter,
    Store,
    TagLister,
)
from luff.stores.memory import MemoryStore, OverlayStore
from luff.testing import Image, random_image, random_index


@dataclass
class Kind:
    """How to write a store of one kind and read it back."""

    name: str
    target: Callable[[], Store]
    source: Callable[[], Store]
    single_image: bool = False  # a docker archive holds images, not indexes
    same_digests: bool = True  # a docker archive gives images new digests
    # Puts bytes under a digest that is not theirs, where the test can reach the storage.
    plant: Callable[[Digest, bytes], None] | None = None


def _kinds(tmp: Path, ctx: Context, registry_host: str, registry_kind: str) -> dict[str, Kind]:
    repo = f"{registry_host}/contract/{uuid.uuid4().hex[:8]}"
    memory = MemoryStore("memory")
    return {
        f"registry-{registry_kind}": Kind(
            "registry", lambda: open_target(repo, ctx), lambda: open_source(repo, ctx)[0]
        ),
        "layout": Kind(
            "layout",
            lambda: open_target(f"oci:{tmp / 'lay'}", ctx),
            lambda: open_source(f"oci:{tmp / 'lay'}", ctx)[0],
            plant=lambda d, data: (tmp / "lay" / "blobs" / "sha256" / d.hex).write_bytes(data),
        ),
        "oci-archive": Kind(
            "oci-archive",
            lambda: open_target(f"oci-archive:{tmp / 'o.tar'}", ctx),
            lambda: open_source(f"oci-archive:{tmp / 'o.tar'}", ctx)[0],
        ),
        "docker-archive": Kind(
            "docker-archive",
            lambda: open_target(f"docker-archive:{tmp / 'd.tar'}", ctx),
            lambda: open_source(f"docker-archive:{tmp / 'd.tar'}", ctx)[0],
            single_image=True,
            same_digests=False,
        ),
        "memory": Kind("memory", lambda: memory, lambda: memory, plant=memory.blobs.__setitem__),
    }


KINDS = ["registry", "layout", "oci-archive", "docker-archive", "memory"]


@pytest.fixture(params=KINDS)
def kind(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    ctx: Context,
    registry: object,
    registry_kind: str,
) -> Iterator[Kind]:
    kinds = _kinds(tmp_path, ctx, registry.host, registry_kind)  # type: ignore[attr-defined]
    name = request.param if request.param != "registry" else f"registry-{registry_kind}"
    yield kinds[name]


def _write(kind: Kind, img: Image, tag: str) -> None:
    with kind.target() as dst:
        copy_graph(img.store, img.descriptor, dst, manifest=img.manifest, tags=[tag])


def test_push_then_read_back(kind: Kind) -> None:
    img = random_image("linux/arm64", layers=2, size=700, media="docker")
    tag = "contract" if kind.name != "docker-archive" else "example.com/contract/app:1"
    _write(kind, img, tag)
    store = kind.source()
    try:
        desc = store.resolve(tag)
        if kind.same_digests:
            assert desc.digest == img.digest
        m = store.fetch_manifest(desc)
        assert store.resolve(str(desc.digest)).digest == desc.digest
        assert store.exists(desc)
        for b in m.blobs():
            assert store.exists(b)
            with store.fetch(b) as f:
                data = f.read()
            assert Digest.of(data) == b.digest and len(data) == b.size
        assert store.get_manifest(tag)[1].data == m.data
        missing = m.config.with_(digest=Digest.of(b"not here"), size=8)
        assert not store.exists(missing)
        with pytest.raises(NotFound):
            store.resolve("no-such-tag" if kind.name != "docker-archive" else "x.example/no:such")
        # An unknown digest is not found; where the test can plant the config's bytes
        # under another digest, reading them verifies and refuses them.
        lie = m.config.with_(digest=Digest.of(b"other"))
        with pytest.raises(NotFound), store.fetch(lie) as f:
            f.read()
        if kind.plant is not None:
            with store.fetch(m.config) as f:
                kind.plant(lie.digest, f.read())
            with pytest.raises(DigestMismatch), store.fetch(lie) as f:
                f.read()
        # Declared abilities work.
        if isinstance(store, TagLister):
            assert tag in store.tags()
        if isinstance(store, EntryLister):
            assert desc.digest in {e.digest for e in store.entries()}
            assert isinstance(store.index_annotations(), dict)
        if isinstance(store, BlobFetcher):
            with store.fetch_blob(m.config.digest) as f:
                assert Digest.of(f.read()) == m.config.digest
    finally:
        store.close()


def test_an_index_and_a_second_tag(kind: Kind) -> None:
    if kind.single_image:
        pytest.skip("a docker archive holds single images")
    idx = random_index(["linux/amd64", "linux/arm/v7"], size=300)
    _write(kind, idx, "one")
    if kind.name in ("oci-archive",):
        return  # every write replaces the archive: tag and delete have nothing to act on
    store = kind.target()
    try:
        desc = store.resolve("one")
        store.tag(desc, "two")
        assert store.resolve("two").digest == idx.digest
        for child in idx.children:
            assert store.exists(child.descriptor)
        if isinstance(store, Deleter):
            try:
                store.untag("two")
            except RegistryError as e:
                # distribution 2.8 deletes manifests only; it must say so and delete nothing.
                assert "does not delete a tag alone" in str(e)
                assert store.resolve("two").digest == idx.digest
            else:
                with pytest.raises(NotFound):
                    store.resolve("two")
            assert store.resolve("one").digest == idx.digest  # the manifest stays
    finally:
        store.close()


def test_mount_between_repositories(kind: Kind, ctx: Context) -> None:
    store = kind.target()
    if not isinstance(store, Mounter):
        store.abort()
        pytest.skip(f"{kind.name} does not mount")
    img = random_image(size=300)
    _write(kind, img, "m")
    assert isinstance(store, Store)
    other_name = store.name.rsplit("/", 1)[0] + "/mounted"
    other = open_target(other_name, ctx)
    assert isinstance(other, Mounter)
    repo = other.mount_source(store)
    assert repo
    blob = img.manifest.layers[0]
    assert other.mount(blob, repo)
    assert other.exists(blob)


def test_an_overlay_serves_a_graph_from_its_providers() -> None:
    img = random_image(size=300)
    idx = random_index(["linux/amd64"], size=300)
    overlay = OverlayStore()
    overlay.add(idx.manifest)
    overlay.provide(idx.children[0].digest, idx.store)
    assert overlay.exists(idx.descriptor)
    child = overlay.fetch_manifest(idx.manifest.manifests[0])
    for b in child.blobs():
        assert overlay.origin(b) is idx.store
        with overlay.fetch(b) as f:
            assert Digest.of(f.read()) == b.digest
    assert not overlay.exists(img.descriptor)
    with pytest.raises(NotFound):
        overlay.fetch(img.manifest.config)
    with pytest.raises(Exception, match="read-only"):
        overlay.push_manifest(img.manifest)
    assert overlay.fetch_manifest(idx.descriptor).media_type == mt.OCI_INDEX
