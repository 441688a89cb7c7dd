"""``luff index``: create, append, filter and list multi-platform indexes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from luff.cli.common import (
    PLATFORM_METAVAR,
    annotation_options,
    concurrent_options,
    log,
    out,
    out_json,
    plan_hook,
    referrer_options,
    referrer_policy,
    state,
    transfer_progress,
)
from luff.copy import Referrers
from luff.errors import UsageError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.platform import Platform
from luff.ops import index as ops

F = TypeVar("F", bound=Callable[..., Any])

_SOURCE_HELP = (
    "SOURCE is an address (registry/repo:tag, oci:DIR[:TAG], oci-archive:FILE, "
    "docker-archive:FILE), optionally with overrides in docker's key=value form: "
    "'ref=ADDRESS,platform=linux/arm/v7,os.version=…,annotation.KEY=VALUE'; "
    "only=OS/ARCH (repeatable) keeps just those images of an index source."
)


@click.group("index")
def index() -> None:
    """Create, append to, filter and list multi-platform indexes."""


def _edit_options(f: F) -> F:
    for opt in reversed(
        [
            click.option(
                "--set",
                "edits",
                multiple=True,
                metavar="JQ",
                help="jq program run on the index JSON before it is pushed (repeatable).",
            ),
            click.option(
                "--annotation",
                "annotations",
                multiple=True,
                metavar="KEY=VALUE",
                help="Index annotation (repeatable).",
            ),
            click.option(
                "--format",
                "fmt",
                type=click.Choice(["oci", "docker"]),
                default=None,
                help="Index or Docker list (default oci; append and filter keep the base's).",
            ),
            click.option(
                "--dry-run", is_flag=True, help="Print the index and the plan; push nothing."
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON (the descriptor)."),
        ]
    ):
        f = opt(f)
    return referrer_options(f)


def _source_options(f: F) -> F:
    for opt in reversed(
        [
            click.option(
                "--allow-duplicate-platforms",
                is_flag=True,
                help="Allow two different images with the same platform.",
            ),
            click.option(
                "--no-flatten",
                is_flag=True,
                help="Keep index sources as nested indexes instead of taking their images.",
            ),
        ]
    ):
        f = opt(f)
    return f


def _options(
    spec_file: str | None,
    sources: tuple[str, ...],
    tags: tuple[str, ...],
    annotations: tuple[str, ...],
    edits: tuple[str, ...],
    fmt: str | None,
    allow_duplicate_platforms: bool = False,
    no_flatten: bool = False,
) -> ops.IndexOptions:
    """The options the flags give, after those of the spec file (if any)."""
    flags = ops.IndexOptions(
        sources=[ops.Source.parse(s) for s in sources],
        tags=list(tags),
        annotations=annotation_options(annotations),
        edits=list(edits),
        format=fmt,
        allow_duplicate_platforms=allow_duplicate_platforms,
        flatten=not no_flatten,
    )
    return ops.load_spec(spec_file).merged(flags) if spec_file else flags


def _replaced(built: ops.BuiltIndex) -> None:
    for old, new in built.replaced:
        log(
            f"luff: replacing {old.platform} {old.digest} (from {old.source}) "
            f"with {new.digest} (from {new.source})"
        )


def _dry_run(
    built: ops.BuiltIndex,
    dests: list[ops.Destination],
    as_json: bool,
    referrers: Referrers | None,
) -> None:
    """The index on stdout (pipeable), the plan of each destination on stderr."""
    _replaced(built)
    try:
        plans = [(d, built.plan(d.address, d.tags, referrers=referrers)) for d in dests]
    finally:
        built.close()
    if as_json:
        out_json(
            {
                "index": built.document,
                "descriptor": built.descriptor.to_dict(),
                "plans": [{"target": str(d), "tags": d.tags, **p.to_dict()} for d, p in plans],
            }
        )
        return
    out(built.to_json())
    for d, plan in plans:
        log(f"plan for {d}:")
        for line in plan.lines():
            log(line)


def _result(desc: Descriptor, dests: list[ops.Destination], as_json: bool) -> None:
    if as_json:
        out_json(desc.to_dict())
        return
    for d in dests:
        out(d.address.pinned(desc.digest))


def _finish(
    built: ops.BuiltIndex,
    dests: list[ops.Destination],
    as_json: bool,
    dry_run: bool,
    referrers: Referrers | None = None,
) -> None:
    """Plan (with --dry-run) or push *built* to *dests*, and print the result."""
    if dry_run:
        _dry_run(built, dests, as_json, referrers)
        return
    _replaced(built)
    try:
        with transfer_progress() as progress:
            built.push_all(dests, progress=progress, on_plan=plan_hook(), referrers=referrers)
    finally:
        built.close()
    _result(built.descriptor, dests, as_json)


def _written(
    written: ops.Written[ops.BuiltIndex], dests: list[ops.Destination], as_json: bool
) -> None:
    _replaced(written.built)
    if written.retries or written.rounds > 1:
        log(
            f"luff: written after {written.retries} retries and {written.rounds} rounds "
            "(other writers were at work)"
        )
    _result(written.descriptor, dests, as_json)


_TARGET_HELP = (
    "Write the result here too: a tag in {where}'s repository, or a full address (repeatable)."
)


@index.command(epilog=_SOURCE_HELP)
@click.argument("target", required=False)
@click.argument("sources", nargs=-1, metavar="SOURCE...")
@click.option(
    "-f",
    "--file",
    "spec_file",
    type=click.Path(dir_okay=False),
    help="YAML spec: sources with overrides, annotations, edits, tags.",
)
@click.option(
    "-t",
    "--target",
    "--tag",
    "tags",
    multiple=True,
    metavar="TAG|ADDRESS",
    help=_TARGET_HELP.format(where="TARGET"),
)
@_source_options
@concurrent_options
@_edit_options
def create(
    target: str | None,
    sources: tuple[str, ...],
    spec_file: str | None,
    tags: tuple[str, ...],
    allow_duplicate_platforms: bool,
    no_flatten: bool,
    concurrent: bool,
    concurrent_window: float | None,
    edits: tuple[str, ...],
    annotations: tuple[str, ...],
    fmt: str | None,
    dry_run: bool,
    referrers: bool,
    referrers_types: tuple[str, ...],
    referrers_best_effort: bool,
    as_json: bool,
) -> None:
    """Create the index TARGET from the images and indexes SOURCE... .

    Prints the pinned reference TARGET_REPO@sha256:… . With --referrers, the
    signatures and SBOMs of each source image come along; the new index has
    none of its own: sign the descriptor --json prints.
    """
    opts = _options(
        spec_file, sources, tags, annotations, edits, fmt, allow_duplicate_platforms, no_flatten
    )
    target = target or opts.target
    if not target:
        raise UsageError("no TARGET given (as an argument or 'target:' in the spec)")
    if not opts.sources:
        raise UsageError("no SOURCE given")
    dests = ops.destinations(target, opts.tags)
    policy = referrer_policy(referrers, referrers_types, referrers_best_effort)
    _finish(ops.build(options=opts, ctx=state().ctx), dests, as_json, dry_run, policy)


@index.command(epilog=_SOURCE_HELP)
@click.argument("base")
@click.argument("sources", nargs=-1, metavar="SOURCE...")
@click.option(
    "-f",
    "--file",
    "spec_file",
    type=click.Path(dir_okay=False),
    help="YAML spec: sources with overrides, annotations, edits and extra tags.",
)
@click.option(
    "-t",
    "--target",
    "--tag",
    "targets",
    multiple=True,
    metavar="TAG|ADDRESS",
    help="Write the result here (a tag in BASE's repository, or a full address; repeatable) "
    "instead of back to BASE.",
)
@_source_options
@concurrent_options
@_edit_options
def append(
    base: str,
    sources: tuple[str, ...],
    spec_file: str | None,
    targets: tuple[str, ...],
    allow_duplicate_platforms: bool,
    no_flatten: bool,
    concurrent: bool,
    concurrent_window: float | None,
    edits: tuple[str, ...],
    annotations: tuple[str, ...],
    fmt: str | None,
    dry_run: bool,
    referrers: bool,
    referrers_types: tuple[str, ...],
    referrers_best_effort: bool,
    as_json: bool,
) -> None:
    """Add SOURCE... to the index (or image) at BASE.

    A plain image is upgraded to an index; a missing BASE is created. A new
    image with the platform of an existing entry replaces it. Writing back to
    BASE, the write is conditional where the registry allows it; several
    writers of one tag on another registry need --concurrent (or per-arch
    tags and one `index create`).
    """
    opts = _options(
        spec_file, sources, (), annotations, edits, fmt, allow_duplicate_platforms, no_flatten
    )
    if opts.target:
        raise UsageError(f"{spec_file}: 'target:' has no meaning for append (use -t)")
    if not opts.sources:
        raise UsageError("no SOURCE given")
    dests = ops.targets_of(base, targets, opts.tags)
    policy = referrer_policy(referrers, referrers_types, referrers_best_effort)
    if dry_run:
        _dry_run(ops.build_append(base, options=opts, ctx=state().ctx), dests, as_json, policy)
        return
    got: list[ops.Written[ops.BuiltIndex]] = []
    with transfer_progress() as progress:
        ops.append(
            base,
            targets=targets,
            options=opts,
            concurrent=concurrent,
            window=concurrent_window,
            referrers=policy,
            ctx=state().ctx,
            progress=progress,
            on_plan=plan_hook(),
            on_written=got.append,
        )
    _written(got[0], dests, as_json)


@index.command("filter")
@click.argument("ref")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar=PLATFORM_METAVAR,
    help="Keep entries of this platform (repeatable).",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar=PLATFORM_METAVAR,
    help="Drop entries of this platform (repeatable).",
)
@click.option(
    "-t",
    "--target",
    "--tag",
    "targets",
    multiple=True,
    metavar="TAG|ADDRESS",
    help="Write the result here (a tag in REF's repository, or a full address; repeatable) "
    "instead of back to REF.",
)
@concurrent_options
@_edit_options
def filter_(
    ref: str,
    platforms: tuple[str, ...],
    exclude: tuple[str, ...],
    targets: tuple[str, ...],
    concurrent: bool,
    concurrent_window: float | None,
    edits: tuple[str, ...],
    annotations: tuple[str, ...],
    fmt: str | None,
    dry_run: bool,
    referrers: bool,
    referrers_types: tuple[str, ...],
    referrers_best_effort: bool,
    as_json: bool,
) -> None:
    """Keep (--platform) or drop (--exclude) entries of the index at REF.

    Attestations go with their images. The result goes back to REF, or to -t.
    """
    if bool(platforms) == bool(exclude):
        raise UsageError("give --platform (to keep) or --exclude (to drop), not both or neither")
    dests = ops.targets_of(ref, list(targets))
    opts = _options(None, (), (), annotations, edits, fmt)
    policy = referrer_policy(referrers, referrers_types, referrers_best_effort)
    if dry_run:
        built = ops.build_filter(
            ref, platforms=platforms, exclude=exclude, options=opts, ctx=state().ctx
        )
        _dry_run(built, dests, as_json, policy)
        return
    got: list[ops.Written[ops.BuiltIndex]] = []
    with transfer_progress() as progress:
        ops.filter(
            ref,
            platforms=platforms,
            exclude=exclude,
            targets=targets,
            options=opts,
            concurrent=concurrent,
            window=concurrent_window,
            referrers=policy,
            ctx=state().ctx,
            progress=progress,
            on_plan=plan_hook(),
            on_written=got.append,
        )
    _written(got[0], dests, as_json)


_SHORT_TYPES = {
    mt.OCI_MANIFEST: "oci-manifest",
    mt.OCI_INDEX: "oci-index",
    mt.DOCKER_MANIFEST: "docker-manifest",
    mt.DOCKER_LIST: "docker-list",
}


def _platform_text(p: Platform | None) -> str:
    if p is None:
        return "-"
    s = str(p)
    if p.os_features:
        s += f" ({','.join(p.os_features)})"
    return s


@index.command("list")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def list_(ref: str, as_json: bool) -> None:
    """List the entries of the index at REF: digest, type, platform, size."""
    listing = ops.list_entries(ref, ctx=state().ctx)
    if as_json:
        out(json.dumps(listing.to_dict(), indent=2))
        return
    rows = [("DIGEST", "TYPE", "PLATFORM", "SIZE", "NOTE")]
    for e in listing.entries:
        note = ""
        if e.is_attestation:
            note = f"attestation of {e.subject.short}" if e.subject else "attestation"
        rows.append(
            (
                str(e.digest),
                _SHORT_TYPES.get(e.descriptor.media_type, e.descriptor.media_type),
                _platform_text(e.platform),
                str(e.descriptor.size),
                note,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        line = "  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:4]))
        out(f"{line}  {r[4]}".rstrip())
