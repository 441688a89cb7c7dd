"""Change every platform of an image or index at once: config, annotations, layers.

>>> import luff
>>> r = luff.mutate.mutate(  # doctest: +SKIP
...     "reg.example.com/base:1",
...     append=["./ca-certs"],
...     env={"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"},
...     target="reg.example.com/base:1-ca",
... )
>>> r.descriptor.digest, r.mapping  # new index; old -> new digest per image  # doctest: +SKIP

:func:`build` makes the result in memory without writing anything
(:class:`Mutation`: inspect, :meth:`~Mutation.plan`, :meth:`~Mutation.push`).
*ref* may also be a :class:`luff.index.BuiltIndex` or a
:class:`luff.index.Source` in an open store, so an index can be built,
mutated and pushed in one go.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence

from luff.context import Context
from luff.copy import Plan, Progress
from luff.model.platform import Platform
from luff.ops import mutate as _ops
from luff.ops.changes import Append, AttestationChange, Changes
from luff.ops.mutate import ImageChange, Mutation, Ref, Result, targets

__all__ = [
    "Append",
    "AttestationChange",
    "Changes",
    "ImageChange",
    "Mutation",
    "Result",
    "build",
    "mutate",
    "targets",
]

AppendArg = str | os.PathLike[str] | Append


def build(
    ref: Ref,
    *,
    labels: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    config_edits: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    index_annotations: Mapping[str, str] | None = None,
    append: Iterable[AppendArg] = (),
    platforms: Iterable[Platform | str] = (),
    created: str | None = None,
    keep_attestations: bool = False,
    ctx: Context | None = None,
) -> Mutation:
    """The image or index at *ref*, changed, in memory; nothing is written.

    *labels* and *env* are set in every selected image's config;
    *entrypoint* and *cmd* are argument lists (empty: removed); *config_edits*
    are jq programs run on the whole config JSON, whose result is validated;
    *annotations* go on each changed image manifest, *index_annotations* on
    the index. *append* adds layers: paths of a ``.tar``, a gzipped tar or a
    directory, or ``"linux/arm64=PATH"`` (an :class:`Append`) for one
    platform. Only images of *platforms* change, when given. *created*
    (RFC 3339, or ``"now"``; default ``SOURCE_DATE_EPOCH`` when set, else the
    config's own) is the config's ``created`` and the new history entries'.
    Attestations of changed images are dropped, or re-pointed with
    *keep_attestations*.
    """
    changes = _ops.changes_of(
        labels=labels,
        env=env,
        entrypoint=entrypoint,
        cmd=cmd,
        workdir=workdir,
        user=user,
        config_edits=config_edits,
        annotations=annotations,
        index_annotations=index_annotations,
        created=created,
    )
    return _ops.build(
        ref,
        changes=changes,
        append=[Append.coerce(a) for a in append],
        platforms=platforms,
        keep_attestations=keep_attestations,
        ctx=ctx,
    )


def mutate(
    ref: Ref,
    *,
    labels: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    config_edits: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    index_annotations: Mapping[str, str] | None = None,
    append: Iterable[AppendArg] = (),
    platforms: Iterable[Platform | str] = (),
    created: str | None = None,
    keep_attestations: bool = False,
    target: str | Sequence[str] | None = None,
    dry_run: bool = False,
    concurrent: bool = False,
    window: float | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Result:
    """Change the image or index at *ref* (see :func:`build`) and push it back, or to *target*.

    *target* is an address or a tag in *ref*'s repository, or a list of them.
    Only what each target lacks is sent. With *dry_run* nothing is pushed;
    :attr:`Result.plans` says what would be. Writing back to *ref*'s tag is
    guarded against other writers as ``index append`` is (*concurrent*,
    *window*).
    """
    changes = _ops.changes_of(
        labels=labels,
        env=env,
        entrypoint=entrypoint,
        cmd=cmd,
        workdir=workdir,
        user=user,
        config_edits=config_edits,
        annotations=annotations,
        index_annotations=index_annotations,
        created=created,
    )
    return _ops.mutate(
        ref,
        target=target,
        changes=changes,
        append=[Append.coerce(a) for a in append],
        platforms=platforms,
        keep_attestations=keep_attestations,
        dry_run=dry_run,
        concurrent=concurrent,
        window=window,
        ctx=ctx,
        progress=progress,
        on_plan=on_plan,
    )
