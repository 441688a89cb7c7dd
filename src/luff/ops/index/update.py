"""Writing back to a shared tag without losing other writers' updates.

``index append`` (and ``filter`` or ``mutate`` writing back to their own
tag) read the tag, change what they read, and write it back. Two writers
that do this at once lose one update unless the write is conditional.

- Where the store refuses a stale write (luff's embedded registry and
  layouts always; a registry that honours ``If-Match``), every write names
  the version it read: a writer that lost the race re-reads, re-applies its
  change and tries again, with jittered backoff, a bounded number of times.
  This costs nothing when there is no race.
- Where it does not (distribution 2.8 and most registries today),
  ``concurrent=True`` bounds the time from reading the tag to finishing the
  write to half a *window*; after writing, the writer waits one window,
  reads the tag again and checks that everything it added is still there,
  re-applying and writing again if not, a bounded number of rounds. Any
  other luff writer that overwrote it must have read before its write and
  so written within the window: its loss is seen, never silent. This holds
  among luff writers that all use ``concurrent``, not against other tools.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from luff import cancel
from luff.context import Context
from luff.copy import Expect, Plan, Progress, Referrers, copy_graph
from luff.errors import LuffError, PreconditionFailed
from luff.model.address import Address
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.ops.graph import Pushable
from luff.ops.index.built import Destination
from luff.record import Record
from luff.stores import open_target
from luff.stores.base import ConditionalTagger, Store

#: Default window (seconds) of ``concurrent`` writes: reading to writing takes at most half.
WINDOW = 4.0
#: Conditional writes tried before giving up (each after re-reading).
TRIES = 10
#: Rounds of write-then-verify under ``concurrent``.
ROUNDS = 6

Current = tuple[Descriptor, Manifest, str] | None
G = TypeVar("G", bound=Pushable)


class Written(Record, Generic[G]):
    """What a write back did: what was written, and how many times it had to try again."""

    built: G
    descriptor: Descriptor
    retries: int
    rounds: int

    def __init__(
        self,
        built: G,
        descriptor: Descriptor,
        retries: int = 0,
        rounds: int = 1,
    ) -> None:
        self.built = built
        self.descriptor = descriptor
        self.retries = retries
        self.rounds = rounds


class LostUpdate(LuffError):
    """Other writers kept overwriting the tag: entries this writer added are missing."""


def read(store: Store, tag: str) -> Current:
    """What *tag* points at (and its version token), or None."""
    if isinstance(store, ConditionalTagger):
        return store.read_tag(tag)
    from luff.errors import NotFound

    try:
        desc, m = store.get_manifest(tag)
    except NotFound:
        return None
    return desc, m, str(desc.digest)


def writes_back(base: Address, dests: Sequence[Destination]) -> bool:
    """Whether the first of *dests* is *base*'s own tag, to be read and written back.

    Not for a file rewritten whole by every write (an archive): there is no
    tag to race for, and the write replaces the file.
    """
    first = dests[0]
    return (
        base.has_tag
        and not first.address.kind.single_file
        and first.address.repository_key == base.repository_key
        and base.tag in first.tags
    )


def write_back_all(
    base: Address,
    dests: Sequence[Destination],
    rebuild: Callable[[Store, Current], G],
    *,
    added: Callable[[G], Sequence[Digest]],
    concurrent: bool,
    window: float | None,
    ctx: Context,
    progress: Progress | None = None,
    on_plan: Callable[[Destination, Plan], None] | None = None,
    referrers: Referrers | None = None,
) -> Written[G]:
    """:func:`write_back` to *base*'s own tag (see :func:`writes_back`), then the other *dests*.

    The tag is read and written through a store opened for writing (closed
    when the write is done, so that what closing checks or writes happens);
    ``rebuild(store, current)`` makes the result from what the tag holds.
    """
    first = dests[0]

    def plan_of(d: Destination) -> Callable[[Plan], None] | None:
        return None if on_plan is None else (lambda plan: on_plan(d, plan))

    with open_target(first.address, ctx) as store:
        written = write_back(
            store,
            base.tag,
            lambda cur: rebuild(store, cur),
            added=added,
            concurrent=concurrent,
            window=window or WINDOW,
            ctx=ctx,
            progress=progress,
            on_plan=plan_of(Destination(first.address, [base.tag])),
            referrers=referrers,
        )
        # The result may read from *store* (the base's content): it stays open meanwhile.
        rest = [t for t in first.tags if t != base.tag]
        for d in [*([Destination(first.address, rest)] if rest else []), *dests[1:]]:
            written.built.push(
                d.address, d.tags, progress=progress, on_plan=plan_of(d), referrers=referrers
            )
    return written


def write_back(
    store: Store,
    tag: str,
    rebuild: Callable[[Current], G],
    *,
    added: Callable[[G], Sequence[Digest]],
    concurrent: bool = False,
    window: float = WINDOW,
    ctx: Context,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    referrers: Referrers | None = None,
) -> Written[G]:
    """Apply *rebuild* to what *tag* points at and write the result back, safely.

    *added* names the digests this writer put in (to check after writing).
    """
    conditional = isinstance(store, ConditionalTagger)
    timed = concurrent and not (
        isinstance(store, ConditionalTagger) and store.enforces_conditions(_probe(store, tag))
    )
    total = 0
    for round_ in range(1, ROUNDS + 1):
        written = _write(
            store,
            tag,
            rebuild,
            conditional,
            window if timed else None,
            ctx,
            progress,
            on_plan,
            referrers,
        )
        total += written.retries
        if not timed:
            written.retries = total
            return written
        cancel.sleep(window * (1 + _random() * 0.1))
        now = read(store, tag)
        have = {d.digest for d in now[1].manifests} if now is not None else set()
        missing = [d for d in added(written.built) if d not in have]
        if not missing:
            written.retries, written.rounds = total, round_
            return written
        ctx.say(f"{store.name}:{tag}: {len(missing)} entries were overwritten; writing again")
    raise LostUpdate(
        f"other writers overwrote these entries {ROUNDS} times: "
        + ", ".join(str(d) for d in missing),
        where=f"{store.name}:{tag}",
    )


def _write(
    store: Store,
    tag: str,
    rebuild: Callable[[Current], G],
    conditional: bool,
    window: float | None,
    ctx: Context,
    progress: Progress | None,
    on_plan: Callable[[Plan], None] | None,
    referrers: Referrers | None,
) -> Written[G]:
    """One write: read, rebuild, write the content, then move the tag (conditionally).

    Under a *window*, the content of a first rebuild is written beforehand,
    so that reading the tag and moving it is quick, and a read older than
    half the window is read again instead of written.
    """
    known: set[Digest] = set()
    if window is not None:
        first = rebuild(read(store, tag))
        copy_graph(
            first.store,
            first.descriptor,
            store,
            manifest=first.manifest,
            ctx=ctx,
            progress=progress,
            on_plan=on_plan,
            referrers=referrers,
        )
        known = {c.digest for c in first.manifest.manifests}
        on_plan, referrers = None, None
    tries = TRIES if conditional or window is not None else 1
    for attempt in range(tries):
        started = time.monotonic()
        cur = read(store, tag)
        built = rebuild(cur)
        if window is not None and time.monotonic() - started > window / 2:
            ctx.say(f"{store.name}:{tag}: reading took over half the window; reading again")
            continue
        try:
            copy_graph(
                built.store,
                built.descriptor,
                store,
                manifest=built.manifest,
                tags=[tag],
                expect=Expect(cur[2] if cur is not None else None) if conditional else None,
                known={*known, *(e.digest for e in _base_entries(cur))},
                ctx=ctx,
                progress=progress,
                on_plan=on_plan if attempt == 0 else None,
                referrers=referrers,
            )
        except PreconditionFailed:
            if attempt == tries - 1:
                raise
            ctx.say(f"{store.name}:{tag}: the tag moved; reading it again")
            cancel.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + _random()))
            continue
        return Written(built, built.descriptor, attempt)
    raise LostUpdate(
        "the tag kept moving while it was read; try again", where=f"{store.name}:{tag}"
    )


def _probe(store: ConditionalTagger, tag: str) -> Manifest | None:
    """A manifest the store holds (what *tag* points at), for a capability check."""
    cur = store.read_tag(tag)
    return cur[1] if cur is not None else None


def _base_entries(cur: Current) -> list[Descriptor]:
    """The entries of the index that was read: the target holds them already."""
    return [] if cur is None or not cur[1].is_index else cur[1].manifests


def _random() -> float:
    import random

    return random.random()
