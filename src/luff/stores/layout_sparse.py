"""A sparse layout's record of where its missing blobs come from (``luff-sparse.json``).

A *sparse* layout lacks some blobs (OCI allows that) and records, for each
missing blob, the address of a source it can be fetched from. The record is
rewritten under the ``index.json`` lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from luff.errors import InvalidDigest, InvalidManifest, LimitExceeded
from luff.model import jsonutil
from luff.model.digest import Digest
from luff.stores.files import read_regular
from luff.stores.layout_dir import LayoutDir
from luff.stores.layout_index import MAX_INDEX

SPARSE_FILE = "luff-sparse.json"


def read_sparse(root: Path, where: str) -> dict[Digest, str]:
    """Missing-blob digest → source address, from the layout at *root* (empty when none)."""
    try:
        data = read_regular(root / SPARSE_FILE, MAX_INDEX, name=SPARSE_FILE, where=where)
    except FileNotFoundError:
        return {}
    try:
        obj = jsonutil.loads(data, what=SPARSE_FILE)
        blobs = obj["blobs"]
        assert isinstance(blobs, dict)
        return {Digest.parse(k): str(v) for k, v in blobs.items()}
    except LimitExceeded as e:
        raise LimitExceeded(f"{SPARSE_FILE}: {e.message}", where=where) from None
    except (ValueError, KeyError, AssertionError, TypeError, InvalidDigest):
        raise InvalidManifest(f"{SPARSE_FILE} is malformed", where=where) from None


def write_sparse(layout: LayoutDir, records: dict[Digest, str]) -> None:
    """Replace the record (removed when *records* is empty); the caller holds the lock."""
    if not records:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(layout.path / SPARSE_FILE)
        return
    obj = {"version": 1, "blobs": {str(k): v for k, v in sorted(records.items())}}
    layout.write_json(SPARSE_FILE, obj)
