"""Content luff made, held in memory over the stores it came from, and written by the copy engine.

A built index and a mutated image or index are both an
:class:`~luff.stores.memory.OverlayStore` (the new manifests and configs)
over the source stores (everything else). :class:`Pushable` gives them the
same :meth:`~Pushable.plan`, :meth:`~Pushable.push` and
:meth:`~Pushable.push_all`, each an ordinary copy of the new graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from luff.copy import copy_graph, plan_graph
from luff.errors import UsageError
from luff.model.address import Address, check_tag, parse_address
from luff.plan import Plan, Progress, Referrers, as_referrers
from luff.stores import open_target
from luff.stores.base import Store

if TYPE_CHECKING:
    from luff.context import Context
    from luff.model.descriptor import Descriptor
    from luff.model.digest import Digest
    from luff.model.manifest import Manifest
    from luff.ops.index.built import Destination
    from luff.stores.memory import OverlayStore


class Pushable:
    """What a built or mutated graph shares: plan, push, push to many, close."""

    manifest: Manifest
    store: OverlayStore
    ctx: Context
    stores: list[Store]

    @property
    def descriptor(self) -> Descriptor:
        """The descriptor of the new root (media type, digest, size)."""
        return self.manifest.descriptor()

    @property
    def digest(self) -> Digest:
        return self.manifest.digest

    def default_tags(self, address: Address) -> list[str]:
        """Tags for a target named without one (none: a registry's ``latest`` applies)."""
        return []

    def _target(
        self, target: str | Address | Store, tags: Sequence[str], create: bool
    ) -> tuple[Store, list[str], bool]:
        from luff.ops.index.built import destinations

        if isinstance(target, Store):
            return target, [check_tag(t) for t in tags], False
        addr = parse_address(target) if isinstance(target, str) else target
        if tags and not addr.has_tag and not addr.has_digest:
            addr, tags = addr.with_tag(tags[0]), tags[1:]  # the tags name the place
        if not addr.has_tag and not addr.has_digest and not tags:
            defaults = self.default_tags(addr)
            if defaults:
                addr, tags = addr.with_tag(defaults[0]), defaults[1:]
        dest = destinations(addr, tags)
        if len(dest) != 1:
            raise UsageError(f"{target}: the tags name other repositories; use push_all")
        return open_target(dest[0].address, self.ctx, create=create), dest[0].tags, True

    def plan(
        self,
        target: str | Address | Store,
        tags: Sequence[str] = (),
        *,
        referrers: Referrers | bool | None = None,
    ) -> Plan:
        """What pushing to *target* would do, per blob and manifest; writes nothing."""
        store, all_tags, owned = self._target(target, tags, create=False)
        try:
            return plan_graph(
                self.store,
                self.descriptor,
                store,
                manifest=self.manifest,
                tags=all_tags,
                ctx=self.ctx,
                referrers=as_referrers(referrers),
            )[1]
        finally:
            if owned:
                store.abort()

    def push(
        self,
        target: str | Address | Store,
        tags: Sequence[str] = (),
        *,
        progress: Progress | None = None,
        on_plan: Callable[[Plan], None] | None = None,
        referrers: Referrers | bool | None = None,
    ) -> Descriptor:
        """Copy what *target* lacks, then tag the new root there (its tag and *tags*).

        *target* is an address or a store. When every tag already points at
        the root, nothing is transferred. With *referrers*, what is attached
        to the content that came from elsewhere comes along (what luff made
        is new: it has none).
        """
        store, all_tags, owned = self._target(target, tags, create=True)
        try:
            copy_graph(
                self.store,
                self.descriptor,
                store,
                manifest=self.manifest,
                tags=all_tags,
                ctx=self.ctx,
                progress=progress,
                on_plan=on_plan,
                referrers=as_referrers(referrers),
            )
        except BaseException:
            if owned:
                store.abort()
            raise
        if owned:
            store.close()
        return self.descriptor

    def push_all(
        self,
        dests: Iterable[Destination],
        *,
        progress: Progress | None = None,
        on_plan: Callable[[Plan], None] | None = None,
        referrers: Referrers | bool | None = None,
    ) -> Descriptor:
        """Push to every destination in turn."""
        for d in dests:
            self.push(d.address, d.tags, progress=progress, on_plan=on_plan, referrers=referrers)
        return self.descriptor

    def close(self) -> None:
        """Release the source stores (archives hold open files)."""
        for s in self.stores:
            s.close()
        self.stores = []
