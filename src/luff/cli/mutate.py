"""``luff mutate``: change every platform of an image or index at once."""

from __future__ import annotations

import click

from luff.cli.common import (
    PLATFORM_METAVAR,
    concurrent_options,
    log,
    out,
    out_json,
    plan_hook,
    state,
    transfer_progress,
)
from luff.ops import mutate as ops
from luff.ops.changes import Append, parse_command, parse_pairs

_EPILOG = (
    "REF is an image or an index (registry, oci:DIR[:TAG], oci-archive:FILE, "
    "docker-archive:FILE). Images not of --platform keep their digests; attestations "
    "of changed images are dropped (--keep-attestations re-points them); referrers "
    "(signatures, SBOMs) of the old images are not carried over. With --created or "
    "SOURCE_DATE_EPOCH, the same inputs give the same digests."
)


@click.command("mutate", epilog=_EPILOG)
@click.argument("ref")
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
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Config label.")
@click.option("--env", multiple=True, metavar="KEY=VALUE", help="Config environment variable.")
@click.option(
    "--entrypoint", metavar="JSON|COMMAND", help="Entrypoint: a JSON array, or split as a shell."
)
@click.option("--cmd", metavar="JSON|COMMAND", help="Cmd: a JSON array, or split as a shell.")
@click.option("--workdir", metavar="DIR", help="Working directory.")
@click.option("--user", metavar="USER[:GROUP]", help="User.")
@click.option(
    "--config-set",
    "config_edits",
    multiple=True,
    metavar="JQ",
    help="jq program run on each image's config JSON, validated after (repeatable).",
)
@click.option(
    "--annotation",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="Annotation on each changed image manifest (repeatable).",
)
@click.option(
    "--index-annotation",
    "index_annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="Annotation on the index (repeatable).",
)
@click.option(
    "--append",
    "appends",
    multiple=True,
    metavar="[PLATFORM=]PATH",
    help="Add a layer: a .tar, .tar.gz or directory; PLATFORM=PATH for that platform only "
    "(repeatable, in order).",
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar=PLATFORM_METAVAR,
    help="Change only the images of this platform (repeatable; strict matching).",
)
@click.option(
    "--created",
    metavar="TIME",
    help="Config 'created' time, RFC 3339 or 'now' (default: SOURCE_DATE_EPOCH if set, "
    "else unchanged).",
)
@click.option(
    "--keep-attestations",
    is_flag=True,
    help="Re-point attestations of changed images at the new images instead of dropping them.",
)
@click.option("--dry-run", is_flag=True, help="Print the old -> new digests and the plan only.")
@concurrent_options
@click.option("--json", "as_json", is_flag=True, help="Print the descriptor and digests as JSON.")
def mutate(
    ref: str,
    targets: tuple[str, ...],
    labels: tuple[str, ...],
    env: tuple[str, ...],
    entrypoint: str | None,
    cmd: str | None,
    workdir: str | None,
    user: str | None,
    config_edits: tuple[str, ...],
    annotations: tuple[str, ...],
    index_annotations: tuple[str, ...],
    appends: tuple[str, ...],
    platforms: tuple[str, ...],
    created: str | None,
    keep_attestations: bool,
    dry_run: bool,
    concurrent: bool,
    concurrent_window: float | None,
    as_json: bool,
) -> None:
    """Change the config, annotations and layers of every platform of REF at once.

    Prints the pinned reference of the result (TARGET_REPO@sha256:…).
    """
    st = state()
    changes = ops.changes_of(
        labels=parse_pairs(labels, "--label"),
        env=parse_pairs(env, "--env"),
        entrypoint=parse_command(entrypoint, "--entrypoint") if entrypoint is not None else None,
        cmd=parse_command(cmd, "--cmd") if cmd is not None else None,
        workdir=workdir,
        user=user,
        config_edits=config_edits,
        annotations=parse_pairs(annotations, "--annotation"),
        index_annotations=parse_pairs(index_annotations, "--index-annotation"),
        created=created,
    )
    wanted = list(platforms) or ([st.platform] if st.platform else [])
    dests = ops.targets(ref, targets)  # a bad target fails before any work
    with transfer_progress() as progress:
        result = ops.mutate(
            ref,
            target=list(targets),
            changes=changes,
            append=[Append.parse(a) for a in appends],
            platforms=wanted,
            keep_attestations=keep_attestations,
            dry_run=dry_run,
            concurrent=concurrent,
            window=concurrent_window,
            ctx=st.ctx,
            progress=progress,
            on_plan=plan_hook(),
        )
    for note in result.notes:
        log(f"luff: {note}")
    if as_json:
        doc = result.to_dict()
        if dry_run:
            doc["plans"] = [
                {"target": str(d), "tags": d.tags, **p.to_dict()} for d, p in result.plans
            ]
        out_json(doc)
        return
    if dry_run:
        for c in result.images:
            plat = str(c.platform) if c.platform is not None else "-"
            new = f"-> {c.new.digest}" if c.changed else "(unchanged)"
            out(f"{plat:<16} {c.old.digest} {new}")
        out(f"{'result':<16} {result.old.digest} -> {result.descriptor.digest}")
        for d, plan in result.plans:
            log(f"plan for {d}:")
            for line in plan.lines():
                log(line)
        return
    for d in dests:
        out(d.address.pinned(result.descriptor.digest))
