"""Multi-platform indexes: build in memory, then push with the one copy path.

Building resolves every source (:mod:`.resolve`), assembles and validates
the index without I/O (:mod:`.assemble`, with jq edits from :mod:`.edits`)
and returns a :class:`BuiltIndex`; nothing is written. Pushing copies the
built index's graph to each destination (:mod:`.built`). :func:`create`,
:func:`append` and :func:`filter` do both. Sources and options come from
code, CLI flags or a spec file (:mod:`.options`), in one
:class:`IndexOptions` value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from luff.context import Context, default_context
from luff.copy import Plan, Progress, Referrers
from luff.model.address import Address, parse_address
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.model.reference import valid_tag
from luff.ops.common import config_platform
from luff.ops.index.assemble import FORMATS
from luff.ops.index.build import (
    Onto,
    build,
    build_append,
    build_filter,
    merge_options,
    prepare_append,
    prepare_filter,
)
from luff.ops.index.built import BuiltIndex, Destination, destinations
from luff.ops.index.edits import apply_edits
from luff.ops.index.options import IndexOptions, load_spec, parse_spec
from luff.ops.index.resolve import Entry, Resolver, bare, is_attestation
from luff.ops.index.sources import Source, SourceSyntaxError
from luff.ops.index.update import Written, write_back_all, writes_back
from luff.record import Record
from luff.stores.base import Store

__all__ = [
    "FORMATS",
    "BuiltIndex",
    "Destination",
    "Entry",
    "IndexOptions",
    "Listing",
    "Source",
    "SourceSyntaxError",
    "Written",
    "append",
    "apply_edits",
    "build",
    "build_append",
    "build_filter",
    "config_platform",
    "create",
    "destinations",
    "filter",
    "is_attestation",
    "list_entries",
    "load_spec",
    "parse_spec",
    "targets_of",
]


def _push(
    built: BuiltIndex,
    dests: list[Destination],
    progress: Progress | None,
    on_plan: Callable[[Plan], None] | None,
    referrers: Referrers | bool | None,
) -> Descriptor:
    try:
        return built.push_all(dests, progress=progress, on_plan=on_plan, referrers=referrers)
    finally:
        built.close()


def create(
    target: str | Address,
    sources: Iterable[str | Source] = (),
    *,
    tags: Sequence[str] = (),
    options: IndexOptions | None = None,
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    allow_duplicate_platforms: bool = False,
    flatten: bool = True,
    referrers: Referrers | bool | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Descriptor:
    """Build an index from *sources* and push it to *target* (and *tags*); returns its descriptor.

    *tags* are more tags in the target repository, or full addresses. A
    registry target without a tag means ``:latest``. With *referrers*, the
    signatures, SBOMs and attestations of each source image come along into
    the target repository. Everything is validated before anything is written.
    """
    opts = merge_options(options, tags=tags)
    dests = destinations(target, opts.tags)  # fail on a bad target before any work
    built = build(
        sources,
        options=opts,
        annotations=annotations,
        edits=edits,
        format=format,
        allow_duplicate_platforms=allow_duplicate_platforms,
        flatten=flatten,
        ctx=ctx,
    )
    return _push(built, dests, progress, on_plan, referrers)


def targets_of(base: str, targets: Sequence[str], tags: Sequence[str] = ()) -> list[Destination]:
    """Where append and filter write: each of *targets*, or back to *base* when there is none.

    A bare tag is a tag in *base*'s repository. *tags* are more tags (or
    addresses) for the first destination, as ``tags:`` in a spec file.
    """
    if not targets:
        return destinations(base, tags)
    first = targets[0]
    if valid_tag(first):
        return destinations(parse_address(base).with_tag(first), [*targets[1:], *tags])
    return destinations(first, [*targets[1:], *tags])


def _write(
    base: str,
    r: Resolver,
    opened: tuple[Store, Descriptor, Manifest] | None,
    onto: Onto,
    dests: list[Destination],
    *,
    added: Callable[[BuiltIndex], Sequence[Digest]],
    concurrent: bool,
    window: float | None,
    referrers: Referrers | bool | None,
    progress: Progress | None,
    on_plan: Callable[[Plan], None] | None,
) -> Written[BuiltIndex]:
    """Write the result to *dests*; back to *base*'s own tag with :func:`write_back_all`."""
    from luff.copy import as_referrers

    baddr = parse_address(base)
    try:
        if writes_back(baddr, dests):
            return write_back_all(
                baddr,
                dests,
                lambda store, cur: onto(store, cur[0], cur[1]) if cur else onto(None, None, None),
                added=added,
                concurrent=concurrent,
                window=window,
                ctx=r.ctx,
                progress=progress,
                on_plan=None if on_plan is None else lambda _, plan: on_plan(plan),
                referrers=as_referrers(referrers),
            )
        st, desc, m = opened if opened is not None else (None, None, None)
        built = onto(st, desc, m)
        built.push_all(dests, progress=progress, on_plan=on_plan, referrers=referrers)
        return Written(built, built.descriptor)
    finally:
        r.abort()


def append(
    base: str,
    sources: Iterable[str | Source] = (),
    *,
    targets: Sequence[str] = (),
    options: IndexOptions | None = None,
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    allow_duplicate_platforms: bool = False,
    flatten: bool = True,
    concurrent: bool = False,
    window: float | None = None,
    referrers: Referrers | bool | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_written: Callable[[Written[BuiltIndex]], None] | None = None,
) -> Descriptor:
    """Add *sources* to the index (or image) at *base* and push it back, or to *targets*.

    Writing back to *base*, the write is conditional where the registry
    allows it (a writer that lost a race re-reads and re-applies its
    change); with *concurrent*, also where it does not, at the cost of a
    wait of *window* seconds (see :mod:`luff.ops.index.update`).
    *on_written* receives what was written and how often it was tried again.
    """
    dests = targets_of(base, targets, options.tags if options else ())
    r, opened, onto, new = prepare_append(
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

    def added(built: BuiltIndex) -> list[Digest]:
        return [e.digest for e in built.entries if e.digest in new]

    written = _write(
        base,
        r,
        opened,
        onto,
        dests,
        added=added,
        concurrent=concurrent,
        window=window,
        referrers=referrers,
        progress=progress,
        on_plan=on_plan,
    )
    if on_written is not None:
        on_written(written)
    return written.descriptor


def filter(
    ref: str,
    *,
    platforms: Iterable[Platform | str] = (),
    exclude: Iterable[Platform | str] = (),
    targets: Sequence[str] = (),
    options: IndexOptions | None = None,
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    concurrent: bool = False,
    window: float | None = None,
    referrers: Referrers | bool | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_written: Callable[[Written[BuiltIndex]], None] | None = None,
) -> Descriptor:
    """Keep (or drop) entries of the index at *ref* by platform and push the result.

    Writing back to *ref*'s tag is guarded as in :func:`append`.
    """
    dests = targets_of(ref, targets)
    r, opened, onto = prepare_filter(
        ref, platforms, exclude, options, ctx, annotations=annotations, edits=edits, format=format
    )
    written = _write(
        ref,
        r,
        opened,
        onto,
        dests,
        added=lambda built: [],
        concurrent=concurrent,
        window=window,
        referrers=referrers,
        progress=progress,
        on_plan=on_plan,
    )
    if on_written is not None:
        on_written(written)
    return written.descriptor


class Listing(Record):
    """The entries of an index (or the single image) at a reference."""

    descriptor: Descriptor
    manifest: Manifest
    entries: list[Entry]

    def __init__(
        self,
        descriptor: Descriptor,
        manifest: Manifest,
        entries: list[Entry],
    ) -> None:
        self.descriptor = descriptor
        self.manifest = manifest
        self.entries = entries

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the index descriptor and its entries (attestations marked)."""
        out = []
        for e in self.entries:
            d = e.to_dict()
            d["attestation"] = e.is_attestation
            if e.subject is not None:
                d["subject"] = str(e.subject)
            out.append(d)
        return {**self.descriptor.to_dict(), "manifests": out}


def list_entries(ref: str | Source, *, ctx: Context | None = None) -> Listing:
    """The entries of the index at *ref*; a plain image lists as one entry."""
    r = Resolver(ctx or default_context())
    store, desc, m = r.open(ref)
    try:
        _, entries = r.base_entries(store, desc, m, str(ref))
    finally:
        r.abort()
    return Listing(bare(desc), m, entries)
