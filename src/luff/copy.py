"""The copy engine: walk descriptor graphs, plan each blob, transfer children first.

A :class:`Copier` gathers one or more subgraphs (each from its own source
store) bound for one target store, decides for every blob whether it already
exists, can be mounted or must be streamed, and then writes blobs, then image
manifests, then indexes, so the target never holds a manifest whose content
is missing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, TypeVar

from luff import cancel
from luff.context import Context, default_context
from luff.errors import DigestMismatch, NotFound, RegistryError, TransportError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.pool import run_all
from luff.registry.retry import RetryPolicy
from luff.stores.base import Store

EXISTS = "exists"
MOUNT = "mount"
COPY = "copy"
SKIP = "skip"  # non-distributable (foreign) layers
TAG = "tag"  # the root, pushed under its tags last

_T = TypeVar("_T")

_FOREIGN = frozenset(
    {
        mt.DOCKER_FOREIGN_LAYER,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


@dataclass
class PlanItem:
    """What happens to one piece of content."""

    descriptor: Descriptor
    action: str
    source: Store
    mount_from: str = ""

    @property
    def size(self) -> int:
        return self.descriptor.size


@dataclass
class ManifestItem:
    """A manifest to write (children first), with its exact bytes."""

    descriptor: Descriptor
    manifest: Manifest
    source: Store
    depth: int
    action: str = COPY


@dataclass
class Plan:
    """The transfer plan of one copy: blobs and manifests with their actions."""

    target: Store
    blobs: list[PlanItem] = field(default_factory=list)
    manifests: list[ManifestItem] = field(default_factory=list)

    def totals(self) -> dict[str, tuple[int, int]]:
        """``{action: (count, bytes)}`` over blobs."""
        out: dict[str, tuple[int, int]] = {}
        for b in self.blobs:
            n, s = out.get(b.action, (0, 0))
            out[b.action] = (n + 1, s + b.size)
        return out

    @property
    def bytes_to_copy(self) -> int:
        return sum(b.size for b in self.blobs if b.action == COPY)

    def lines(self) -> list[str]:
        """Human-readable plan, one line per item, then totals."""
        out = []
        for b in self.blobs:
            extra = f" from {b.mount_from}" if b.action == MOUNT else ""
            if b.action == COPY:
                extra = f" from {b.source.name}"
            out.append(f"blob     {b.action:<6} {b.descriptor.digest} {b.size:>12}{extra}")
        for m in self.manifests:
            out.append(
                f"manifest {m.action:<6} {m.descriptor.digest} {m.descriptor.size:>12} "
                f"{m.descriptor.media_type}"
            )
        tot = self.totals()
        parts = [f"{a}: {n} ({_human(s)})" for a, (n, s) in sorted(tot.items())]
        out.append("total    " + (", ".join(parts) if parts else "no blobs"))
        return out

    def to_dict(self) -> dict[str, object]:
        """JSON-able form of the plan."""
        return {
            "blobs": [
                {
                    "digest": str(b.descriptor.digest),
                    "size": b.size,
                    "mediaType": b.descriptor.media_type,
                    "action": b.action,
                    **({"from": b.mount_from} if b.mount_from else {}),
                    "source": b.source.name,
                }
                for b in self.blobs
            ],
            "manifests": [
                {
                    "digest": str(m.descriptor.digest),
                    "size": m.descriptor.size,
                    "mediaType": m.descriptor.media_type,
                    "action": m.action,
                }
                for m in self.manifests
            ],
            "totals": {a: {"count": n, "bytes": s} for a, (n, s) in self.totals().items()},
        }


def _human(n: int) -> str:
    f = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if f < 1000 or unit == "GB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1000
    return f"{n} B"


class Progress(Protocol):
    """Receives transfer events; the CLI draws them with rich."""

    def planned(self, plan: Plan) -> None: ...
    def advance(self, item: PlanItem, nbytes: int) -> None: ...
    def finished(self, item: PlanItem) -> None: ...


class _Counting:
    """Counts what is read; stops at the next chunk once the transfers are cancelled."""

    def __init__(self, stream: BinaryIO, cb: Callable[[int], None]) -> None:
        self._s = stream
        self._cb = cb
        self.__wrapped__ = stream  # lets stores see that the stream verifies itself

    def read(self, n: int = -1) -> bytes:
        cancel.check()
        data = self._s.read(n)
        if data:
            self._cb(len(data))
        return data

    def close(self) -> None:
        self._s.close()


class Copier:
    """Collects subgraphs bound for *target*, plans them, then writes them."""

    def __init__(self, target: Store, ctx: Context | None = None) -> None:
        self.target = target
        self.ctx = ctx or default_context()
        self._blobs: dict[Digest, PlanItem] = {}
        self._manifests: dict[Digest, ManifestItem] = {}
        self._pending: list[tuple[Store, Descriptor, Manifest | None, int]] = []
        self._lock = threading.Lock()  # guards _blobs and _manifests across pool threads

    def add(
        self, source: Store, desc: Descriptor, manifest: Manifest | None = None, depth: int = 0
    ) -> None:
        """Add *desc* (a manifest, index or blob in *source*) and all it points at."""
        self._pending.append((source, desc, manifest, depth))

    def plan(self) -> Plan:
        """Walk what was added and decide every item's action (HEADs the target)."""
        trusted = self.target.trusts_manifest_closure()
        lim = self.ctx.limiter
        # Walk manifests level by level; each level's lookups run concurrently.
        level = self._pending
        self._pending = []
        while level:
            results = run_all(lambda t: self._visit(t[0], t[1], t[2], t[3], trusted), level, lim)
            level = [x for r in results for x in r]
        blobs = [b for b in self._blobs.values() if b.action == ""]
        exist = run_all(lambda b: self.target.exists(b.descriptor), blobs, lim)
        for b, ex in zip(blobs, exist, strict=True):
            if ex:
                b.action = EXISTS
            else:
                repo = self.target.mount_source(b.source.origin(b.descriptor) or b.source)
                b.action, b.mount_from = (MOUNT, repo) if repo else (COPY, "")
        manifests = sorted(self._manifests.values(), key=lambda m: -m.depth)
        return Plan(self.target, list(self._blobs.values()), manifests)

    def _visit(
        self, source: Store, desc: Descriptor, manifest: Manifest | None, depth: int, trusted: bool
    ) -> list[tuple[Store, Descriptor, Manifest | None, int]]:
        if not mt.is_manifest(desc.media_type):
            self._add_blob(source, desc)
            return []
        with self._lock:
            item = self._manifests.get(desc.digest)
            if item is not None:
                return self._seen_again(item, depth)
        if trusted and depth > 0 and manifest is None and self.target.exists(desc):
            # The target registry only holds a manifest whose children it holds.
            with self._lock:
                self._manifests.setdefault(
                    desc.digest,
                    ManifestItem(desc, Manifest(b"", desc.media_type), source, depth, EXISTS),
                )
            return []
        m = manifest if manifest is not None else source.fetch_manifest(desc)
        with self._lock:
            if desc.digest in self._manifests:  # another thread got there first
                return self._seen_again(self._manifests[desc.digest], depth)
            self._manifests[desc.digest] = ManifestItem(desc, m, source, depth)
        return [(source, child, None, depth + 1) for child in m.children()]

    @staticmethod
    def _seen_again(
        item: ManifestItem, depth: int
    ) -> list[tuple[Store, Descriptor, Manifest | None, int]]:
        if depth <= item.depth or item.action == EXISTS:
            return []
        # Reached again deeper down: its children must stay below it.
        item.depth = depth
        return [(item.source, c, None, depth + 1) for c in item.manifest.children()]

    def _add_blob(self, source: Store, desc: Descriptor) -> None:
        with self._lock:
            if desc.digest in self._blobs:
                prev = self._blobs[desc.digest]
                # Prefer a source the target can mount from.
                if self._mountable(source, desc) and not self._mountable(prev.source, desc):
                    prev.source = source
                return
            action = SKIP if desc.media_type in _FOREIGN and desc.urls else ""
            self._blobs[desc.digest] = PlanItem(desc, action, source)

    def _mountable(self, source: Store, desc: Descriptor) -> bool:
        return bool(self.target.mount_source(source.origin(desc) or source))

    def execute(self, plan: Plan, progress: Progress | None = None) -> None:
        """Transfer blobs (concurrently), then manifests, children before parents.

        The root manifests added with depth 0 are written too, untagged; tag
        them afterwards with :meth:`Store.push_manifest`.
        """
        progress = progress or self.ctx.progress
        if progress is not None:
            progress.planned(plan)
        # Largest first, so the long transfers overlap and small ones fill the gaps.
        todo = sorted((b for b in plan.blobs if b.action in (COPY, MOUNT)), key=lambda b: -b.size)
        if todo:
            run_all(lambda b: self._transfer(b, progress), todo, self.ctx.limiter)
        # Manifests deepest first; one depth level at a time, concurrently.
        by_depth: dict[int, list[ManifestItem]] = {}
        for m in plan.manifests:
            if m.action == COPY:
                by_depth.setdefault(m.depth, []).append(m)
        for depth in sorted(by_depth, reverse=True):
            items = by_depth[depth]
            if len(items) == 1:
                self._push_manifest(items[0])
                continue
            run_all(self._push_manifest, items, self.ctx.limiter)

    def _push_manifest(self, item: ManifestItem) -> None:
        # The plan already looked for it on a registry target; a PUT of the same bytes is
        # idempotent everywhere else.
        self.target.push_manifest(item.manifest)

    def _transfer(self, item: PlanItem, progress: Progress | None) -> None:
        desc = item.descriptor
        if item.action == MOUNT:
            if self.target.mount(desc, item.mount_from):
                if progress is not None:
                    progress.advance(item, desc.size)
                    progress.finished(item)
                return
            item.action = COPY
        # The source stream cannot be sent twice, so the registry client cannot retry a
        # failed upload: it is retried here, from a fresh source stream and upload session.
        policy = RetryPolicy.from_settings(self.ctx.settings)
        attempts = 0
        while True:
            attempts += 1
            sent = 0

            def count(n: int) -> None:
                nonlocal sent
                sent += n
                if progress is not None:
                    progress.advance(item, n)

            try:
                stream = item.source.fetch(desc)
                try:
                    self.target.push_blob(desc, _Counting(stream, count))  # type: ignore[arg-type]
                finally:
                    stream.close()
                break
            except DigestMismatch as e:
                cancel.check()  # a stream cut short on purpose
                name = item.source.name
                raise DigestMismatch(
                    str(e) if str(e).startswith(name) else f"{name}: {e}"
                ) from None
            except (TransportError, RegistryError) as e:
                cancel.check()  # stopped on purpose: no retry
                if attempts >= policy.max_attempts or not policy.should_retry(e):
                    raise
                self.ctx.say(f"retrying {desc.digest}: {e}")
                if progress is not None and sent:
                    progress.advance(item, -sent)
                policy.sleep(attempts, policy.retry_after_of(e))
        if progress is not None:
            progress.finished(item)


def copy_graph(
    source: Store,
    desc: Descriptor,
    target: Store,
    *,
    manifest: Manifest | None = None,
    tags: Iterable[str] = (),
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Descriptor:
    """Copy *desc* and everything below it from *source* to *target*, then tag it.

    Returns the descriptor of the written root (same digest as the source).
    """
    ctx = ctx or default_context()
    tags = list(tags)
    if mt.is_manifest(desc.media_type) and tags and target.trusts_manifest_closure():
        # Re-running onto a filled target: nothing to do when every tag already points here.
        try:
            if all(target.resolve(t).digest == desc.digest for t in tags):
                return desc
        except NotFound:
            pass
    copier = Copier(target, ctx)
    copier.add(source, desc, manifest)
    plan = copier.plan()
    root = next((m for m in plan.manifests if m.descriptor.digest == desc.digest), None)
    if root is not None and tags:
        root.action = TAG  # written once, with its tags, after everything else
    if on_plan is not None:
        on_plan(plan)
    copier.execute(plan, progress)
    if root is not None:
        for t in tags:
            target.push_manifest(root.manifest, t)
    return desc
