"""Stores: the places images live, behind one interface."""

from __future__ import annotations

from luff.context import Context, default_context
from luff.errors import UsageError
from luff.model.address import DOCKER_ARCHIVE, OCI, OCI_ARCHIVE, Address, parse_address
from luff.stores.base import Store
from luff.stores.memory import MemoryStore

__all__ = ["MemoryStore", "Store", "open_store"]


def open_store(
    address: str | Address, ctx: Context | None = None, *, write: bool = False
) -> tuple[Store, str]:
    """Open the store an address names; returns ``(store, identifier)``.

    The identifier is the tag or digest inside the store ("" when the
    address names none, e.g. an archive with a single image).
    """
    ctx = ctx or default_context()
    addr = address if isinstance(address, Address) else parse_address(address)
    if addr.reference is not None:
        from luff.stores.registry import RegistryStore

        return RegistryStore.for_reference(addr.reference, ctx), addr.reference.identifier
    if addr.transport == OCI:
        from luff.stores.layout import LayoutStore

        return LayoutStore.open(addr.path, create=write, ctx=ctx), addr.identifier
    if addr.transport == OCI_ARCHIVE:
        from luff.stores.archive import OciArchiveStore

        return OciArchiveStore.open(addr.path, write=write), addr.identifier
    if addr.transport == DOCKER_ARCHIVE:
        from luff.stores.archive import DockerArchiveStore

        return DockerArchiveStore.open(addr.path, write=write), addr.identifier
    raise UsageError(f"unsupported address {address}")
