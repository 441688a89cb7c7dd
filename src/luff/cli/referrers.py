"""``luff referrers`` and ``luff attach``: thin wrappers over :mod:`luff.ops.referrers`."""

from __future__ import annotations

import click

from luff.cli.common import (
    PLATFORM_METAVAR,
    annotation_options,
    concurrent_options,
    out,
    out_json,
    plan_hook,
    state,
    transfer_progress,
)
from luff.ops import referrers as ops


@click.command("referrers")
@click.argument("ref")
@click.option(
    "--type", "types", multiple=True, metavar="TYPE", help="Only this artifact type (repeatable)."
)
@click.option(
    "-r",
    "--recursive",
    is_flag=True,
    help="A tree: the referrers of an index's children, and referrers of referrers.",
)
@click.option("--platform", metavar=PLATFORM_METAVAR, help="The image of this platform.")
@click.option("--json", "as_json", is_flag=True, help="Print the tree as JSON.")
def referrers(
    ref: str, types: tuple[str, ...], recursive: bool, platform: str | None, as_json: bool
) -> None:
    """List what is attached to REF: signatures, SBOMs, attestations.

    Columns: digest, artifact type, size, created (its annotation) and how it
    was found (the referrers API, the sha256-<hex> tag schema, a layout, or
    cosign's tags).
    """
    st = state()
    tree = ops.list_referrers(
        ref, types=types, recursive=recursive, platform=platform or st.platform, ctx=st.ctx
    )
    if as_json:
        out_json(tree.to_dict())
        return
    rows: list[tuple[str, ...]] = [("DIGEST", "ARTIFACT TYPE", "SIZE", "CREATED", "FOUND BY")]

    def add(r: ops.Referrer, indent: str) -> None:
        d = r.descriptor
        rows.append(
            (indent + str(d.digest), d.artifact_type or "-", str(d.size), r.created or "-", r.via)
        )
        for sub in r.referrers:
            add(sub, indent + "  ")

    def node(n: ops.Node, indent: str) -> None:
        for r in n.referrers:
            add(r, indent)
        for c in n.children:
            plat = str(c.descriptor.platform) if c.descriptor.platform else "-"
            rows.append((f"{indent}{c.descriptor.digest}", f"({plat})", "", "", ""))
            node(c, indent + "  ")

    node(tree, "")
    if len(rows) == 1:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        out(("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:4])) + "  " + r[4]).rstrip())


@click.command("attach")
@click.argument("ref")
@click.argument("files", nargs=-1, required=True, metavar="FILE[:MEDIATYPE]...")
@click.option("--artifact-type", required=True, metavar="TYPE", help="The artifact's type.")
@click.option(
    "--annotation", "annotations", multiple=True, metavar="K=V", help="Annotate the artifact."
)
@click.option(
    "--platform", metavar=PLATFORM_METAVAR, help="Attach to this platform's image of an index."
)
@concurrent_options
@click.option("--json", "as_json", is_flag=True, help="Print the artifact's descriptor as JSON.")
def attach(
    ref: str,
    files: tuple[str, ...],
    artifact_type: str,
    annotations: tuple[str, ...],
    platform: str | None,
    concurrent: bool,
    concurrent_window: float | None,
    as_json: bool,
) -> None:
    """Attach FILE... to REF as an OCI 1.1 artifact (its subject is REF's manifest).

    Prints the pinned reference of the artifact.
    """
    st = state()
    pairs = [_file_and_type(f) for f in files]
    with transfer_progress() as progress:
        desc = ops.attach(
            ref,
            pairs,
            artifact_type=artifact_type,
            annotations=annotation_options(annotations),
            platform=platform or st.platform,
            ctx=st.ctx,
            progress=progress,
            on_plan=plan_hook(),
        )
    if as_json:
        out_json(desc.to_dict())
    else:
        from luff.ops.common import as_address

        out(as_address(ref).pinned(desc.digest))


def _file_and_type(text: str) -> tuple[str, str]:
    """``FILE[:MEDIATYPE]``: a media type has a ``/`` after the last ``:``."""
    path, sep, media = text.rpartition(":")
    if sep and "/" in media and path:
        return path, media
    return text, ""
