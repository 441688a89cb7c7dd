"""``luff layout …``, ``luff push`` and ``luff pull``: thin wrappers over :mod:`luff.ops.layout`."""

from __future__ import annotations

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

FORMATS = ("oci", "oci-archive", "docker-archive")


@click.group("layout")
def layout() -> None:
    """Stage images in OCI image layouts on disk."""


@layout.command("init")
@click.argument("directory", metavar="DIR")
def init_(directory: str) -> None:
    """Create an empty OCI layout in DIR."""
    from luff.ops import layout as ops

    ops.init(directory)
    log(f"initialised OCI layout {directory}")


@layout.command("append")
@click.argument("directory", metavar="DIR")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--flatten", is_flag=True, help="Add an index's children instead of the index.")
@click.option(
    "--sparse", is_flag=True, help="Write manifests and configs only; layers stay remote."
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar=PLATFORM_METAVAR,
    help="Keep only matching children of an index (repeatable).",
)
@click.option(
    "--annotation", "annotations", multiple=True, metavar="K=V", help="Annotate the entries."
)
@click.option("--tag", metavar="NAME", help="Set org.opencontainers.image.ref.name.")
@click.option("--json", "as_json", is_flag=True, help="Print the added entries as JSON.")
def append_(
    directory: str,
    sources: tuple[str, ...],
    flatten: bool,
    sparse: bool,
    platforms: tuple[str, ...],
    annotations: tuple[str, ...],
    tag: str | None,
    as_json: bool,
) -> None:
    """Add SOURCE images or indexes to the layout DIR."""
    from luff.ops import layout as ops

    st = state()
    with transfer_progress() as progress:
        added = ops.append(
            directory,
            sources,
            flatten=flatten,
            sparse=sparse,
            platforms=platforms,
            annotations=annotation_options(annotations),
            tag=tag,
            ctx=st.ctx,
            progress=progress,
            on_plan=plan_hook(),
        )
    if as_json:
        out_json([d.to_dict() for d in added])
        return
    for d in added:
        out(f"oci:{directory}@{d.digest}")


@layout.command("list")
@click.argument("directory", metavar="DIR")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def list_(directory: str, as_json: bool) -> None:
    """Show the entries of the layout DIR (sparse ones lack some blobs)."""
    from luff.ops import layout as ops

    entries = ops.list_entries(directory)
    if as_json:
        out_json([e.to_dict() for e in entries])
        return
    rows = [("REF.NAME", "DIGEST", "MEDIA TYPE", "PLATFORM", "STATE")]
    for e in entries:
        rows.append(
            (
                e.ref_name or "-",
                str(e.descriptor.digest),
                e.descriptor.media_type.rsplit("/", 1)[-1],
                str(e.platform) if e.platform else "-",
                f"sparse ({len(e.missing)} missing)" if e.sparse else "complete",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        out("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@layout.command("remove")
@click.argument("directory", metavar="DIR")
@click.option("--tag", metavar="NAME", help="Remove the entry with this ref.name.")
@click.option("--digest", metavar="DIGEST", help="Remove entries of this digest.")
@click.option("--platform", metavar=PLATFORM_METAVAR, help="Remove entries of this platform.")
def remove_(directory: str, tag: str | None, digest: str | None, platform: str | None) -> None:
    """Remove entries from the layout DIR (run `layout gc` to delete their blobs)."""
    from luff.ops import layout as ops

    for d in ops.remove(directory, tag=tag, digest=digest, platform=platform):
        name = d.annotations.get("org.opencontainers.image.ref.name", "")
        log(f"removed {name + ' ' if name else ''}{d.digest}")


@layout.command("gc")
@click.argument("directory", metavar="DIR")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
def gc_(directory: str, dry_run: bool) -> None:
    """Delete blobs of the layout DIR that no entry references."""
    from luff.ops import layout as ops

    res = ops.gc(directory, dry_run=dry_run)
    for d in res.removed:
        out(str(d))
    verb = "would delete" if dry_run else "deleted"
    log(f"{verb} {len(res.removed)} blob(s), {res.bytes} bytes")


@layout.command("fill")
@click.argument("directory", metavar="DIR")
def fill_(directory: str) -> None:
    """Download the blobs a sparse layout DIR lacks, from their recorded sources."""
    from luff.ops import layout as ops

    st = state()
    with transfer_progress() as progress:
        got = ops.fill(directory, ctx=st.ctx, progress=progress, on_plan=plan_hook())
    log(f"fetched {len(got)} blob(s), {sum(d.size for d in got)} bytes")


@click.command("push")
@click.argument("path", metavar="PATH")
@click.argument("target")
@click.option("--index", is_flag=True, help="Push all entries of index.json as one index.")
@click.option(
    "--no-referrers",
    is_flag=True,
    help="Leave out the signatures and SBOMs the layout holds for what is pushed.",
)
@concurrent_options
@click.option("--json", "as_json", is_flag=True, help="Print the descriptor as JSON.")
def push(
    path: str,
    target: str,
    index: bool,
    no_referrers: bool,
    concurrent: bool,
    concurrent_window: float | None,
    as_json: bool,
) -> None:
    """Push the layout or archive at PATH (or PATH:TAG) to TARGET.

    What the layout holds attached to it (signatures, SBOMs) is pushed too.
    """
    from luff.model.address import parse_address
    from luff.ops import layout as ops

    st = state()
    with transfer_progress() as progress:
        desc = ops.push(
            path,
            target,
            index=index,
            referrers=not no_referrers,
            ctx=st.ctx,
            progress=progress,
            on_plan=plan_hook(),
        )
    if as_json:
        out_json(desc.to_dict())
    else:
        out(parse_address(target).pinned(desc.digest))


@click.command("pull")
@click.argument("ref")
@click.argument("path", metavar="PATH|oci:DIR[:TAG]|oci-archive:FILE|docker-archive:FILE")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="oci",
    show_default=True,
    help="A layout directory or an archive file (for a PATH without transport prefix).",
)
@click.option("--platform", metavar=PLATFORM_METAVAR, help="Pull only this platform's image.")
@referrer_options
@click.option("--json", "as_json", is_flag=True, help="Print the descriptor as JSON.")
def pull(
    ref: str,
    path: str,
    fmt: str,
    platform: str | None,
    referrers: bool,
    referrers_types: tuple[str, ...],
    referrers_best_effort: bool,
    as_json: bool,
) -> None:
    """Pull REF into a layout directory or archive at PATH."""
    from luff.ops import layout as ops

    st = state()
    with transfer_progress() as progress:
        desc = ops.pull(
            ref,
            path,
            format=fmt,
            platform=platform or st.platform,
            referrers=referrer_policy(referrers, referrers_types, referrers_best_effort),
            ctx=st.ctx,
            progress=progress,
            on_plan=plan_hook(),
        )
    if as_json:
        out_json(desc.to_dict())
    else:
        out(ops.pull_address(path, fmt).pinned(desc.digest))
