"""Building an index in memory: from sources, onto a base (append), or out of one (filter).

Nothing is written here. Each builder opens what it reads through a
:class:`~luff.ops.index.resolve.Resolver`, assembles with
:func:`~luff.ops.index.assemble.assemble`, and returns a
:class:`~luff.ops.index.built.BuiltIndex`. Append and filter are made of a
preparation (open, resolve the sources once) and an *onto* function that
applies the change to any base, so that a write back to a shared tag can
re-apply it to whatever the tag holds when it is read again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from luff.context import Context, default_context
from luff.errors import NotFound, UsageError
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.matching import any_of
from luff.model.platform import Platform
from luff.ops.index.assemble import OCI, Assembly, assemble, check_format, drop_with_attestations
from luff.ops.index.built import BuiltIndex
from luff.ops.index.options import IndexOptions
from luff.ops.index.resolve import Entry, Resolver
from luff.ops.index.sources import Source
from luff.stores.base import Store

_T = TypeVar("_T")
#: Makes the new index from a base (store, descriptor, manifest), or from no base.
Onto = Callable[[Store | None, Descriptor | None, Manifest | None], BuiltIndex]


def merge_options(
    options: IndexOptions | None,
    sources: Iterable[str | Source] = (),
    *,
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    allow_duplicate_platforms: bool = False,
    flatten: bool = True,
    tags: Sequence[str] = (),
) -> IndexOptions:
    given = IndexOptions(
        sources=[Source.coerce(s) for s in sources],
        tags=list(tags),
        annotations=dict(annotations or {}),
        edits=list(edits),
        format=format,
        allow_duplicate_platforms=allow_duplicate_platforms,
        flatten=flatten,
    )
    opts = options.merged(given) if options is not None else given
    check_format(opts.format)
    return opts


def _safely(r: Resolver, fn: Callable[[], _T]) -> _T:
    """Run *fn*; on any error release the stores *r* opened."""
    try:
        return fn()
    except BaseException:
        r.abort()
        raise


def _built(r: Resolver, a: Assembly, groups: Sequence[Sequence[Entry]], ctx: Context) -> BuiltIndex:
    done = _safely(r, lambda: assemble(a, groups))
    return BuiltIndex(done.manifest, done.entries, done.replaced, ctx, r.stores)


def build(
    sources: Iterable[str | Source] = (),
    *,
    options: IndexOptions | None = None,
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    allow_duplicate_platforms: bool = False,
    flatten: bool = True,
    ctx: Context | None = None,
) -> BuiltIndex:
    """Build an index from *sources* in memory; nothing is written.

    Sources are addresses (registry, ``oci:``, ``oci-archive:``,
    ``docker-archive:``) or :class:`Source` objects with overrides; images and
    indexes alike (indexes are flattened unless ``flatten=False``).
    *format* is ``"oci"`` (default) or ``"docker"``. *edits* are jq programs
    run on the index JSON, whose result is validated. *options* gives all of
    these at once (the keyword arguments add to it).
    """
    ctx = ctx or default_context()
    opts = merge_options(
        options,
        sources,
        annotations=annotations,
        edits=edits,
        format=format,
        allow_duplicate_platforms=allow_duplicate_platforms,
        flatten=flatten,
    )
    if not opts.sources:
        raise UsageError("no sources given")
    r = Resolver(ctx, opts.flatten)
    groups = _safely(r, lambda: r.resolve_all(opts.sources))
    a = Assembly(
        r.content,
        format=opts.format or OCI,
        annotations=opts.annotations,
        edits=opts.edits,
        allow_duplicate_platforms=opts.allow_duplicate_platforms,
    )
    return _built(r, a, groups, ctx)


def _append_onto(r: Resolver, opts: IndexOptions, groups: list[list[Entry]], label: str) -> Onto:
    """A rebuild: the resolved new entries merged into whatever base it is given."""

    def onto(store: Store | None, desc: Descriptor | None, m: Manifest | None) -> BuiltIndex:
        base_doc: dict[str, Any] | None = None
        base_entries: list[Entry] = []
        if store is not None and desc is not None and m is not None:
            base_doc, base_entries = r.base_entries(store, desc, m, label)
        a = Assembly(
            r.content,
            base_doc=base_doc,
            base_entries=base_entries,
            format=opts.format or (None if base_doc is not None else OCI),
            annotations=opts.annotations,
            edits=opts.edits,
            allow_duplicate_platforms=opts.allow_duplicate_platforms,
        )
        done = assemble(a, groups)
        return BuiltIndex(done.manifest, done.entries, done.replaced, r.ctx, r.stores)

    return onto


def _filter_onto(
    r: Resolver, opts: IndexOptions, keep: list[Platform], drop: list[Platform], label: str
) -> Onto:
    """A rebuild: the base it is given, keeping *keep* (or dropping *drop*)."""
    selector = any_of(*(keep or drop))  # strict, as containerd's OnlyStrict

    def chosen(e: Entry) -> bool:
        if e.platform is None:
            return bool(drop)
        hit = selector.match(e.platform)
        return hit if keep else not hit

    def onto(store: Store | None, desc: Descriptor | None, m: Manifest | None) -> BuiltIndex:
        if store is None or desc is None or m is None:
            raise NotFound("the index is gone", where=label)
        if not m.is_index:
            raise UsageError(f"{label} is an image, not an index")
        base_doc, entries = r.base_entries(store, desc, m, label)
        removed = {e.digest for e in entries if not e.is_attestation and not chosen(e)}
        kept = drop_with_attestations(entries, removed)
        if keep:
            kept_images = {e.digest for e in kept if not e.is_attestation}
            kept = [e for e in kept if not e.is_attestation or e.subject in kept_images]
        if not [e for e in kept if not e.is_attestation]:
            have = ", ".join(str(e.platform) for e in entries if not e.is_attestation) or "none"
            raise UsageError(f"{label}: no entries would remain (the index has: {have})")
        a = Assembly(
            r.content,
            base_doc=base_doc,
            base_entries=kept,
            format=opts.format,
            annotations=opts.annotations,
            edits=opts.edits,
            allow_duplicate_platforms=True,
        )
        done = assemble(a, [])
        return BuiltIndex(done.manifest, done.entries, done.replaced, r.ctx, r.stores)

    return onto


def prepare_append(
    base: str | Source,
    sources: Iterable[str | Source],
    options: IndexOptions | None,
    ctx: Context | None,
    **kw: Any,
) -> tuple[Resolver, tuple[Store, Descriptor, Manifest] | None, Onto, set[Digest]]:
    """Open the base and resolve the sources once.

    Returns the rebuild for any base, and the digests the sources add.
    """
    ctx = ctx or default_context()
    opts = merge_options(options, sources, **kw)
    r = Resolver(ctx, opts.flatten)
    opened: tuple[Store, Descriptor, Manifest] | None = None
    try:
        opened = r.open(base)
    except NotFound:
        if not opts.sources:
            raise
    if not opts.sources:
        r.abort()
        raise UsageError("no sources given")
    groups = _safely(r, lambda: r.resolve_all(opts.sources))
    new = {e.digest for g in groups for e in g}
    return r, opened, _append_onto(r, opts, groups, str(base)), new


def build_append(
    base: str | Source,
    sources: Iterable[str | Source] = (),
    *,
    options: IndexOptions | None = None,
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    allow_duplicate_platforms: bool = False,
    flatten: bool = True,
    ctx: Context | None = None,
) -> BuiltIndex:
    """The index at *base* with *sources* added; nothing is written.

    A plain image at *base* becomes an index holding it; a missing *base*
    means an empty one. A new entry with the platform of an existing one
    replaces it (see :attr:`BuiltIndex.replaced`).
    """
    r, opened, onto, _ = prepare_append(
        base,
        sources,
        options,
        ctx,
        annotations=annotations,
        edits=edits,
        format=format,
        allow_duplicate_platforms=allow_duplicate_platforms,
        flatten=flatten,
    )
    store, desc, m = opened if opened is not None else (None, None, None)
    built: BuiltIndex = _safely(r, lambda: onto(store, desc, m))
    return built


def prepare_filter(
    ref: str | Source,
    platforms: Iterable[Platform | str],
    exclude: Iterable[Platform | str],
    options: IndexOptions | None,
    ctx: Context | None,
    **kw: Any,
) -> tuple[Resolver, tuple[Store, Descriptor, Manifest], Onto]:
    ctx = ctx or default_context()
    opts = merge_options(options, **kw)
    keep = [Platform.parse(v) if isinstance(v, str) else v for v in platforms]
    drop = [Platform.parse(v) if isinstance(v, str) else v for v in exclude]
    if bool(keep) == bool(drop):
        raise UsageError("give either platforms to keep or platforms to exclude")
    r = Resolver(ctx)
    opened = r.open(ref)
    return r, opened, _filter_onto(r, opts, keep, drop, str(ref))


def build_filter(
    ref: str | Source,
    *,
    platforms: Iterable[Platform | str] = (),
    exclude: Iterable[Platform | str] = (),
    options: IndexOptions | None = None,
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    ctx: Context | None = None,
) -> BuiltIndex:
    """The index at *ref* keeping only *platforms*, or dropping *exclude*; nothing is written.

    Matching is strict, as containerd's ``OnlyStrict``: ``linux/amd64`` keeps
    amd64 but not amd64/v3; ``linux/arm64`` keeps arm64 and arm64/v8 (the
    default variant) but not arm64/v9. Attestations go with their images.
    """
    r, (store, desc, m), onto = prepare_filter(
        ref, platforms, exclude, options, ctx, annotations=annotations, edits=edits, format=format
    )
    built: BuiltIndex = _safely(r, lambda: onto(store, desc, m))
    return built
