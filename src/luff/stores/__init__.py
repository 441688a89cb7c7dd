"""Stores: the places images live, behind one interface, opened from addresses.

:func:`open_source` opens an address to read from, :func:`open_target` one
to write to. Which store class serves which transport is the table in
:mod:`luff.model.address`; each class opens its own addresses with the
class methods ``open_source(address, ctx)`` and ``open_target(address, ctx)``.
"""

from __future__ import annotations

import importlib
from typing import Protocol, cast

from luff.context import Context, default_context
from luff.errors import NotFound
from luff.model.address import (
    DOCKER_ARCHIVE,
    FILE_TRANSPORTS,
    OCI,
    OCI_ARCHIVE,
    Address,
    parse_address,
)
from luff.stores.base import Store
from luff.stores.memory import MemoryStore

__all__ = ["MemoryStore", "Store", "local_address", "open_source", "open_target"]


class _Opener(Protocol):
    def open_source(self, address: Address, ctx: Context) -> Store: ...
    def open_target(self, address: Address, ctx: Context, *, create: bool) -> Store: ...


def _opener(address: Address) -> _Opener:
    module, _, cls = address.kind.store.partition(":")
    return cast(_Opener, getattr(importlib.import_module(module), cls))


def _address(address: str | Address) -> Address:
    return address if isinstance(address, Address) else parse_address(address)


def open_source(address: str | Address, ctx: Context | None = None) -> tuple[Store, str]:
    """Open *address* for reading; returns ``(store, identifier)``.

    The identifier is the tag or digest inside the store: ``latest`` for a
    registry address that names neither, "" for a file that names neither
    (its only image).
    """
    addr = _address(address)
    return _opener(addr).open_source(addr, ctx or default_context()), addr.identifier


def open_target(
    address: str | Address, ctx: Context | None = None, *, create: bool = True
) -> Store:
    """Open *address* for writing.

    With ``create=False`` nothing is made on disk (to plan a write): a file
    target that does not exist yet is an empty :class:`MemoryStore`.
    """
    addr = _address(address)
    ctx = ctx or default_context()
    try:
        return _opener(addr).open_target(addr, ctx, create=create)
    except NotFound:
        if create or addr.is_registry:
            raise
        return MemoryStore(str(addr))


def local_address(text: str) -> Address:
    """An address for *text*, which may also be a plain path to a layout or archive.

    A plain ``PATH[:TAG]`` (``FILE[:REPO:TAG]`` for a docker archive) names a
    layout directory, or an archive file: a docker archive when it holds
    ``manifest.json``, else an OCI archive.
    """
    if any(text.startswith(t + ":") for t in FILE_TRANSPORTS):
        return parse_address(text)
    candidates = [(text, "")]
    candidates += [(text[:i], text[i + 1 :]) for i, c in enumerate(text) if c == ":" and i > 0]
    for path, rest in candidates:
        from pathlib import Path

        p = Path(path)
        if p.is_dir():
            kind = OCI
        elif p.is_file():
            from luff.stores.archive import is_docker_archive

            kind = DOCKER_ARCHIVE if is_docker_archive(p) else OCI_ARCHIVE
        else:
            continue
        return parse_address(f"{kind}:{path}" + (f":{rest}" if rest else ""))
    raise NotFound("no such layout directory or archive", where=text)
