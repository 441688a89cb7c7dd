"""The copy engine: the one path by which luff writes anything.

(The plan it makes, and the policies that shape it, are values in :mod:`luff.plan`.)

A :class:`Copier` walks one or more descriptor graphs (each root from its
own source store) bound for one target store. Each distinct digest is
visited once, whatever the shape of the graph (diamonds, ladders), and the
walk is bounded in depth and refuses cycles. Every blob gets an action:
already there (**exists**), cross-repository **mount**, or **copy**
(streamed, verified). Manifests are then written by *level*, every one
after all it points at, so a target never holds a manifest whose content is
missing. :func:`copy_graph` is the whole job: plan, write, tag the root.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import BinaryIO

from luff import cancel
from luff.context import Context, default_context
from luff.errors import (
    DigestMismatch,
    InvalidManifest,
    LimitExceeded,
    NotFound,
    RegistryError,
    TransportError,
    UsageError,
    located,
)
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, readinto
from luff.model.manifest import Manifest
from luff.model.referrers import ReferrerList, artifact_type, cosign_tags
from luff.plan import (
    COPY,
    EXISTS,
    MOUNT,
    RELIST,
    REMOTE,
    SKIP,
    TAG,
    Expect,
    ManifestItem,
    Plan,
    PlanItem,
    Progress,
    Referrers,
    as_referrers,
)
from luff.pool import run_all
from luff.record import Record, setfields
from luff.registry.retry import RetryPolicy
from luff.stores.base import (
    ConditionalTagger,
    Flushing,
    Mounter,
    ReferrerLister,
    Store,
    TagLister,
    origin_of,
)

#: Longest chain of manifests (index in index in ...) that luff walks.
MAX_DEPTH = 128

_FOREIGN = frozenset(
    {
        mt.DOCKER_FOREIGN_LAYER,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


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

    def readinto(self, b: bytearray | memoryview) -> int:
        cancel.check()
        n = readinto(self._s, b)
        if n is None:
            data = self._s.read(len(b))
            n = len(data)
            b[:n] = data
        if n:
            self._cb(n)
        return int(n)

    def close(self) -> None:
        self._s.close()


class _Visit(Record, frozen=True):
    source: Store
    desc: Descriptor
    manifest: Manifest | None
    root: bool
    known: bool  # the target has it (its parent is there, on a closure target)
    subject: Digest | None  # a referrer of this manifest
    tag: str  # found under this tag (cosign's), written under it too
    after: Digest | None

    def __init__(
        self,
        source: Store,
        desc: Descriptor,
        manifest: Manifest | None = None,
        root: bool = False,
        known: bool = False,
        subject: Digest | None = None,
        tag: str = "",
        after: Digest | None = None,
    ) -> None:
        setfields(
            self,
            source=source,
            desc=desc,
            manifest=manifest,
            root=root,
            known=known,
            subject=subject,
            tag=tag,
            after=after,
        )


def _deps(item: ManifestItem) -> list[Digest]:
    return [*item.children, item.after] if item.after is not None else item.children


class Copier:
    """Collects graphs bound for *target*, plans them, then writes them."""

    def __init__(
        self,
        target: Store,
        ctx: Context | None = None,
        *,
        layers: bool = True,
        referrers: Referrers | None = None,
        known: Iterable[Digest] = (),
    ) -> None:
        self.target = target
        self.ctx = ctx or default_context()
        self.layers = layers
        self.referrers = referrers
        self.known = set(known)
        self._source_tags: dict[int, set[str]] = {}
        self._blobs: dict[Digest, PlanItem] = {}
        self._manifests: dict[Digest, ManifestItem] = {}
        self._claimed: set[Digest] = set()
        self._pending_tags: list[tuple[Digest, str]] = []
        self._roots: list[_Visit] = []
        self._lock = threading.Lock()  # guards the dicts across pool threads

    def add(self, source: Store, desc: Descriptor, manifest: Manifest | None = None) -> None:
        """Add *desc* (a manifest, index or blob in *source*) and all it points at."""
        self._roots.append(_Visit(source, desc, manifest, root=True))

    def plan(self) -> Plan:
        """Walk what was added and decide every item's action (asks the target what it has)."""
        lim = self.ctx.limiter
        level, depth = self._roots, 0
        self._roots = []
        while level:
            depth += 1
            if depth > MAX_DEPTH:
                raise LimitExceeded(
                    f"manifests nested too deeply (more than {MAX_DEPTH} levels)",
                    where=level[0].source.name,
                    digest=level[0].desc.digest,
                )
            results = run_all(self._visit, level, lim)
            level = [x for r in results for x in r]
        for d, t in self._pending_tags:
            if t not in self._manifests[d].tags:
                self._manifests[d].tags.append(t)
        manifests = self._ordered()
        self._find_unlisted(manifests)
        blobs = [b for b in self._blobs.values() if b.action in ("", REMOTE)]
        exist = run_all(lambda b: self.target.exists(b.descriptor), blobs, lim)
        for b, ex in zip(blobs, exist, strict=True):
            if ex:
                b.action = EXISTS
            elif b.action != REMOTE:
                repo = self._mount_from(b.source, b.descriptor)
                b.action, b.mount_from = (MOUNT, repo) if repo else (COPY, "")
        return Plan(self.target, list(self._blobs.values()), manifests)

    def _visit(self, v: _Visit) -> list[_Visit]:
        source, desc = v.source, v.desc
        if not mt.is_manifest(desc.media_type):
            if not v.known:
                self._add_blob(source, desc)
            return []
        with self._lock:
            if desc.digest in self._claimed:
                if v.tag:  # already here under another role: write the tag too
                    self._pending_tags.append((desc.digest, v.tag))
                return []  # each digest is visited once, whatever the shape of the graph
            self._claimed.add(desc.digest)
        there = (
            v.known
            or (not v.root and desc.digest in self.known)
            or (
                self.target.closure
                and not v.root
                and v.manifest is None
                and self.target.exists(desc)
            )
        )
        if there and self.referrers is None:
            # The target only holds a manifest together with all it points at.
            item = ManifestItem(desc, Manifest(b"", desc.media_type), source, action=EXISTS)
            with self._lock:
                self._manifests[desc.digest] = item
            return []
        try:
            m = v.manifest if v.manifest is not None else source.fetch_manifest(desc)
        except (NotFound, InvalidManifest) as e:
            if v.subject is None:
                raise
            self._bad_referrer(source, v.subject, f"lists {desc.digest}, which cannot be read: {e}")
            with self._lock:
                self._claimed.discard(desc.digest)
            return []
        if v.subject is not None and (m.subject is None or m.subject.digest != v.subject):
            self._bad_referrer(source, v.subject, f"lists {desc.digest}, which is not its referrer")
            with self._lock:
                self._claimed.discard(desc.digest)
            return []
        if v.tag and not self._wanted_type(m):
            return []
        children = list(m.children())
        if not self.layers and not m.is_index:
            for layer in m.layers:
                self._add_blob(source, layer, REMOTE)
            children = [m.config]
        item = ManifestItem(
            desc,
            m,
            source,
            action=EXISTS if there else COPY,
            children=[c.digest for c in children if mt.is_manifest(c.media_type)],
            kind="referrer" if v.subject is not None else "manifest",
            after=v.subject or v.after,
            tags=[v.tag] if v.tag else [],
        )
        with self._lock:
            self._manifests[desc.digest] = item
        out = [_Visit(source, c, known=there and self.target.closure) for c in children]
        if self.referrers is not None:
            out += self._attached(source, desc)
        return out

    def _attached(self, source: Store, desc: Descriptor) -> list[_Visit]:
        """Visits of the referrers of *desc* and of cosign's tags for it.

        They are asked of the store that really holds *desc* (a built
        index's entries: the repository each came from).
        """
        policy = self.referrers
        assert policy is not None
        source = origin_of(source, desc)
        out: list[_Visit] = []
        if isinstance(source, ReferrerLister):
            try:
                found = source.referrers(desc, policy.types)
            except (InvalidManifest, NotFound, RegistryError) as e:
                self._bad_referrer(source, desc.digest, f"cannot list its referrers: {e}")
                found = ReferrerList(desc.digest)
            out += [_Visit(source, r, subject=desc.digest) for r in found.descriptors]
        if policy.cosign_tags and isinstance(source, TagLister):
            tags = self._tags_of(source)
            for t in cosign_tags(desc.digest):
                if t in tags:
                    out.append(_Visit(source, source.resolve(t), tag=t, after=desc.digest))
        return out

    def _find_unlisted(self, manifests: list[ManifestItem]) -> None:
        """Referrers the target holds but does not list (an interrupted copy): relist them."""
        if not isinstance(self.target, ReferrerLister):
            return
        there: dict[Digest, list[ManifestItem]] = {}
        for m in manifests:
            if m.kind == "referrer" and m.action == EXISTS and m.after is not None:
                there.setdefault(m.after, []).append(m)
        for subject, items in there.items():
            listed = self.target.referrers(Descriptor(mt.OCI_MANIFEST, subject, 0))
            have = {d.digest for d in listed.descriptors}
            for m in items:
                if m.descriptor.digest not in have:
                    m.action = RELIST

    def _tags_of(self, source: TagLister) -> set[str]:
        key = id(source)
        with self._lock:
            known = self._source_tags.get(key)
        if known is None:
            known = set(source.tags())
            with self._lock:
                self._source_tags[key] = known
        return known

    def _wanted_type(self, m: Manifest) -> bool:
        types = self.referrers.types if self.referrers is not None else ()
        if not types:
            return True
        kinds = {artifact_type(m), *(layer.media_type for layer in m.layers)}
        return bool(kinds & set(types))

    def _bad_referrer(self, source: Store, subject: Digest, why: str) -> None:
        policy = self.referrers
        if policy is not None and not policy.strict:
            self.ctx.warn(f"{source.name}@{subject}: {why}; passed over")
            return
        raise InvalidManifest(
            f"its referrers: {why} (--referrers-best-effort passes over this)",
            where=source.name,
            digest=subject,
            op="copy referrers",
        )

    def _ordered(self) -> list[ManifestItem]:
        """Every manifest with its level (children lower), lowest level first; refuses cycles."""
        items = self._manifests
        levels: dict[Digest, int] = {}
        on_path: set[Digest] = set()
        for start in items:
            if start in levels:
                continue
            stack: list[tuple[Digest, int]] = [(start, 0)]
            while stack:
                d, i = stack.pop()
                kids = _deps(items[d]) if d in items else []
                if i == 0:
                    on_path.add(d)
                if i < len(kids):
                    stack.append((d, i + 1))
                    c = kids[i]
                    if c in on_path:
                        raise InvalidManifest(
                            "the manifests form a cycle", where=items[d].source.name, digest=c
                        )
                    if c not in levels and c in items:
                        stack.append((c, 0))
                    continue
                on_path.discard(d)
                levels[d] = 1 + max((levels.get(c, -1) for c in kids), default=-1)
        for d, item in items.items():
            item.level = levels[d]
        return sorted(items.values(), key=lambda m: m.level)

    def _add_blob(self, source: Store, desc: Descriptor, action: str = "") -> None:
        source = origin_of(source, desc)  # the repository the blob really comes from
        with self._lock:
            if desc.digest in self._blobs:
                prev = self._blobs[desc.digest]
                # Prefer a source the target can mount from.
                if self._mount_from(source, desc) and not self._mount_from(prev.source, desc):
                    prev.source = source
                if prev.action == REMOTE and not action:
                    prev.action = ""  # also a config somewhere: copied after all
                return
            if desc.media_type in _FOREIGN and desc.urls:
                action = SKIP
            self._blobs[desc.digest] = PlanItem(desc, action, source)

    def _mount_from(self, source: Store, desc: Descriptor) -> str | None:
        if not isinstance(self.target, Mounter):
            return None
        return self.target.mount_source(origin_of(source, desc))

    def execute(self, plan: Plan, progress: Progress | None = None) -> None:
        """Transfer blobs (concurrently), then manifests level by level.

        Root manifests are written too, untagged, unless their action is
        :data:`TAG` (:func:`copy_graph` tags them last).
        """
        progress = progress or self.ctx.progress
        if progress is not None:
            progress.planned(plan)
        # Largest first, so the long transfers overlap and small ones fill the gaps.
        todo = sorted((b for b in plan.blobs if b.action in (COPY, MOUNT)), key=lambda b: -b.size)
        run_all(lambda b: self._transfer(b, progress), todo, self.ctx.limiter)
        by_level: dict[int, list[ManifestItem]] = {}
        for m in plan.manifests:
            if m.action == COPY:
                by_level.setdefault(m.level, []).append(m)
        relist = [m for m in plan.manifests if m.action == RELIST]
        if relist and isinstance(self.target, Flushing):
            for m in relist:
                self.target.relist(m.manifest)
        for level in sorted(by_level):
            run_all(self._push_manifest, by_level[level], self.ctx.limiter)
            if isinstance(self.target, Flushing):
                self.target.flush()
        tagged = [(m, t) for m in plan.manifests for t in m.tags if m.manifest.data]
        run_all(lambda mt_: self._tag(*mt_), tagged, self.ctx.limiter)

    def _tag(self, item: ManifestItem, tag: str) -> None:
        with located(side="target", where=self.target.name, digest=item.descriptor.digest):
            if self.target.closure:
                try:
                    if self.target.resolve(tag).digest == item.descriptor.digest:
                        return
                except NotFound:
                    pass
            self.target.push_manifest(item.manifest, tag)

    def _push_manifest(self, item: ManifestItem) -> None:
        with located(side="target", where=self.target.name, digest=item.descriptor.digest):
            self.target.push_manifest(item.manifest)

    def _transfer(self, item: PlanItem, progress: Progress | None) -> None:
        desc = item.descriptor
        if item.action == MOUNT:
            if isinstance(self.target, Mounter) and self.target.mount(desc, item.mount_from):
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
                raise e.located(where=item.source.name, side="source", digest=desc.digest) from None
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


def _up_to_date(target: Store, desc: Descriptor, tags: Sequence[str]) -> bool:
    """True when every tag on a closure target already points at *desc*: nothing to do."""
    if not (mt.is_manifest(desc.media_type) and tags and target.closure):
        return False
    try:
        return all(target.resolve(t).digest == desc.digest for t in tags)
    except NotFound:
        return False


def plan_graph(
    source: Store,
    desc: Descriptor,
    target: Store,
    *,
    manifest: Manifest | None = None,
    tags: Iterable[str] = (),
    ctx: Context | None = None,
    layers: bool = True,
    referrers: Referrers | None = None,
    known: Iterable[Digest] = (),
) -> tuple[Copier, Plan]:
    """Plan the copy of *desc* (and all below it) to *target*; writes nothing.

    Without *layers*, image layers are left where they are (action ``remote``).
    With *referrers*, what is attached to the graph comes along (see :class:`Referrers`).
    """
    tags = list(tags)
    copier = Copier(target, ctx, layers=layers, referrers=referrers, known=known)
    copier.add(source, desc, manifest)
    plan = copier.plan()
    root = next((m for m in plan.manifests if m.descriptor.digest == desc.digest), None)
    # Written once, with its tags, after everything else; but a root with referrers to
    # write is written at its level, so that they come after it, and tagged at the end.
    attached = any(m.after == desc.digest and m.action == COPY for m in plan.manifests)
    if root is not None and tags and not attached:
        root.action = TAG
    return copier, plan


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
    layers: bool = True,
    referrers: Referrers | None = None,
    known: Iterable[Digest] = (),
    expect: Expect | None = None,
) -> Descriptor:
    """Copy *desc* and everything below it from *source* to *target*, then tag it.

    On a target that only holds complete graphs (a registry), a copy whose
    tags all point at *desc* already costs one lookup per tag and writes
    nothing (with *referrers*, their lists are still read: they may have
    grown). *known* digests are taken to be in the target already. With
    *expect*, the first tag moves only if it is still where it was read
    (:class:`~luff.errors.PreconditionFailed` otherwise). Returns the
    descriptor of the written root (same digest).
    """
    ctx = ctx or default_context()
    tags = list(tags)
    if referrers is None and _up_to_date(target, desc, tags):
        ctx.say(f"{target.name}: already up to date")
        return desc
    copier, plan = plan_graph(
        source,
        desc,
        target,
        manifest=manifest,
        tags=tags,
        ctx=ctx,
        layers=layers,
        referrers=referrers,
        known=known,
    )
    if on_plan is not None:
        on_plan(plan)
    copier.execute(plan, progress)
    root = next((m for m in plan.manifests if m.descriptor.digest == desc.digest), None)
    if root is not None:
        for i, t in enumerate(tags):
            with located(side="target", where=target.name, digest=desc.digest):
                if i == 0 and expect is not None:
                    if not isinstance(target, ConditionalTagger):
                        raise UsageError("cannot write a tag conditionally here", where=target.name)
                    target.push_manifest_if(root.manifest, t, expect.token)
                else:
                    target.push_manifest(root.manifest, t)
    return desc


__all__ = [
    "COPY",
    "EXISTS",
    "MAX_DEPTH",
    "MOUNT",
    "REMOTE",
    "SKIP",
    "TAG",
    "Copier",
    "Expect",
    "ManifestItem",
    "Plan",
    "PlanItem",
    "Progress",
    "Referrers",
    "as_referrers",
    "copy_graph",
    "plan_graph",
]
