"""The copy engine: plans, dedupe, ordering and failure safety, on real registries."""

from __future__ import annotations

import pytest

from luff.context import Context
from luff.copy import COPY, EXISTS, MOUNT, Copier, copy_graph
from luff.errors import LuffError, NotFound
from luff.model import mediatypes as mt
from luff.model.manifest import Manifest
from luff.ops import basic
from luff.stores.memory import MemoryStore
from luff.stores.registry import RegistryStore
from luff.testing import random_image, random_index
from tests.faultproxy import FaultProxy, Rule
from tests.registries import DistributionRegistry


def rstore(ctx: Context, host: str, repo: str) -> RegistryStore:
    return RegistryStore(ctx.client(host), repo)


def test_shared_blobs_are_planned_once(registry: DistributionRegistry, ctx: Context) -> None:
    store = MemoryStore()
    a = random_image("linux/amd64", size=1000, store=store)
    # A second image reusing a's layer: the plan must hold that layer once.
    body = dict(a.manifest.json)
    cfg = store.add_blob(
        b'{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
        mt.OCI_CONFIG,
    )
    body["config"] = cfg.to_dict()
    b = Manifest.from_dict(body)
    store.push_manifest(b)
    idx = Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [a.descriptor.to_dict(), b.descriptor().to_dict()],
        }
    )
    store.push_manifest(idx)
    target = rstore(ctx, registry.host, "engine/dedupe")
    c = Copier(target, ctx)
    c.add(store, idx.descriptor(), idx)
    plan = c.plan()
    digests = [str(x.descriptor.digest) for x in plan.blobs]
    assert len(digests) == len(set(digests)) == 3  # 2 configs + 1 shared layer
    assert {x.action for x in plan.blobs} == {COPY}
    assert plan.bytes_to_copy == sum(x.size for x in plan.blobs)
    c.execute(plan)
    target.push_manifest(idx, "v1")
    assert basic.digest(f"{registry.host}/engine/dedupe:v1", ctx=ctx).digest == idx.digest


def test_plan_exists_and_mount(registry: DistributionRegistry, ctx: Context) -> None:
    idx = random_index(size=1000)
    idx.push(f"{registry.host}/engine/src:1", ctx)
    src = rstore(ctx, registry.host, "engine/src")
    # Same registry, other repository: every blob is mounted.
    c = Copier(rstore(ctx, registry.host, "engine/mounted"), ctx)
    c.add(src, idx.descriptor)
    plan = c.plan()
    assert {b.action for b in plan.blobs} == {MOUNT}
    assert all(b.mount_from == "engine/src" for b in plan.blobs)
    # The same repository: everything exists and no child manifest is fetched again.
    c = Copier(src, ctx)
    c.add(src, idx.descriptor)
    plan = c.plan()
    assert plan.blobs == []
    assert [m.action for m in plan.manifests if m.descriptor.digest != idx.digest] == [
        EXISTS,
        EXISTS,
    ]
    d = plan.to_dict()
    assert d["manifests"] and isinstance(d["totals"], dict)


def test_children_before_parents_on_failure(registry: DistributionRegistry, ctx: Context) -> None:
    """A blob that cannot be uploaded leaves no manifest that points at it."""
    proxy = FaultProxy(registry.host)
    try:
        idx = random_index(["linux/amd64", "linux/arm64"], size=1000)
        arm = idx.children[1]
        bad_layer = arm.manifest.layers[0].digest
        proxy.add(
            Rule(
                "PUT",
                f"digest={bad_layer.algorithm}%3A{bad_layer.hex}",
                "status",
                status=400,
                times=-1,
            )
        )
        with pytest.raises(LuffError):
            idx.push(f"{proxy.host}/engine/partial:1", ctx)
        s = rstore(ctx, registry.host, "engine/partial")
        with pytest.raises(NotFound):
            s.resolve("1")
        assert not s.exists(idx.descriptor)
        assert not s.exists(arm.descriptor)
    finally:
        proxy.stop()


def test_copy_between_memory_and_registry(registry: DistributionRegistry, ctx: Context) -> None:
    idx = random_index(["linux/amd64", "linux/ppc64le"], layers=2, size=2000, media="docker")
    desc = idx.push(f"{registry.host}/engine/mem:1", ctx)
    assert desc.digest == idx.digest
    back = MemoryStore()
    src = rstore(ctx, registry.host, "engine/mem")
    d, m = src.get_manifest("1")
    copy_graph(src, d, back, manifest=m, tags=["x"], ctx=ctx)
    assert back.resolve("x").digest == idx.digest
    assert set(back.blobs) == set(idx.store.blobs)


def test_rerun_is_a_no_op(registry: DistributionRegistry, ctx: Context) -> None:
    proxy = FaultProxy(registry.host)
    try:
        img = random_image(size=1000)
        img.push(f"{proxy.host}/engine/rerun:1", ctx)
        proxy.seen.clear()
        img.push(f"{proxy.host}/engine/rerun:1", ctx)
        # One HEAD of the tag answers it: nothing is uploaded.
        assert [x.method for x in proxy.seen] == ["HEAD"]
    finally:
        proxy.stop()


def test_progress_hook(registry: DistributionRegistry, ctx: Context) -> None:
    events: list[tuple[str, int]] = []

    class P:
        def planned(self, plan: object) -> None:
            events.append(("plan", 0))

        def advance(self, item: object, n: int) -> None:
            events.append(("bytes", n))

        def finished(self, item: object) -> None:
            events.append(("done", 0))

    img = random_image(size=5000)
    store, desc = img.store, img.descriptor
    copy_graph(
        store,
        desc,
        rstore(ctx, registry.host, "engine/progress"),
        tags=["1"],
        ctx=ctx,
        progress=P(),
    )
    assert events[0] == ("plan", 0)
    total = sum(n for k, n in events if k == "bytes")
    assert total == sum(b.size for b in img.manifest.blobs())
    assert sum(1 for k, _ in events if k == "done") == 2
