"""A layout's ``index.json``: parsing it, finding and merging entries, and its lock.

``index.json`` (and luff's sparse record and verified-blob record) are
rewritten under an exclusive ``flock`` on ``index.json`` (:func:`lock_index`),
so concurrent writers all land; the file is opened without blocking and must
be a regular file (a FIFO would hang a reader).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from luff.errors import InvalidManifest, LimitExceeded, LuffError, NotFound, UsageError
from luff.model import jsonutil
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, is_digest
from luff.model.platform import Platform
from luff.stores.files import open_regular, read_regular

INDEX_FILE = "index.json"
#: Largest ``index.json`` (or ``luff-sparse.json``) luff reads.
MAX_INDEX = 64 * 1024 * 1024


def empty_index() -> dict[str, Any]:
    """The JSON of an ``index.json`` with no entries."""
    return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}


def parse_index(data: bytes, where: str) -> tuple[dict[str, Any], list[Descriptor]]:
    """Parse ``index.json`` bytes; every entry's digest is validated."""
    try:
        obj = jsonutil.loads(data, what="index.json", where=where)
    except (ValueError, UnicodeDecodeError):
        raise InvalidManifest("index.json is not valid JSON", where=where) from None
    except LimitExceeded as e:
        raise LimitExceeded(f"index.json: {e.message}", where=where) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("manifests", []), list):
        raise InvalidManifest("index.json has no 'manifests' list", where=where)
    try:
        entries = [Descriptor.from_dict(d) for d in obj.get("manifests", [])]
    except InvalidManifest as e:
        raise InvalidManifest(f"index.json: {e}", where=where) from None
    return obj, entries


def read_index(root: Path, where: str) -> tuple[dict[str, Any], list[Descriptor]]:
    """The parsed ``index.json`` of the layout at *root*: the object and its entries."""
    try:
        data = read_regular(root / INDEX_FILE, MAX_INDEX, name=INDEX_FILE, where=where)
    except FileNotFoundError:
        raise NotFound(f"no {INDEX_FILE}", where=where) from None
    return parse_index(data, where)


@contextlib.contextmanager
def lock_index(root: Path, where: str) -> Iterator[None]:
    """Hold the exclusive ``flock`` on ``index.json`` (it survives the file's replacement)."""
    index = root / INDEX_FILE
    while True:
        try:
            f = open_regular(index, name=INDEX_FILE, where=where)
        except FileNotFoundError:
            raise NotFound(f"no {INDEX_FILE}", where=where) from None
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            st, cur = os.fstat(f.fileno()), os.stat(index)
            if (st.st_ino, st.st_dev) == (cur.st_ino, cur.st_dev):
                break
        except FileNotFoundError:
            pass
        f.close()  # replaced while we waited: lock the new file
    with f:
        yield


def ref_name(desc: Descriptor) -> str:
    """The ``org.opencontainers.image.ref.name`` of an entry ("" when none)."""
    return desc.annotations.get(mt.REF_NAME, "")


def find_entry(entries: list[Descriptor], identifier: str, where: str) -> Descriptor | None:
    """The entry named by *identifier* (ref.name, or digest); None for an unknown digest.

    An empty identifier picks the only entry.
    """
    if not identifier:
        if len(entries) == 1:
            return entries[0]
        names = ", ".join(ref_name(e) or str(e.digest) for e in entries) or "none"
        raise UsageError(f"{where} holds {len(entries)} images ({names}); name one with :TAG")
    if is_digest(identifier):
        d = Digest.parse(identifier)
        return next((e for e in entries if e.digest == d), None)
    for e in entries:
        if ref_name(e) == identifier:
            return e
    names = ", ".join(sorted({ref_name(e) for e in entries if ref_name(e)})) or "none"
    raise NotFound(f"no such ref.name in index.json (has: {names})", where=f"{where}:{identifier}")


def merge_entries(
    entries: list[Descriptor], new: list[Descriptor], only_new: bool = False
) -> list[Descriptor]:
    """*entries* with *new* added: an entry replaces the one of the same ref.name, an
    unnamed entry the unnamed one of the same digest; with *only_new*, an entry already
    in *entries* (same ref.name and digest) is left as it is."""
    have = {(ref_name(e), e.digest) for e in entries}
    for d in new:
        name = ref_name(d)
        if only_new and (name, d.digest) in have:
            continue
        for i, e in enumerate(entries):
            if ref_name(e) == name and (name or e.digest == d.digest):
                entries[i] = d
                break
        else:
            entries.append(d)
    return entries


def platform_of_config(data: bytes) -> Platform | None:
    """The platform an image config describes, if it names one (for an entry's platform)."""
    try:
        cfg = jsonutil.loads(data, what="config")
        if isinstance(cfg, dict) and cfg.get("os") and cfg.get("architecture"):
            return Platform.from_dict(cfg)
    except (ValueError, LuffError):
        pass
    return None
