"""Which blobs of a layout are known to match their digests (``luff-verified.json``).

A blob already in the layout is hashed before a write counts on it; what was
verified is remembered in ``luff-verified.json`` by the file's device, inode,
size, modification and change times, so a re-run reads nothing again, and a
corrupt blob is reported (with a warning) and counts as missing. The record
is only a cache: a missing or unreadable one is ignored, and it is rewritten
under the ``index.json`` lock.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from luff.errors import InvalidDigest, LuffError
from luff.model import jsonutil
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.stores.files import UnsafePath, open_regular, read_regular
from luff.stores.layout_dir import CHUNK, blob_relpath
from luff.stores.layout_index import MAX_INDEX

if TYPE_CHECKING:
    from luff.context import Context

VERIFIED_FILE = "luff-verified.json"
#: Most blobs ``luff-verified.json`` remembers (the most recently verified are kept).
MAX_VERIFIED = 50_000

#: What identifies one version of a blob file: device, inode, size, mtime and ctime (ns).
FileKey = tuple[int, int, int, int, int]


def file_key(st: os.stat_result) -> FileKey:
    """The :data:`FileKey` of a file's status."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class VerifiedBlobs:
    """The verified blobs of the layout at *root*, as one store handle sees them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._recorded: dict[Digest, FileKey] | None = None  # luff-verified.json, when read
        self._new: dict[Digest, FileKey] = {}  # verified or written by this handle
        self._corrupt: dict[Digest, FileKey] = {}
        #: Blobs already in the layout that this handle hashed to check them.
        self.rehashed: list[Digest] = []
        #: Keep ``luff-verified.json`` (off for a staging layout that is thrown away).
        self.remember = True

    def trusted(self, desc: Descriptor, path: Path, *, where: str, ctx: Context | None) -> bool:
        """Whether the file at *path* is blob *desc*: known to be, or hashed now."""
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != desc.size:
            return False
        key = file_key(st)
        with self._lock:
            if self._corrupt.get(desc.digest) == key:
                return False
            if self._new.get(desc.digest) == key:
                return True
        if self._record().get(desc.digest) == key:
            return True
        return self._hash_check(path, desc, where, ctx)

    def _hash_check(self, path: Path, desc: Descriptor, where: str, ctx: Context | None) -> bool:
        """Hash the blob at *path*; remember a match, warn about (and remember) a mismatch."""
        try:
            f = open_regular(path, follow=False, name=blob_relpath(desc.digest), where=where)
        except (FileNotFoundError, UnsafePath):  # replaced meanwhile: not here as a blob
            return False
        with f:
            key = file_key(os.fstat(f.fileno()))
            h = desc.digest.hasher()
            n = 0
            while chunk := f.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
        with self._lock:
            self.rehashed.append(desc.digest)
            if n == desc.size and h.hexdigest() == desc.digest.hex:
                self._new[desc.digest] = key
                return True
            first = desc.digest not in self._corrupt
            self._corrupt[desc.digest] = key
        if first:
            if ctx is None:
                from luff.context import default_context

                ctx = default_context()
            ctx.warn(
                f"{where}: blob {desc.digest} is corrupt (its content does not match "
                "its digest); it is not trusted and is written again"
            )
        return False

    def remember_file(self, digest: Digest, path: Path) -> None:
        """Record the file just written at *path* as verified blob *digest*."""
        key = file_key(os.lstat(path))
        with self._lock:
            self._new[digest] = key
            self._corrupt.pop(digest, None)

    def _record(self) -> dict[Digest, FileKey]:
        with self._lock:
            if self._recorded is None:
                self._recorded = self._load()
            return self._recorded

    def _load(self) -> dict[Digest, FileKey]:
        """The record of verified blobs; empty when missing or unreadable (it is only a cache)."""
        try:
            data = read_regular(self.root / VERIFIED_FILE, MAX_INDEX, follow=False)
            obj = jsonutil.loads(data, what=VERIFIED_FILE)
            blobs = obj.get("blobs") if isinstance(obj, dict) and obj.get("version") == 1 else None
        except (OSError, ValueError, LuffError):
            return {}
        out: dict[Digest, FileKey] = {}
        if not isinstance(blobs, dict):
            return out
        for k, v in blobs.items():
            if isinstance(v, list) and len(v) == 5 and all(type(x) is int for x in v):
                with contextlib.suppress(InvalidDigest):
                    out[Digest.parse(k)] = (v[0], v[1], v[2], v[3], v[4])
        return out

    def flush(
        self,
        locked: Callable[[], AbstractContextManager[object]],
        write_json: Callable[[str, object], None],
    ) -> None:
        """Add what this handle verified or wrote to ``luff-verified.json``, written with
        *write_json* while holding *locked* (the ``index.json`` lock), keeping the
        :data:`MAX_VERIFIED` most recent."""
        with self._lock:
            new, self._new = self._new, {}
            corrupt = set(self._corrupt) - set(new)
        if not new or not self.remember:
            return
        with contextlib.suppress(LuffError, OSError), locked():
            cur = self._load()
            for d in corrupt:
                cur.pop(d, None)
            for d, key in new.items():
                cur.pop(d, None)  # re-inserted last: the most recent
                cur[d] = key
            if len(cur) > MAX_VERIFIED:
                cur = dict(list(cur.items())[-MAX_VERIFIED:])
            write_json(
                VERIFIED_FILE, {"version": 1, "blobs": {str(d): list(k) for d, k in cur.items()}}
            )
            with self._lock:
                self._recorded = cur
