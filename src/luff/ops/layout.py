"""Staging images on disk: OCI layouts (init/append/list/remove/gc/fill), push and pull.

Every function takes paths and addresses as strings and returns typed
results; the ``luff layout``, ``luff push`` and ``luff pull`` commands are
thin wrappers over them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from luff.context import Context, default_context
from luff.copy import REMOTE, Copier, Plan, Progress, Referrers, as_referrers, copy_graph
from luff.errors import InvalidReference, NotFound, UsageError
from luff.model import mediatypes as mt
from luff.model.address import (
    DOCKER_ARCHIVE,
    FILE_TRANSPORTS,
    OCI,
    OCI_ARCHIVE,
    Address,
    parse_address,
    valid_ref_name,
)
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.matching import any_of, only_strict
from luff.model.platform import Platform
from luff.ops.basic import target_tags
from luff.ops.common import get_root, image_platform, open_root, select_platform
from luff.stores import local_address, open_source, open_target
from luff.stores.base import EntryLister, Store, origin_of
from luff.stores.layout import LayoutStore, ref_name

__all__ = [
    "FORMATS",
    "GcResult",
    "LayoutEntry",
    "append",
    "fill",
    "gc",
    "init",
    "list_entries",
    "pull",
    "push",
    "remove",
]

FORMATS = (OCI, OCI_ARCHIVE, DOCKER_ARCHIVE)


def _ctx(ctx: Context | None) -> Context:
    return ctx or default_context()


def _platforms(platforms: Iterable[Platform | str]) -> list[Platform]:
    return [p if isinstance(p, Platform) else Platform.parse(p) for p in platforms]


# --- init / append ----------------------------------------------------------------------


def init(path: str | os.PathLike[str]) -> LayoutStore:
    """Create an empty OCI layout at *path* (``oci-layout``, ``index.json``, ``blobs/``)."""
    return LayoutStore.init(path)


@contextlib.contextmanager
def _opened(path: str | os.PathLike[str], ctx: Context | None = None) -> Iterator[LayoutStore]:
    """The layout at *path*, let go of (its lock released, nothing added) on the way out;
    the operations write their ``index.json`` entries themselves."""
    store = _open_layout(path, ctx)
    try:
        yield store
    finally:
        store.abort()


def _open_layout(path: str | os.PathLike[str], ctx: Context | None = None) -> LayoutStore:
    p = str(path).removeprefix("oci:")
    try:
        return LayoutStore.open(p, ctx=ctx)
    except NotFound as e:
        raise NotFound(f"{e}; create one with `luff layout init {p}`") from None


def append(
    path: str | os.PathLike[str],
    sources: Iterable[str],
    *,
    flatten: bool = False,
    sparse: bool = False,
    platforms: Iterable[Platform | str] = (),
    annotations: Mapping[str, str] | None = None,
    tag: str | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> list[Descriptor]:
    """Copy *sources* into the layout at *path* and add them to its ``index.json``.

    ``flatten`` adds an index's children instead of the index; ``platforms``
    keeps only matching children (an unflattened index is rewritten with
    those children). ``tag`` sets ``org.opencontainers.image.ref.name``; an
    existing entry of that name is replaced. ``sparse`` writes manifests and
    configs only and records where each missing layer can be fetched from.
    Content is written before ``index.json``, so an interruption leaves the
    layout valid. Returns the entries added.
    """
    ctx = _ctx(ctx)
    with _opened(path, ctx) as store:
        plats = _platforms(platforms)
        extra = dict(annotations or {})
        staged: list[tuple[Store, Descriptor, Manifest]] = []
        for source in sources:
            root = open_root(source, ctx)
            src, desc, m = root.store, root.descriptor, root.manifest
            desc = desc.with_(
                annotations={k: v for k, v in desc.annotations.items() if k != mt.REF_NAME}
            )
            if m.is_index:
                children = m.manifests
                if plats:
                    children = [
                        c for c in children if c.platform and any_of(*plats).match(c.platform)
                    ]
                    if not children:
                        have = ", ".join(str(c.platform) for c in m.manifests if c.platform)
                        raise NotFound(
                            f"{source}: no entry matches {', '.join(map(str, plats))} (has: {have})"
                        )
                if flatten:
                    staged += [(src, c, src.fetch_manifest(c)) for c in children]
                elif plats:
                    body = dict(m.json)
                    body["manifests"] = [c.to_dict() for c in children]
                    sub = Manifest.from_dict(body, m.media_type)
                    staged.append((src, sub.descriptor(annotations=desc.annotations), sub))
                else:
                    staged.append((src, desc, m))
            else:
                if plats:
                    have_p = image_platform(src, desc, m)
                    if have_p is None or not any_of(*plats).match(have_p):
                        raise NotFound(f"image platform {have_p} does not match", where=source)
                staged.append((src, desc, m))
        if tag is not None and len(staged) != 1:
            raise UsageError(f"--tag names one entry, but this append adds {len(staged)}")
        if tag is not None and not valid_ref_name(tag):
            raise InvalidReference(f"invalid ref.name {tag!r}")

        copier = Copier(store, ctx, layers=not sparse)
        for src, desc, m in staged:
            copier.add(src, desc, m)
        plan = copier.plan()
        records = _sparse_records(plan)
        if on_plan is not None:
            on_plan(plan)
        copier.execute(plan, progress)

        entries = []
        for _src, desc, m in staged:
            plat = image_platform(store, desc, m)
            ann = {**desc.annotations, **extra}
            if tag is not None:
                ann[mt.REF_NAME] = tag
            entries.append(
                Descriptor(
                    m.media_type,
                    m.digest,
                    m.size,
                    annotations=ann,
                    platform=plat,
                    artifact_type=desc.artifact_type,
                )
            )
        store.record_sparse(records, entries)
        return entries


def _sparse_records(plan: Plan) -> dict[Digest, str]:
    """Where each layer a sparse append leaves out can be fetched from later."""
    records: dict[Digest, str] = {}
    for b in plan.blobs:
        if b.action != REMOTE:
            continue
        addr = origin_of(b.source, b.descriptor).address
        if addr is None:
            raise UsageError(
                f"--sparse needs a registry or layout source; {b.source.name} cannot be "
                "fetched from later"
            )
        records[b.descriptor.digest] = addr
    return records


# --- list / remove / gc / fill --------------------------------------------------------------


@dataclass
class LayoutEntry:
    """One ``index.json`` entry and how complete its content is."""

    descriptor: Descriptor
    missing: list[Descriptor] = field(default_factory=list)
    recorded: int = 0

    @property
    def ref_name(self) -> str:
        """The entry's ``org.opencontainers.image.ref.name`` ("" when it has none)."""
        return ref_name(self.descriptor)

    @property
    def platform(self) -> Platform | None:
        """The platform the entry's descriptor declares, or None."""
        return self.descriptor.platform

    @property
    def sparse(self) -> bool:
        """True when some blobs are missing from the layout."""
        return bool(self.missing)

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON (``luff layout list --json``)."""
        return {
            "refName": self.ref_name,
            "descriptor": self.descriptor.to_dict(),
            "state": "sparse" if self.sparse else "complete",
            "missingBlobs": len(self.missing),
            "missingBytes": sum(d.size for d in self.missing),
            "fetchable": self.recorded,
        }


def list_entries(path: str | os.PathLike[str]) -> list[LayoutEntry]:
    """The entries of ``index.json``, each with the blobs it lacks."""
    with _opened(path) as store:
        records = store.sparse_records()
        out = []
        for e in store.entries():
            ms = list(store.reachable([e], subjects=False)[1].values())
            out.append(LayoutEntry(e, ms, sum(1 for d in ms if d.digest in records)))
        return out


def remove(
    path: str | os.PathLike[str],
    *,
    tag: str | None = None,
    digest: str | None = None,
    platform: Platform | str | None = None,
) -> list[Descriptor]:
    """Remove entries by ref.name, digest or platform (give exactly one); blobs stay until gc."""
    if sum(x is not None for x in (tag, digest, platform)) != 1:
        raise UsageError("name the entries to remove with one of tag, digest or platform")
    with _opened(path) as store:
        match: Callable[[Descriptor], bool]
        if tag is not None:
            match = lambda e: ref_name(e) == tag  # noqa: E731
            what = f"ref.name {tag}"
        elif digest is not None:
            d = Digest.parse(digest)
            match = lambda e: e.digest == d  # noqa: E731
            what = f"digest {digest}"
        else:
            assert platform is not None
            p = platform if isinstance(platform, Platform) else Platform.parse(platform)
            strict = only_strict(p)
            match = lambda e: e.platform is not None and strict.match(e.platform)  # noqa: E731
            what = f"platform {p}"
        removed = store.remove_entries(match)
        if not removed:
            raise NotFound(f"no entry with {what}", where=store.name)
        return removed


@dataclass
class GcResult:
    """What ``gc`` removed (or would remove)."""

    removed: list[Digest]
    bytes: int
    temporaries: int = 0


def gc(path: str | os.PathLike[str], *, dry_run: bool = False) -> GcResult:
    """Delete blobs that no ``index.json`` entry reaches, and stale sparse records.

    Raises :class:`UsageError` when another handle is writing the layout (its
    new blobs are not reachable yet); writers that start meanwhile wait.
    """
    store = _open_layout(path)
    removed: list[Digest] = []
    total = 0
    with store.exclusive(), store.locked():
        present, missing = store.reachable()
        # Regular files only, in blobs/ALG directories that are no symbolic links.
        for d, f, size in list(store.blob_files()):
            if d in present:
                continue
            removed.append(d)
            total += size
            if not dry_run:
                f.unlink()
        temps = store.stale_temporaries(age=0)  # no writer holds the lock: all are stale
        if not dry_run:
            for t in temps:
                t.unlink(missing_ok=True)
            records = store.sparse_records()
            keep = {k: v for k, v in records.items() if k in missing}
            if keep != records:
                store.write_sparse_locked(keep)
    return GcResult(removed, total, len(temps))


def fill(
    path: str | os.PathLike[str],
    *,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> list[Descriptor]:
    """Download the blobs a sparse layout lacks from their recorded sources (verified).

    Returns the blobs fetched; raises :class:`NotFound` for missing blobs with no record.
    """
    ctx = _ctx(ctx)
    with _opened(path, ctx) as store:
        records = store.sparse_records()
        _, missing = store.reachable()
        fetchable = [d for d in missing.values() if d.digest in records]
        unknown = [d for d in missing.values() if d.digest not in records]
        if fetchable:
            copier = Copier(store, ctx)
            for d in fetchable:
                copier.add(store, d)
            plan = copier.plan()
            if on_plan is not None:
                on_plan(plan)
            copier.execute(plan, progress)
        store.prune_sparse(lambda d: d in missing and not store.exists(missing[d]))
        if unknown:
            listed = ", ".join(str(d.digest) for d in unknown[:5])
            raise NotFound(
                f"{store.name}: {len(unknown)} missing blob(s) with no recorded source: {listed}"
            )
        return fetchable


# --- push / pull --------------------------------------------------------------------------


def push(
    path: str,
    target: str,
    *,
    index: bool = False,
    referrers: Referrers | bool | None = True,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Descriptor:
    """Push the layout or archive at *path* (an address, or a plain path) to *target*.

    A single entry (or the one ``PATH:TAG`` names) is pushed as itself.
    With ``index``, all entries are pushed as one OCI index (their ref.name
    annotations dropped), like ``crane push --index``. Missing blobs of a
    sparse layout are mounted when their recorded source is in the target
    registry, and streamed from it otherwise. The referrers the layout holds
    for what is pushed (signatures, SBOMs) are pushed too, unless
    *referrers* is False; entries that are only such attachments are not
    counted as images to push. Returns the pushed root.
    """
    ctx = _ctx(ctx)
    policy = as_referrers(referrers)
    src_addr = local_address(path)
    src, ident = open_source(src_addr, ctx)
    with src:
        entries = _images(src)
        if index:
            if ident:
                raise UsageError("--index pushes every entry; do not name one", where=path)
            if not entries:
                raise NotFound("index.json has no entries", where=src.name)
            body: dict[str, Any] = {
                "schemaVersion": 2,
                "mediaType": mt.OCI_INDEX,
                "manifests": [_strip_ref_name(e).to_dict() for e in entries],
            }
            ann = src.index_annotations() if isinstance(src, EntryLister) else {}
            if ann:
                body["annotations"] = ann
            return _push_built(
                src, Manifest.from_dict(body), target, policy, ctx, progress, on_plan
            )
        if not ident and not entries:
            raise NotFound("index.json has no entries; nothing to push", where=src.name)
        if not ident and len(entries) != 1:
            names = "; ".join(
                f"{ref_name(e) or '(no ref.name)'} {e.digest} {e.platform or ''}".rstrip()
                for e in entries
            )
            raise UsageError(
                f"holds {len(entries)} entries; name one as PATH:TAG, "
                f"or push them all as an index with --index ({names})",
                where=src.name,
            )
        desc, m = get_root(src, ident or str(entries[0].digest))
        dst_addr = parse_address(target)
        tags = target_tags(dst_addr, src_addr)
        with open_target(dst_addr, ctx) as dst:
            return copy_graph(
                src,
                desc,
                dst,
                manifest=m,
                tags=tags,
                ctx=ctx,
                progress=progress,
                on_plan=on_plan,
                referrers=policy,
            )


def _images(store: Store) -> list[Descriptor]:
    """The entries of *store* that are not attachments of others (referrers, cosign tags)."""
    if not isinstance(store, EntryLister):
        return []
    out = []
    for e in store.entries():
        if _COSIGN_OR_SCHEMA.fullmatch(ref_name(e)):
            continue
        if mt.is_manifest(e.media_type) and store.fetch_manifest(e).subject is not None:
            continue
        out.append(e)
    return out


_COSIGN_OR_SCHEMA = re.compile(r"sha(256|512)-[0-9a-f]+(\.sig|\.att|\.sbom)?")


def _push_built(
    src: Store,
    m: Manifest,
    target: str,
    referrers: Referrers | None,
    ctx: Context,
    progress: Progress | None,
    on_plan: Callable[[Plan], None] | None,
) -> Descriptor:
    """Push a new index *m* over the content of *src*: an ordinary copy from an overlay."""
    from luff.stores.memory import OverlayStore

    overlay = OverlayStore(f"{src.name} (as an index)")
    overlay.add(m)
    for e in m.manifests:
        overlay.provide(e.digest, src)
    dst_addr = parse_address(target)
    with open_target(dst_addr, ctx) as dst:
        return copy_graph(
            overlay,
            m.descriptor(),
            dst,
            manifest=m,
            tags=target_tags(dst_addr, dst_addr),
            ctx=ctx,
            progress=progress,
            on_plan=on_plan,
            referrers=referrers,
        )


def _strip_ref_name(d: Descriptor) -> Descriptor:
    return d.with_(annotations={k: v for k, v in d.annotations.items() if k != mt.REF_NAME})


def pull_address(path: str | os.PathLike[str], format: str = OCI) -> Address:
    """Where :func:`pull` writes: *path* as an address (``oci:``, ``oci-archive:``,
    ``docker-archive:``), or a plain path in *format*."""
    text = os.fspath(path)
    if any(text.startswith(t + ":") for t in FILE_TRANSPORTS):
        return parse_address(text)
    if format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    return Address(format, text)


def pull(
    ref: str,
    path: str | os.PathLike[str],
    *,
    format: str = OCI,
    platform: Platform | str | None = None,
    referrers: Referrers | bool | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Descriptor:
    """Pull *ref* (any address) into a layout or an archive at *path*.

    *path* is an address (``oci:DIR[:TAG]``, ``oci-archive:FILE``,
    ``docker-archive:FILE``) or a plain path written in *format*. In a
    layout, the entry's ref.name is the address's tag, else the reference's
    tag; pulling again replaces it. An archive file is replaced. With
    ``platform``, only that platform's image is pulled (required for
    ``docker-archive`` when *ref* is an index). With *referrers*, what is
    attached to the images (signatures, SBOMs) is kept in the layout too.
    Returns what was pulled.
    """
    ctx = _ctx(ctx)
    dst_addr = pull_address(path, format)
    src_addr = parse_address(ref)
    root = open_root(src_addr, ctx)
    with root.store:
        desc, m = root.descriptor, root.manifest
        if platform is not None:
            desc, m = select_platform(root.store, desc, m, platform)
        tags = target_tags(dst_addr, src_addr)
        dst = open_target(dst_addr, ctx)
        if m.is_index and not dst.holds_indexes:
            dst.abort()
            have = ", ".join(str(c.platform) for c in m.manifests if c.platform)
            raise UsageError(
                f"{ref} is an index; {dst_addr.transport} holds single images: choose one with "
                f"--platform (has: {have})"
            )
        try:
            out = copy_graph(
                root.store,
                desc,
                dst,
                manifest=m,
                tags=tags,
                ctx=ctx,
                progress=progress,
                on_plan=on_plan,
                referrers=as_referrers(referrers),
            )
        except BaseException:
            dst.abort()
            raise
        dst.close()
        return out
