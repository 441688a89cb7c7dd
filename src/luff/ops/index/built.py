"""A built index: the assembled bytes in memory, served as a read-only store.

Pushing it is an ordinary copy of its graph (:func:`luff.copy.copy_graph`)
from an :class:`~luff.stores.memory.OverlayStore` that holds the index and
serves every entry's content from the store that provided it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from luff.context import Context, default_context
from luff.errors import UsageError
from luff.model.address import Address, check_tag, parse_address
from luff.model.manifest import Manifest
from luff.model.reference import valid_tag
from luff.ops.graph import Pushable
from luff.ops.index.resolve import Entry
from luff.record import Record, replace
from luff.stores.base import Store
from luff.stores.memory import OverlayStore


class Destination(Record):
    """One repository to push to, with every tag it gets there."""

    address: Address
    tags: list[str]

    def __init__(
        self,
        address: Address,
        tags: list[str],
    ) -> None:
        self.address = address
        self.tags = tags

    def __str__(self) -> str:
        if not self.tags:
            return str(self.address)
        more = f" (and tags {', '.join(self.tags[1:])})" if len(self.tags) > 1 else ""
        return f"{self.address.with_tag(self.tags[0])}{more}"


def destinations(primary: str | Address, extra: Sequence[str] = ()) -> list[Destination]:
    """Group *primary* and the ``-t`` values into one :class:`Destination` per repository.

    A value that is a valid tag is a tag in *primary*'s repository; anything
    else is a full address (another repository or registry gets its own copy).
    A target names a tag, not a digest: the index is new.
    """
    paddr = primary if isinstance(primary, Address) else parse_address(primary)
    groups: dict[str, Destination] = {}

    def add(addr: Address, tag: str) -> None:
        if addr.has_digest:
            raise UsageError(f"{addr}: a target names a tag, not a digest")
        repo = replace(addr, tag="", digest="")
        d = groups.setdefault(addr.repository_key, Destination(repo, []))
        if tag and tag not in d.tags:
            d.tags.append(tag)

    add(paddr, paddr.target_tag())
    for x in extra:
        if valid_tag(x):
            add(paddr, check_tag(x, paddr.transport))
        else:
            a = parse_address(x)
            add(a, a.target_tag())
    return list(groups.values())


class BuiltIndex(Pushable, Record, hide=("stores", "store")):
    """A validated index held in memory, with where each entry's content is.

    Inspect :attr:`manifest` (exact bytes), :attr:`document` and
    :attr:`entries`; :meth:`plan` shows what pushing would transfer,
    :meth:`push` writes it. :attr:`store` serves the whole graph.
    """

    manifest: Manifest
    entries: list[Entry]
    replaced: list[tuple[Entry, Entry]]
    ctx: Context
    stores: list[Store]
    store: OverlayStore  # made here: serves the index and every entry's content

    def __init__(
        self,
        manifest: Manifest,
        entries: list[Entry],
        replaced: list[tuple[Entry, Entry]] | None = None,
        ctx: Context | None = None,
        stores: list[Store] | None = None,
    ) -> None:
        self.manifest = manifest
        self.entries = entries
        self.replaced = [] if replaced is None else replaced
        self.ctx = default_context() if ctx is None else ctx
        self.stores = [] if stores is None else stores
        self.store = OverlayStore(f"index {self.manifest.digest.short}")
        self.store.add(self.manifest)
        for e in self.entries:
            self.store.provide(e.digest, e.store, e.manifest)  # read once, while resolving

    @property
    def document(self) -> dict[str, Any]:
        """The index as a JSON object."""
        return self.manifest.json

    def to_json(self) -> str:
        """The exact bytes of the index, as text."""
        return self.manifest.data.decode()

    def __repr__(self) -> str:
        plats = ", ".join(
            "attestation" if e.is_attestation else str(e.platform or "-") for e in self.entries
        )
        return f"<BuiltIndex {self.digest} [{plats}]>"

    def __enter__(self) -> BuiltIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
