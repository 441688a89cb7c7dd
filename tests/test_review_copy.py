"""Review regressions for the copy engine: plan depths, worker errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from luff.context import Context
from luff.copy import COPY, Copier
from luff.errors import DigestMismatch
from luff.model import mediatypes as mt
from luff.model.manifest import Manifest
from luff.stores.layout import LayoutStore
from luff.stores.memory import MemoryStore
from luff.testing import random_image


def _index(store: MemoryStore, *children: Manifest) -> Manifest:
    m = Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [c.descriptor().to_dict() for c in children],
        }
    )
    store.push_manifest(m)
    return m


def test_an_index_reached_at_two_depths_stays_above_its_children(ctx: Context) -> None:
    store = MemoryStore()
    i1 = random_image("linux/amd64", size=100, store=store).manifest
    i2 = random_image("linux/arm64", size=100, store=store).manifest
    b = _index(store, i1, i2)
    a = _index(store, b)
    root = _index(store, a, b)  # b is a child of root and of its sibling a
    c = Copier(MemoryStore(), ctx)
    c.add(store, root.descriptor(), root)
    plan = c.plan()
    level = {m.descriptor.digest: m.level for m in plan.manifests}
    for m in plan.manifests:
        for child in m.manifest.children():
            if child.digest in level:
                assert level[child.digest] < m.level, (m.descriptor.digest, child.digest)
    # Written deepest first: every manifest after its children.
    order = [m.descriptor.digest for m in plan.manifests]
    for m in plan.manifests:
        for child in m.manifest.children():
            if child.digest in level:
                assert order.index(child.digest) < order.index(m.descriptor.digest)


def test_a_failed_transfer_cancels_the_queued_ones(tmp_path: Path) -> None:
    store = MemoryStore()
    img = random_image("linux/amd64", layers=8, size=200, store=store)
    target = LayoutStore.init(tmp_path / "dst")
    ctx = Context(jobs=1)
    c = Copier(target, ctx)
    c.add(store, img.descriptor, img.manifest)
    plan = c.plan()
    todo = [b for b in plan.blobs if b.action == COPY]
    assert len(todo) == 9
    store.blobs[todo[0].descriptor.digest] = b"corrupt"
    with pytest.raises(DigestMismatch):
        c.execute(plan)
    copied = [b for b in todo if target.exists(b.descriptor)]
    # With one job, no transfer starts after the failed one.
    assert copied == []


def test_a_descriptor_whose_content_says_another_media_type_is_refused(ctx: Context) -> None:
    from luff.errors import InvalidManifest

    store = MemoryStore()
    img = random_image("linux/amd64", size=100, store=store)
    inner = _index(store, img.manifest)
    # An index whose entry calls the inner index an image manifest.
    entry = inner.descriptor().to_dict()
    entry["mediaType"] = mt.OCI_MANIFEST
    outer = Manifest.from_dict(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}
    )
    store.push_manifest(outer)
    c = Copier(MemoryStore(), ctx)
    c.add(store, outer.descriptor(), outer)
    with pytest.raises(InvalidManifest, match="descriptor says"):
        c.plan()
