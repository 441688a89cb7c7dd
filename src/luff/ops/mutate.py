"""``luff mutate``: change every platform of an image or index at once, then push it.

Building (:func:`build`) reads the source, packs the layers to append
(:mod:`luff.ops.layers`) and makes the new configs, image manifests and
index with the pure functions of :mod:`luff.ops.changes`; everything is
validated and nothing is written. The result is a :class:`Mutation`: an
:class:`~luff.stores.memory.OverlayStore` holding what luff made, over the
source store (and a :class:`~luff.ops.layers.LayerStore` for the new layers)
for everything else. Pushing it is an ordinary copy of that graph
(:func:`luff.copy.copy_graph`), so only what the target lacks is sent:
layers the target has show as ``exists``, those of another repository of the
same registry as ``mount``. :func:`mutate` does both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from luff.context import Context, default_context
from luff.copy import MAX_DEPTH, Plan, Progress
from luff.errors import InvalidManifest, LimitExceeded, LuffError, NotFound, UsageError
from luff.model import mediatypes as mt
from luff.model.address import Address, check_tag
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.matching import Matcher, any_of, only_strict
from luff.model.platform import Platform
from luff.ops.changes import (
    WINDOWS_APPEND,
    Append,
    AttestationChange,
    Changes,
    changes_of,
    edit_config,
    edit_index,
    edit_manifest,
)
from luff.ops.common import CONFIG_LIMIT, as_address, config_platform, get_root, open_root
from luff.ops.graph import Pushable
from luff.ops.index import targets_of
from luff.ops.index.built import BuiltIndex, Destination, destinations
from luff.ops.index.resolve import bare, is_attestation
from luff.ops.index.sources import Source
from luff.ops.index.update import write_back_all, writes_back
from luff.ops.layers import Layer, LayerStore, layer_media_type
from luff.pool import run_all
from luff.stores.base import Store, origin_of
from luff.stores.memory import OverlayStore

_IMAGE_CONFIGS = (mt.OCI_CONFIG, mt.DOCKER_CONFIG)
_T = TypeVar("_T")

Ref = str | Address | Source | BuiltIndex

__all__ = ["ImageChange", "Mutation", "Result", "build", "changes_of", "mutate", "targets"]


@dataclass(frozen=True)
class ImageChange:
    """One image of the source and what it became (the same descriptor when unchanged)."""

    platform: Platform | None
    old: Descriptor
    new: Descriptor

    @property
    def changed(self) -> bool:
        """True when the image got a new digest."""
        return self.old.digest != self.new.digest

    def to_dict(self) -> dict[str, Any]:
        """The change as JSON: platform, old and new digest (``luff mutate --json``)."""
        return {
            "platform": str(self.platform) if self.platform is not None else None,
            "old": str(self.old.digest),
            "new": str(self.new.digest),
            "changed": self.changed,
        }


class _Changed:
    """The old -> new digests of a mutation, shared by :class:`Mutation` and :class:`Result`."""

    old: Descriptor
    images: list[ImageChange]
    attestations: list[AttestationChange]

    @property
    def mapping(self) -> dict[Digest, Digest]:
        """Old → new digest of every image (unchanged ones map to themselves)."""
        return {c.old.digest: c.new.digest for c in self.images}

    def _changes(self, new: Descriptor) -> dict[str, Any]:
        """JSON form: the new descriptor, the old digest, every image and attestation change."""
        return {
            "descriptor": new.to_dict(),
            "old": str(self.old.digest),
            "images": [c.to_dict() for c in self.images],
            "attestations": [a.to_dict() for a in self.attestations],
        }


@dataclass
class Mutation(_Changed, Pushable):
    """A mutated image or index held in memory; :meth:`push` writes it, :meth:`plan` previews.

    :attr:`store` serves the whole new graph: what luff made, and the
    source's content for everything else.
    """

    old: Descriptor
    manifest: Manifest
    store: OverlayStore
    images: list[ImageChange]
    attestations: list[AttestationChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ctx: Context = field(default_factory=default_context)
    tag: str = ""  # the source's tag or ref.name: the default tag of a file target
    stores: list[Store] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the new descriptor, the old digest, every image and attestation change."""
        return self._changes(self.descriptor)

    def default_tags(self, address: Address) -> list[str]:
        """A layout or archive target named without a tag gets the source's tag."""
        if address.is_registry:
            return []
        if not self.tag:
            raise UsageError(f"{address}: name the tag to write (ADDRESS:TAG)")
        return [check_tag(self.tag, address.transport)]

    def __enter__(self) -> Mutation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def targets(ref: str | Address, given: Sequence[str] = ()) -> list[Destination]:
    """Where the result of mutating *ref* goes: each of *given* (``-t``), else back to *ref*.

    A bare tag is a tag in *ref*'s repository.
    """
    addr = as_address(ref)
    if not given and addr.has_digest:
        raise UsageError(f"{ref} names a digest; say where the result goes with -t TAG")
    return targets_of(str(addr), list(given))


class _Builder:
    """Walks the source graph, making the new manifests into an overlay."""

    def __init__(
        self,
        store: Store,
        label: str,
        repo: str,
        changes: Changes,
        layers: Sequence[tuple[Append, Layer]],
        layer_store: LayerStore,
        selector: Matcher | None,
        keep_attestations: bool,
        ctx: Context,
    ) -> None:
        self.store = store
        self.label = label
        #: Where an image is, in messages: the repository (or store) without the tag.
        self.repo = repo
        self.changes = changes
        self.layers = layers
        self.layer_store = layer_store
        self.selector = selector
        self.keep = keep_attestations
        self.ctx = ctx
        self.overlay = OverlayStore(f"mutated {label}")
        self.images: list[ImageChange] = []
        self.attestations: list[AttestationChange] = []
        self.notes: list[str] = []
        self.used: set[int] = set()
        self._lock = threading.Lock()
        #: Configs read (for a platform an entry does not list), kept for the edit.
        self._configs: dict[Digest, bytes] = {}

    def config_of(self, m: Manifest) -> bytes:
        """The config of image *m*, read once."""
        with self._lock:
            data = self._configs.get(m.config.digest)
        if data is None:
            data = self.store.fetch_bytes(m.config, limit=CONFIG_LIMIT)
            with self._lock:
                self._configs[m.config.digest] = data
        return data

    def platform_of(self, m: Manifest, label: str) -> Platform | None:
        """The platform image *m*'s config declares (the config read once: :meth:`config_of`)."""
        data = self.config_of(m) if m.config.media_type in _IMAGE_CONFIGS else None
        return config_platform(self.store, m, label, data=data)

    def provide(self, desc: Descriptor) -> None:
        """Serve *desc* from where the source really holds it (so a target can mount it)."""
        self.overlay.provide(desc.digest, origin_of(self.store, desc))

    def root(self, desc: Descriptor, m: Manifest) -> Manifest:
        if m.is_index:
            return self.index(desc, m, 1)
        plat = self.platform_of(m, self.label) if desc.platform is None else desc.platform
        if self.selector is not None and (plat is None or not self.selector.match(plat)):
            raise UsageError(f"{self.label} is {plat or 'of no platform'}, not a selected platform")
        change, note, new = self.image(desc, m, plat)
        self.images.append(change)
        self.notes += note
        return new

    def index(self, desc: Descriptor, m: Manifest, depth: int) -> Manifest:
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"indexes nested more than {MAX_DEPTH} deep", where=self.label)
        replaced: dict[Digest, Descriptor] = {}
        images: list[Descriptor] = []
        # per entry, to list the images in index order: a nested index's, or None for an image
        slots: list[list[ImageChange] | None] = []
        for d in m.manifests:
            self.provide(d)
            if is_attestation(d):
                continue
            if mt.is_index(d.media_type):
                child = self.store.fetch_manifest(d)
                start = len(self.images)
                new = self.index(d, child, depth + 1)
                slots.append(self.images[start:])
                del self.images[start:]
                if new is not child:
                    replaced[d.digest] = new.descriptor()
            elif mt.is_image_manifest(d.media_type):
                images.append(d)
                slots.append(None)
        done = iter([_raised(r) for r in run_all(self._entry_or_refusal, images, self.ctx.limiter)])
        for slot in slots:
            if slot is not None:
                self.images += slot
                continue
            change, note, _ = next(done)
            self.images.append(change)
            self.notes += note
            if change.changed:
                replaced[change.old.digest] = change.new
        annotations = self.changes.index_annotations if depth == 1 else None
        new_index, atts = edit_index(
            m, replaced, annotations=annotations, keep_attestations=self.keep, where=self.label
        )
        for a in atts:
            self.attestations.append(a)
            if a.kept:
                self.notes.append(
                    f"re-pointed attestation {a.digest} from {a.subject} to {a.new_subject} "
                    "(its statements still name the old image)"
                )
            else:
                self.notes.append(
                    f"dropped attestation {a.digest} of {a.subject}: it describes the old "
                    "image (--keep-attestations re-points it)"
                )
        if new_index is not m:
            self.overlay.add(new_index)
        return new_index

    def _entry_or_refusal(
        self, d: Descriptor
    ) -> tuple[ImageChange, list[str], Manifest | None] | LuffError:
        # A refused change is returned, not raised, so that the other images go on and
        # the error named is the first image's in index order, not the quickest one's.
        try:
            return self.entry(d)
        except (UsageError, InvalidManifest) as e:
            return e

    def entry(self, d: Descriptor) -> tuple[ImageChange, list[str], Manifest | None]:
        m: Manifest | None = None
        plat = d.platform
        if plat is None:
            m = self.store.fetch_manifest(d)
            plat = self.platform_of(m, f"{self.repo}@{d.digest}")
        if self.selector is not None and (plat is None or not self.selector.match(plat)):
            return ImageChange(plat, d, d), [], None
        return self.image(d, m or self.store.fetch_manifest(d), plat)

    def image(
        self, d: Descriptor, m: Manifest, plat: Platform | None
    ) -> tuple[ImageChange, list[str], Manifest]:
        where = f"{self.repo}@{d.digest}" + (f" ({plat})" if plat is not None else "")
        mine = [
            (i, layer)
            for i, (a, layer) in enumerate(self.layers)
            if a.platform is None or (plat is not None and only_strict(a.platform).match(plat))
        ]
        with self._lock:
            self.used.update(i for i, _ in mine)
        layers = [layer for _, layer in mine]
        unchanged = ImageChange(plat, d, d)
        if not (self.changes.touches_images or layers):
            return unchanged, [], m
        if m.config.media_type not in _IMAGE_CONFIGS:
            return unchanged, [f"left {d.digest} as it is: not an image ({m.config.media_type})"], m
        if layers and plat is not None and plat.os.lower() == "windows":
            raise UsageError(WINDOWS_APPEND, where=where)
        config: Descriptor | None = None
        if self.changes.touches_config or layers:
            data = self.config_of(m)
            new_config = edit_config(data, self.changes, layers, where=where)
            if new_config is not None:
                config = self.overlay.add_blob(new_config, m.config.media_type)
        kind = layer_media_type(m.media_type)
        new = edit_manifest(
            m,
            config=config,
            layers=[layer.descriptor(kind) for layer in layers],
            annotations=self.changes.annotations,
            where=where,
        )
        if new is m:
            return unchanged, [], m
        for blob in m.blobs():
            self.provide(blob)
        for layer in layers:
            self.overlay.provide(layer.digest, self.layer_store)
        self.overlay.add(new)
        return ImageChange(plat, d, new.descriptor(platform=d.platform)), [], new


def _raised(r: _T | LuffError) -> _T:
    if isinstance(r, LuffError):
        raise r
    return r


@dataclass
class _Opened:
    store: Store
    descriptor: Descriptor
    manifest: Manifest
    label: str  # the reference, for messages
    repo: str  # the same without tag, to name images inside it
    owned: bool  # opened here, so closed here


def _open(ref: Ref, ctx: Context) -> _Opened:
    """The image or index at *ref*."""
    if isinstance(ref, BuiltIndex):
        name = ref.store.name
        return _Opened(ref.store, ref.descriptor, ref.manifest, name, name, False)
    if isinstance(ref, Source) and ref.store is not None:
        desc, m = get_root(ref.store, ref.identifier)
        return _Opened(ref.store, desc, m, ref.address, ref.store.name, False)
    root = open_root(ref.address if isinstance(ref, Source) else ref, ctx)
    label = str(root.address)
    return _Opened(root.store, root.descriptor, root.manifest, label, root.address.repository, True)


@dataclass
class _Prepared:
    """What a mutation needs before it meets a base: packed layers, the opened source."""

    src: _Opened
    changes: Changes
    layers: list[tuple[Append, Layer]]
    layer_store: LayerStore
    wanted: list[Platform]
    appends: list[Append]
    keep_attestations: bool
    ctx: Context
    stores: list[Store]

    def onto(self, store: Store, desc: Descriptor, m: Manifest) -> Mutation:
        """The mutation of the image or index *m* (in *store*); checks every input."""
        label = self.src.label
        if self.changes.index_annotations and not m.is_index:
            raise UsageError(f"{label} is an image, not an index: --index-annotation has no place")
        selector = any_of(*self.wanted) if self.wanted else None
        b = _Builder(
            store,
            label,
            self.src.repo,
            self.changes,
            self.layers,
            self.layer_store,
            selector,
            self.keep_attestations,
            self.ctx,
        )
        new = b.root(desc, m)
        _check_selection(b, self.wanted, self.appends, label)
        b.provide(desc)
        return Mutation(
            bare(desc),
            new,
            b.overlay,
            b.images,
            b.attestations,
            b.notes,
            self.ctx,
            desc.annotations.get(mt.REF_NAME, "") or self.tag,
            self.stores,
        )

    tag: str = ""


def _prepare(
    ref: Ref,
    changes: Changes | None,
    append: Iterable[str | Append],
    platforms: Iterable[Platform | str],
    keep_attestations: bool,
    ctx: Context | None,
) -> _Prepared:
    ctx = ctx or default_context()
    changes = changes or Changes()
    appends = [Append.coerce(a) for a in append]
    if not (changes.touches_images or appends or changes.index_annotations):
        raise UsageError("nothing to change: give a config, annotation or layer change")
    wanted = [Platform.parse(p) if isinstance(p, str) else p for p in platforms]
    layer_store = LayerStore()
    stores: list[Store] = [layer_store]
    try:
        layers = [(a, layer_store.pack(a.path)) for a in appends]
        src = _open(ref, ctx)
    except BaseException:
        layer_store.abort()
        raise
    if src.owned:
        stores.append(src.store)
    return _Prepared(
        src, changes, layers, layer_store, wanted, appends, keep_attestations, ctx, stores,
        _tag_of(ref),
    )  # fmt: skip


def build(
    ref: Ref,
    *,
    changes: Changes | None = None,
    append: Iterable[str | Append] = (),
    platforms: Iterable[Platform | str] = (),
    keep_attestations: bool = False,
    ctx: Context | None = None,
) -> Mutation:
    """The image or index at *ref* with *changes* and the layers of *append*; nothing is written.

    *ref* is an address, a :class:`~luff.ops.index.Source` (also one in an open
    store), or a :class:`~luff.ops.index.BuiltIndex`. Only images of
    *platforms* (strict matching) change, when given; the others keep
    their digests. Every input is checked (layers packed, configs edited and
    validated) before this returns.
    """
    p = _prepare(ref, changes, append, platforms, keep_attestations, ctx)
    try:
        return p.onto(p.src.store, p.src.descriptor, p.src.manifest)
    except BaseException:
        for s in p.stores:
            s.abort()
        raise


def _tag_of(ref: Ref) -> str:
    if isinstance(ref, (str, Address)):
        return as_address(ref).tag
    return ""


def _check_selection(
    b: _Builder, wanted: list[Platform], appends: list[Append], label: str
) -> None:
    have = ", ".join(str(c.platform) for c in b.images if c.platform is not None) or "none"
    if wanted and not any(
        c.platform is not None and b.selector is not None and b.selector.match(c.platform)
        for c in b.images
    ):
        want = " or ".join(str(p) for p in wanted)
        raise UsageError(f"{label}: no image is {want} (it has: {have})")
    for i, a in enumerate(appends):
        if i not in b.used:
            raise UsageError(f"--append {a}: no selected image is {a.platform} (it has: {have})")


@dataclass
class Result(_Changed):
    """What :func:`mutate` did: the new descriptor, every image's old → new digest, the
    plan of each destination, and notes (attestations dropped or re-pointed, ...)."""

    descriptor: Descriptor
    old: Descriptor
    images: list[ImageChange]
    attestations: list[AttestationChange]
    plans: list[tuple[Destination, Plan]]
    notes: list[str]
    pushed: bool

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON: descriptor, old digest, images, attestations, notes."""
        return {**self._changes(self.descriptor), "notes": list(self.notes)}


def mutate(
    ref: Ref,
    *,
    target: str | Sequence[str] | None = None,
    changes: Changes | None = None,
    append: Iterable[str | Append] = (),
    platforms: Iterable[Platform | str] = (),
    keep_attestations: bool = False,
    dry_run: bool = False,
    concurrent: bool = False,
    window: float | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Result:
    """Mutate the image or index at *ref* and push it back, or to *target*.

    *target* is one address or tag, or several (``-t`` values: a bare tag is a
    tag in *ref*'s repository). With *dry_run* nothing is pushed and
    :attr:`Result.plans` says what would be. Writing back to *ref*'s own tag
    is guarded as ``index append`` is (see :mod:`luff.ops.index.update`):
    the mutation is re-applied to whatever the tag holds when it is read.
    """
    if target is None or isinstance(target, str):
        given = [target] if target else []
    else:
        given = list(target)
    if isinstance(ref, (str, Address)):
        dests = targets(ref, given)
    elif given:
        dests = destinations(given[0], given[1:])
    else:
        raise UsageError("give a target: the source has no address to write back to")
    if not dry_run and isinstance(ref, (str, Address)) and writes_back(as_address(ref), dests):
        m, plans = _write_back(
            ref, dests, changes, append, platforms, keep_attestations, concurrent, window,
            ctx, progress, on_plan,
        )  # fmt: skip
        return Result(m.descriptor, m.old, m.images, m.attestations, plans, m.notes, pushed=True)
    m = build(
        ref, changes=changes, append=append, platforms=platforms,
        keep_attestations=keep_attestations, ctx=ctx,
    )  # fmt: skip
    plans = []
    try:
        for d in dests:
            if dry_run:
                plans.append((d, m.plan(d.address, d.tags)))
                continue

            def record(plan: Plan, d: Destination = d) -> None:
                plans.append((d, plan))
                if on_plan is not None:
                    on_plan(plan)

            m.push(d.address, d.tags, progress=progress, on_plan=record)
    finally:
        m.close()
    return Result(m.descriptor, m.old, m.images, m.attestations, plans, m.notes, pushed=not dry_run)


def _write_back(
    ref: str | Address,
    dests: list[Destination],
    changes: Changes | None,
    append: Iterable[str | Append],
    platforms: Iterable[Platform | str],
    keep_attestations: bool,
    concurrent: bool,
    window: float | None,
    ctx: Context | None,
    progress: Progress | None,
    on_plan: Callable[[Plan], None] | None,
) -> tuple[Mutation, list[tuple[Destination, Plan]]]:
    """Mutate *ref* in place: whatever its tag holds when read, written back conditionally."""
    addr = as_address(ref)
    p = _prepare(ref, changes, append, platforms, keep_attestations, ctx)
    plans: list[tuple[Destination, Plan]] = []

    def record(d: Destination, plan: Plan) -> None:
        plans.append((d, plan))
        if on_plan is not None:
            on_plan(plan)

    def rebuild(store: Store, cur: tuple[Descriptor, Manifest, str] | None) -> Mutation:
        if cur is None:
            raise NotFound("the tag is gone", where=str(addr))
        return p.onto(store, cur[0], cur[1])

    try:
        written = write_back_all(
            addr,
            dests,
            rebuild,
            added=lambda m: [c.new.digest for c in m.images if c.changed],
            concurrent=concurrent,
            window=window,
            ctx=p.ctx,
            progress=progress,
            on_plan=record,
        )
        return written.built, plans
    finally:
        for s in p.stores:
            s.close()
