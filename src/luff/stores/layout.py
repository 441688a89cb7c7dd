"""OCI image layouts on disk: ``oci-layout``, ``index.json`` and ``blobs/ALG/HEX``.

Safety rules kept here:

- every digest is re-validated against the digest grammar before it becomes
  a path, so ``sha256:../../etc/passwd`` never reaches the file system;
- every file is written to a temporary name in the layout, then renamed;
- a layout whose ``blobs`` directory, or a ``blobs/ALG`` directory in it, is a
  symbolic link is refused, so luff never writes or deletes outside it; a
  blob file that is a symbolic link is neither read nor trusted (a write
  replaces the link);
- ``oci-layout``, ``index.json``, ``luff-sparse.json`` and blobs are opened
  without blocking and must be regular files (a FIFO would hang a reader);
- a blob already in the layout is hashed before a write counts on it; what
  was verified is remembered in ``luff-verified.json`` by the file's device,
  inode, size, modification and change times, so a re-run reads nothing
  again, and a corrupt blob is replaced (with a warning);
- ``index.json`` (and luff's sparse record) are rewritten under an exclusive
  ``flock`` on ``index.json``, so concurrent writers all land;
- a handle that writes (or checks which blobs exist, to decide what to write)
  holds a shared ``flock`` on the layout directory until it is closed, and
  ``gc`` needs it exclusively, so it never deletes a blob that a running
  writer has written, or counted on, but not yet referenced;
- blobs are written before the manifests that point at them, and manifests
  before ``index.json``, so an interrupted write leaves a valid layout.

A *sparse* layout lacks some blobs (OCI allows that) and records in
``luff-sparse.json`` which source each missing blob can be fetched from.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from luff.errors import (
    InvalidDigest,
    InvalidManifest,
    LimitExceeded,
    LuffError,
    NotFound,
    PreconditionFailed,
    UsageError,
    located,
)
from luff.model import jsonutil
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, VerifyingReader, is_digest, readinto, verified_digest
from luff.model.manifest import MAX_MANIFEST, Manifest, sniff_media_type
from luff.model.platform import Platform
from luff.model.referrers import ReferrerList, referrer_descriptor
from luff.stores.base import BlobFetcher, Store, scan_referrers
from luff.stores.files import UnsafePath, not_regular, open_regular, read_regular

if TYPE_CHECKING:
    from luff.context import Context
    from luff.model.address import Address

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
SPARSE_FILE = "luff-sparse.json"
VERIFIED_FILE = "luff-verified.json"
TMP_PREFIX = ".luff-tmp-"
LAYOUT_VERSION = "1.0.0"
CHUNK = 1 << 20
#: Largest ``index.json`` (or ``luff-sparse.json``) luff reads.
MAX_INDEX = 64 * 1024 * 1024
#: Most blobs ``luff-verified.json`` remembers (the most recently verified are kept).
MAX_VERIFIED = 50_000
_NO_LINKS = "; luff neither writes nor deletes outside the layout"

#: What identifies one version of a blob file: device, inode, size, mtime and ctime (ns).
_FileKey = tuple[int, int, int, int, int]


def _file_key(st: os.stat_result) -> _FileKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def blob_relpath(digest: Digest | str) -> str:
    """``blobs/ALG/HEX`` for *digest*, after checking it against the digest grammar."""
    d = Digest.parse(str(digest))  # raises InvalidDigest for anything path-like
    return f"blobs/{d.algorithm}/{d.hex}"


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


def platform_of_config(data: bytes) -> Platform | None:
    """The platform an image config describes, if it names one."""
    try:
        cfg = jsonutil.loads(data, what="config")
        if isinstance(cfg, dict) and cfg.get("os") and cfg.get("architecture"):
            return Platform.from_dict(cfg)
    except (ValueError, LuffError):
        pass
    return None


class LayoutStore(Store):
    """An OCI image layout directory.

    Identifiers are the ``org.opencontainers.image.ref.name`` of an
    ``index.json`` entry, or a digest. Manifests pushed through this handle
    that end up neither tagged nor referenced by another pushed manifest are
    added to ``index.json`` (without a ref.name) on :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], ctx: Context | None = None) -> None:
        self.path = Path(path)
        self.name = f"oci:{path}"
        self.ctx = ctx
        self._lock = threading.Lock()
        self._index_lock = threading.Lock()  # threads of this process; flock for the rest
        self._dir_fd: int | None = None  # flock on the directory: shared (writing) or gc's
        self._written: dict[Digest, Manifest] = {}
        self._origins: dict[str, Store] = {}
        self._referrers: dict[Digest, list[Descriptor]] | None = None
        self._verified: dict[Digest, _FileKey] | None = None  # luff-verified.json, when read
        self._verified_new: dict[Digest, _FileKey] = {}  # verified or written by this handle
        self._corrupt: dict[Digest, _FileKey] = {}
        #: Blobs already in the layout that this handle hashed to check them.
        self.rehashed: list[Digest] = []
        #: Keep ``luff-verified.json`` (off for a staging layout that is thrown away).
        self.remember_verified = True

    # --- opening -------------------------------------------------------
    @classmethod
    def open_source(cls, address: Address, ctx: Context) -> LayoutStore:
        """The layout an ``oci:`` address names (it must exist)."""
        return cls.open(address.path, ctx=ctx)

    @classmethod
    def open_target(cls, address: Address, ctx: Context, *, create: bool = True) -> LayoutStore:
        """The layout an ``oci:`` address names, made when missing (with *create*)."""
        return cls.open(address.path, create=create, ctx=ctx)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], create: bool = False, ctx: Context | None = None
    ) -> LayoutStore:
        """Open the layout at *path*; with *create*, make it when it does not exist."""
        p = Path(path)
        try:
            mode: int | None = os.stat(p / LAYOUT_FILE).st_mode
        except (FileNotFoundError, NotADirectoryError):
            mode = None
        if mode is not None:
            if not stat.S_ISREG(mode):
                raise not_regular(mode, LAYOUT_FILE, where=f"oci:{path}")
            store = cls(p, ctx)
            store._check_version()
            store._check_boundary()
            return store
        if not create:
            if not p.exists():
                raise NotFound(f"oci:{path}: no such directory")
            raise NotFound(f"oci:{path}: not an OCI image layout (no {LAYOUT_FILE} file)")
        return cls.init(p, ctx)

    @classmethod
    def init(cls, path: str | os.PathLike[str], ctx: Context | None = None) -> LayoutStore:
        """Create an empty layout at *path* (an empty or missing directory); idempotent."""
        p = Path(path)
        if (p / LAYOUT_FILE).is_file():
            return cls.open(p, ctx=ctx)
        if p.exists() and not p.is_dir():
            raise UsageError(f"oci:{path}: exists and is not a directory")
        if p.is_dir() and any(p.iterdir()):
            raise UsageError(f"oci:{path}: directory is not empty and not an OCI layout")
        (p / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        store = cls(p, ctx)
        if not (p / INDEX_FILE).exists():
            store._write_file(INDEX_FILE, _dump(empty_index()))
        # oci-layout last: its presence marks a complete, valid layout.
        store._write_file(LAYOUT_FILE, _dump({"imageLayoutVersion": LAYOUT_VERSION}))
        store._release()
        return store

    def _check_version(self) -> None:
        try:
            data = read_regular(self.path / LAYOUT_FILE, 4096, name=LAYOUT_FILE, where=self.name)
            obj = jsonutil.loads(data, what=LAYOUT_FILE)
            version = obj.get("imageLayoutVersion") if isinstance(obj, dict) else None
        except (ValueError, OSError, LimitExceeded):
            version = None
        if not isinstance(version, str) or not version.startswith("1."):
            raise InvalidManifest(f"unsupported {LAYOUT_FILE} (want version 1.x)", where=self.name)

    # --- files -----------------------------------------------------------
    def blob_path(self, digest: Digest | str) -> Path:
        """Where the blob *digest* lives (the digest is validated first)."""
        return self.path / blob_relpath(digest)

    def _check_dir(self, rel: str, st: os.stat_result) -> None:
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{rel} is a symbolic link{_NO_LINKS}", where=self.name)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{rel} is not a directory", where=self.name)

    def _check_boundary(self) -> None:
        """Refuse a layout whose ``blobs`` or ``blobs/ALG`` directory is a symbolic link
        (writing or deleting blobs would happen wherever it points)."""
        blobs = self.path / "blobs"
        try:
            self._check_dir("blobs", os.lstat(blobs))
        except FileNotFoundError:
            return
        with os.scandir(blobs) as it:
            for e in it:
                if e.is_symlink():
                    link = f"blobs/{e.name} is a symbolic link"
                    raise UnsafePath(link + _NO_LINKS, where=self.name)

    def _blob_dir(self, digest: Digest) -> Path:
        """``blobs/ALG``, made when missing; refused when it (or ``blobs``) is not a directory."""
        for rel in ("blobs", f"blobs/{digest.algorithm}"):
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.path / rel, 0o755)
            self._check_dir(rel, os.lstat(self.path / rel))
        return self.path / "blobs" / digest.algorithm

    def blob_files(self) -> Iterator[tuple[Digest, Path, int]]:
        """``(digest, path, size)`` of every regular file in ``blobs/ALG/`` named like a digest.

        Symbolic links and other non-regular files are skipped; a symlinked
        ``blobs`` or ``blobs/ALG`` directory is refused (:class:`UnsafePath`).
        """
        self._check_boundary()
        blobs = self.path / "blobs"
        try:
            algs = sorted(e.name for e in os.scandir(blobs) if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return
        for alg in algs:
            with os.scandir(blobs / alg) as it:
                files = sorted((e.name, e) for e in it)
            for name, e in files:
                text = f"{alg}:{name}"
                if not is_digest(text) or not e.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    yield Digest.parse(text), Path(e.path), e.stat(follow_symlinks=False).st_size

    def _tmp(self) -> tuple[int, str]:
        self._hold_shared()
        return tempfile.mkstemp(prefix=TMP_PREFIX, dir=self.path)

    def _hold_shared(self) -> None:
        """Take the directory's shared lock for this handle (kept until :meth:`close`)."""
        if self._dir_fd is not None:
            return
        with self._lock:
            if self._dir_fd is None:
                fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
                fcntl.flock(fd, fcntl.LOCK_SH)  # waits while gc runs
                self._set_dir_fd(fd)

    def _set_dir_fd(self, fd: int) -> None:
        self._dir_fd = fd
        # A handle dropped without close() lets go of the lock when it is collected.
        self._dir_finalizer = weakref.finalize(self, os.close, fd)

    def _release(self) -> None:
        with self._lock:
            fd, self._dir_fd = self._dir_fd, None
        if fd is not None:
            self._dir_finalizer()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the directory's lock exclusively: no other handle is writing."""
        self._release()
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(
                f"{self.name}: another luff process (or open handle) is writing this layout; "
                "try again when it has finished"
            ) from None
        self._set_dir_fd(fd)
        try:
            yield
        finally:
            self._release()

    def _write_file(self, rel: str, data: bytes) -> None:
        fd, tmp = self._tmp()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path / rel)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _install(self, tmp: str, digest: Digest) -> None:
        dest = self._blob_dir(digest) / digest.hex
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        self._remember_file(digest, dest)

    # --- index.json ------------------------------------------------------
    def read_index(self) -> tuple[dict[str, Any], list[Descriptor]]:
        """The parsed ``index.json`` object and its entries."""
        try:
            data = read_regular(self.path / INDEX_FILE, MAX_INDEX, name=INDEX_FILE, where=self.name)
        except FileNotFoundError:
            raise NotFound(f"no {INDEX_FILE}", where=self.name) from None
        return parse_index(data, self.name)

    def entries(self) -> list[Descriptor]:
        """The manifests listed in ``index.json``, in order."""
        return self.read_index()[1]

    def index_annotations(self) -> dict[str, str]:
        """The annotations of ``index.json`` itself."""
        ann = self.read_index()[0].get("annotations")
        return dict(ann) if isinstance(ann, dict) else {}

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive lock on ``index.json`` (flock; survives its replacement)."""
        index = self.path / INDEX_FILE
        self._hold_shared()  # the directory lock first, always: gc takes them in this order
        with self._index_lock:
            while True:
                try:
                    fd = os.open(index, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except FileNotFoundError:
                    raise NotFound(f"no {INDEX_FILE}", where=self.name) from None
                except OSError as e:
                    if e.errno != errno.ENXIO:  # a socket
                        raise
                    bad = f"{INDEX_FILE} is not a regular file"
                    raise UnsafePath(bad, where=self.name) from None
                mode = os.fstat(fd).st_mode
                if not stat.S_ISREG(mode):
                    os.close(fd)
                    raise not_regular(mode, INDEX_FILE, where=self.name)
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    st, cur = os.fstat(fd), os.stat(index)
                    if (st.st_ino, st.st_dev) == (cur.st_ino, cur.st_dev):
                        break
                except FileNotFoundError:
                    pass
                os.close(fd)  # replaced while we waited: lock the new file
            try:
                yield
            finally:
                os.close(fd)

    def update_index(
        self, change: Callable[[list[Descriptor]], list[Descriptor]]
    ) -> list[Descriptor]:
        """Rewrite ``index.json`` with ``change(entries)`` under the lock; returns the result."""
        with self.locked():
            return self._update_index_locked(change)

    def _update_index_locked(
        self, change: Callable[[list[Descriptor]], list[Descriptor]]
    ) -> list[Descriptor]:
        obj, entries = self.read_index()
        new = change(list(entries))
        obj["manifests"] = [e.to_dict() for e in new]
        obj.setdefault("schemaVersion", 2)
        self._write_file(INDEX_FILE, _dump(obj))
        return new

    def add_entries(self, descs: Iterable[Descriptor]) -> list[Descriptor]:
        """Add entries to ``index.json``.

        An entry whose ref.name already exists replaces that entry; an entry
        without ref.name replaces an unnamed entry of the same digest.
        """
        descs = list(descs)
        return self.update_index(lambda es: _merge(es, descs))

    def remove_entries(self, match: Callable[[Descriptor], bool]) -> list[Descriptor]:
        """Remove the entries for which *match* is true; returns them."""
        removed: list[Descriptor] = []

        def change(entries: list[Descriptor]) -> list[Descriptor]:
            keep: list[Descriptor] = []
            for e in entries:
                (removed if match(e) else keep).append(e)
            return keep

        self.update_index(change)
        return removed

    # --- sparse records ----------------------------------------------------
    def sparse_records(self) -> dict[Digest, str]:
        """Missing-blob digest → the source address it can be fetched from."""
        try:
            data = read_regular(
                self.path / SPARSE_FILE, MAX_INDEX, name=SPARSE_FILE, where=self.name
            )
        except FileNotFoundError:
            return {}
        try:
            obj = jsonutil.loads(data, what=SPARSE_FILE)
            blobs = obj["blobs"]
            assert isinstance(blobs, dict)
            return {Digest.parse(k): str(v) for k, v in blobs.items()}
        except LimitExceeded as e:
            raise LimitExceeded(f"{SPARSE_FILE}: {e.message}", where=self.name) from None
        except (ValueError, KeyError, AssertionError, TypeError, InvalidDigest):
            raise InvalidManifest(f"{SPARSE_FILE} is malformed", where=self.name) from None

    def write_sparse_locked(self, records: dict[Digest, str]) -> None:
        """Replace the sparse records (hold :meth:`locked` while calling this)."""
        if not records:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / SPARSE_FILE)
            return
        obj = {"version": 1, "blobs": {str(k): v for k, v in sorted(records.items())}}
        self._write_file(SPARSE_FILE, _dump(obj))

    def record_sparse(self, records: dict[Digest, str], entries: Iterable[Descriptor] = ()) -> None:
        """Record where missing blobs come from, then add *entries*, in one locked update."""
        entries = list(entries)
        with self.locked():
            cur = self.sparse_records()
            cur.update(records)
            self.write_sparse_locked(cur)
            if entries:
                self._update_index_locked(lambda es: _merge(es, entries))

    def prune_sparse(self, keep: Callable[[Digest], bool]) -> None:
        """Drop sparse records for which *keep* is false."""
        with self.locked():
            cur = self.sparse_records()
            new = {k: v for k, v in cur.items() if keep(k)}
            if new != cur:
                self.write_sparse_locked(new)

    @property
    def address(self) -> str:
        """The ``oci:`` address of this layout (absolute path), to reopen it from anywhere."""
        return f"oci:{self.path.resolve()}"

    def _origin_store(self, address: str) -> Store:
        """The store a sparse record names (opened once per address)."""
        with self._lock:
            store = self._origins.get(address)
        if store is None:
            from luff.context import default_context
            from luff.stores import open_source

            store, _ = open_source(address, self.ctx or default_context())
            with self._lock:
                store = self._origins.setdefault(address, store)
        return store

    def origin(self, desc: Descriptor) -> Store | None:
        if self._present(desc):
            return None
        src = self.sparse_records().get(desc.digest)
        return self._origin_store(src) if src else None

    # --- reading -------------------------------------------------------
    def resolve(self, identifier: str) -> Descriptor:
        entries = self.entries()
        found = find_entry(entries, identifier, self.name)
        if found is not None:
            return found
        d = Digest.parse(identifier)
        where = f"{self.name}@{identifier}"
        try:
            data = read_regular(
                self.blob_path(d), MAX_MANIFEST, follow=False, name=blob_relpath(d), where=where
            )
        except FileNotFoundError:
            raise NotFound("manifest unknown", where=where) from None
        except LimitExceeded:
            raise InvalidManifest("not a manifest (too large)", where=where) from None
        desc = Descriptor("application/octet-stream", d, len(data))
        self.fetch_bytes(desc.with_(data=data))  # verifies the bytes
        with located(where=where):
            return Descriptor(sniff_media_type(data), d, len(data))

    def exists(self, desc: Descriptor) -> bool:
        """True when the blob is here and its content matches its digest.

        A blob is hashed the first time; a later check of the same file (same
        device, inode, size, modification and change times) trusts the record
        in ``luff-verified.json``. A corrupt blob counts as missing (so a copy
        writes it again), with a warning.
        """
        self._hold_shared()  # what exists now must still exist when we reference it
        return self._trusted(desc)

    def fetch_blob(self, digest: Digest) -> BinaryIO:
        """A verified stream of blob *digest* (of the layout, or of a sparse record's source)."""
        try:
            size = os.lstat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            src = self.sparse_records().get(digest)
            if src is None:
                raise NotFound("blob unknown", where=self.name, digest=digest) from None
            store = self._origin_store(src)
            if isinstance(store, BlobFetcher):
                return store.fetch_blob(digest)
            raise NotFound("blob unknown", where=self.name, digest=digest) from None
        return self.fetch(Descriptor("application/octet-stream", digest, size))

    def _present(self, desc: Descriptor) -> bool:
        """Whether the blob is here (a regular file of its size), for reading only (no lock)."""
        try:
            st = os.lstat(self.blob_path(desc.digest))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size == desc.size

    # --- verified blobs ----------------------------------------------------
    def _trusted(self, desc: Descriptor) -> bool:
        path = self.blob_path(desc.digest)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != desc.size:
            return False
        key = _file_key(st)
        with self._lock:
            if self._corrupt.get(desc.digest) == key:
                return False
            if self._verified_new.get(desc.digest) == key:
                return True
        if self._recorded().get(desc.digest) == key:
            return True
        return self._hash_check(path, desc)

    def _hash_check(self, path: Path, desc: Descriptor) -> bool:
        """Hash the blob at *path*; remember a match, warn about (and remember) a mismatch."""
        try:
            f = open_regular(path, follow=False, name=blob_relpath(desc.digest), where=self.name)
        except (FileNotFoundError, UnsafePath):  # replaced meanwhile: not here as a blob
            return False
        with f:
            key = _file_key(os.fstat(f.fileno()))
            h = desc.digest.hasher()
            n = 0
            while chunk := f.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
        with self._lock:
            self.rehashed.append(desc.digest)
            if n == desc.size and h.hexdigest() == desc.digest.hex:
                self._verified_new[desc.digest] = key
                return True
            first = desc.digest not in self._corrupt
            self._corrupt[desc.digest] = key
        if first:
            ctx = self.ctx
            if ctx is None:
                from luff.context import default_context

                ctx = default_context()
            ctx.warn(
                f"{self.name}: blob {desc.digest} is corrupt (its content does not match "
                "its digest); it is not trusted and is written again"
            )
        return False

    def _remember_file(self, digest: Digest, path: Path) -> None:
        """Record the file just written at *path* as verified blob *digest*."""
        key = _file_key(os.lstat(path))
        with self._lock:
            self._verified_new[digest] = key
            self._corrupt.pop(digest, None)

    def _recorded(self) -> dict[Digest, _FileKey]:
        with self._lock:
            if self._verified is None:
                self._verified = self._load_verified()
            return self._verified

    def _load_verified(self) -> dict[Digest, _FileKey]:
        """The record of verified blobs; empty when missing or unreadable (it is only a cache)."""
        try:
            data = read_regular(self.path / VERIFIED_FILE, MAX_INDEX, follow=False)
            obj = jsonutil.loads(data, what=VERIFIED_FILE)
            blobs = obj.get("blobs") if isinstance(obj, dict) and obj.get("version") == 1 else None
        except (OSError, ValueError, LuffError):
            return {}
        out: dict[Digest, _FileKey] = {}
        if not isinstance(blobs, dict):
            return out
        for k, v in blobs.items():
            if isinstance(v, list) and len(v) == 5 and all(type(x) is int for x in v):
                with contextlib.suppress(InvalidDigest):
                    out[Digest.parse(k)] = (v[0], v[1], v[2], v[3], v[4])
        return out

    def _flush_verified(self) -> None:
        """Add what this handle verified or wrote to ``luff-verified.json`` (atomically,
        under the lock, keeping the :data:`MAX_VERIFIED` most recent)."""
        with self._lock:
            new, self._verified_new = self._verified_new, {}
            corrupt = set(self._corrupt) - set(new)
        if not new or not self.remember_verified:
            return
        with contextlib.suppress(LuffError, OSError), self.locked():
            cur = self._load_verified()
            for d in corrupt:
                cur.pop(d, None)
            for d, key in new.items():
                cur.pop(d, None)  # re-inserted last: the most recent
                cur[d] = key
            if len(cur) > MAX_VERIFIED:
                cur = dict(list(cur.items())[-MAX_VERIFIED:])
            obj = {"version": 1, "blobs": {str(d): list(k) for d, k in cur.items()}}
            self._write_file(VERIFIED_FILE, _dump(obj))
            with self._lock:
                self._verified = cur

    def _open(self, desc: Descriptor) -> BinaryIO:
        try:
            return open_regular(
                self.blob_path(desc.digest),
                follow=False,
                name=blob_relpath(desc.digest),
                where=self.name,
            )
        except FileNotFoundError:
            pass
        src = self.sparse_records().get(desc.digest)
        if src:
            return self._origin_store(src)._open(desc)
        raise NotFound(f"blob {desc.digest} is not in the layout", where=self.name)

    def get_manifest(self, identifier: str) -> tuple[Descriptor, Manifest]:
        desc = self.resolve(identifier)
        m = self.fetch_manifest(desc)
        return m.descriptor(annotations=desc.annotations, platform=desc.platform), m

    # --- writing -------------------------------------------------------
    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        if self.exists(desc):
            return
        src: BinaryIO = stream
        if verified_digest(stream) != desc.digest:  # else it already checks itself
            src = VerifyingReader(stream, desc.digest, desc.size)  # type: ignore[assignment]
        fd, tmp = self._tmp()
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                _copy_into(src, f)
            self._install(tmp, desc.digest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def push_blob_unsized(self, media_type: str, stream: BinaryIO) -> Descriptor:
        import hashlib

        h = hashlib.sha256()
        n = 0
        fd, tmp = self._tmp()
        try:
            with os.fdopen(fd, "wb") as f:
                while chunk := stream.read(CHUNK):
                    h.update(chunk)
                    n += len(chunk)
                    f.write(chunk)
            digest = Digest("sha256", h.hexdigest())
            self._install(tmp, digest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return Descriptor(media_type, digest, n)

    def write_manifest(self, manifest: Manifest) -> None:
        """Store a manifest's bytes as a blob, without an ``index.json`` entry."""
        if not self.exists(manifest.descriptor()):
            self._blob_dir(manifest.digest)
            self._write_file(blob_relpath(manifest.digest), manifest.data)
            self._remember_file(manifest.digest, self.blob_path(manifest.digest))

    def referrers(self, subject: Descriptor, artifact_types: Sequence[str] = ()) -> ReferrerList:
        """The manifests reachable from ``index.json`` whose ``subject`` is *subject*."""
        with self._lock:
            known = self._referrers
        if known is None:
            known = scan_referrers(self, self.entries())
            with self._lock:
                self._referrers = known
        found = tuple(known.get(subject.digest, ()))
        return ReferrerList(subject.digest, found, "layout").of_types(artifact_types)

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        self.write_manifest(manifest)
        with self._lock:
            self._written[manifest.digest] = manifest
            if self._referrers is not None and manifest.subject is not None:
                entry = referrer_descriptor(manifest)
                found = self._referrers.setdefault(manifest.subject.digest, [])
                if entry not in found:
                    found.append(entry)
        desc = manifest.descriptor()
        if tag:
            self.tag(desc, tag)
        return desc

    def entry_for(self, desc: Descriptor, manifest: Manifest | None = None) -> Descriptor:
        """*desc* as an index.json entry: with a platform from the config when known."""
        if desc.platform is not None or not mt.is_image_manifest(desc.media_type):
            return desc
        try:
            m = manifest or self.fetch_manifest(desc)
            if self.blob_path(m.config.digest).is_file():
                plat = platform_of_config(self.fetch_bytes(m.config, limit=MAX_MANIFEST * 4))
                if plat is not None:
                    return desc.with_(platform=plat)
        except (LuffError, OSError):
            pass
        return desc

    def tag(self, desc: Descriptor, tag: str) -> None:
        """Add or replace the entry whose ref.name is *tag*."""
        if not self.exists(desc):
            raise NotFound(f"manifest {desc.digest} is not in the layout", where=self.name)
        entry = self.entry_for(desc.with_(data=None))
        self.add_entries([entry.with_(annotations={**entry.annotations, mt.REF_NAME: tag})])

    def tags(self) -> list[str]:
        return sorted({ref_name(e) for e in self.entries() if ref_name(e)})

    def read_tag(self, tag: str) -> tuple[Descriptor, Manifest, str] | None:
        """The entry named *tag*, its manifest, and its digest as the version token."""
        try:
            desc, m = self.get_manifest(tag)
        except NotFound:
            return None
        return desc, m, str(desc.digest)

    def push_manifest_if(self, manifest: Manifest, tag: str, token: str | None) -> Descriptor:
        """Point the entry *tag* at *manifest*, if it is at *token* (under the index lock)."""
        self.write_manifest(manifest)
        entry = self.entry_for(manifest.descriptor(), manifest)
        entry = entry.with_(annotations={**entry.annotations, mt.REF_NAME: tag})

        def change(entries: list[Descriptor]) -> list[Descriptor]:
            now = next((e for e in entries if ref_name(e) == tag), None)
            if (str(now.digest) if now else None) != token:
                raise PreconditionFailed(
                    f"the tag moved (to {now.digest if now else 'nothing'})",
                    412,
                    where=f"{self.name}:{tag}",
                )
            return _merge(entries, [entry])

        self.update_index(change)
        return manifest.descriptor()

    def enforces_conditions(self, probe: Manifest | None = None) -> bool:
        """Always: the check and the update hold the ``index.json`` lock together."""
        return True

    def delete(self, identifier: str) -> None:
        """Remove the index.json entries of a digest, or of a ref.name's digest
        (blobs stay until ``gc``)."""
        d = Digest.parse(identifier) if is_digest(identifier) else self.resolve(identifier).digest
        if not self.remove_entries(lambda e: e.digest == d):
            raise NotFound("no such entry", where=f"{self.name}@{d}")

    def untag(self, tag: str) -> None:
        """Remove the entry whose ref.name is *tag* (its blobs stay until ``gc``)."""
        if not self.remove_entries(lambda e: ref_name(e) == tag):
            raise NotFound("no such entry", where=f"{self.name}:{tag}")

    def close(self) -> None:
        """Add untagged root manifests written through this handle to ``index.json``."""
        try:
            with self._lock:
                written = dict(self._written)
                self._written.clear()
            if not written:
                return
            children = {c.digest for m in written.values() for c in m.children()}
            roots = [m for d, m in written.items() if d not in children]
            if not roots:
                return
            have = {e.digest for e in self.entries()}
            new = [self.entry_for(m.descriptor(), m) for m in roots if m.digest not in have]
            if new:
                self.update_index(lambda es: _merge(es, new, only_new=True))
        finally:
            self._flush_verified()
            self._release()

    def abort(self) -> None:
        with self._lock:
            self._written.clear()
        try:
            self._flush_verified()  # what was verified stays true
        finally:
            self._release()

    # --- maintenance -------------------------------------------------------
    def reachable(
        self, roots: Iterable[Descriptor] | None = None, *, subjects: bool = True
    ) -> tuple[set[Digest], dict[Digest, Descriptor]]:
        """Digests reachable from *roots* (default: ``index.json``): ``(present, {missing: desc})``.

        With *subjects*, a manifest's ``subject`` is followed too when it is present.
        """
        present: set[Digest] = set()
        missing: dict[Digest, Descriptor] = {}
        todo = list(self.entries() if roots is None else roots)
        while todo:
            d = todo.pop()
            if d.digest in present or d.digest in missing:
                continue
            if not self._present(d):
                missing[d.digest] = d
                continue
            present.add(d.digest)
            if mt.is_manifest(d.media_type):
                m = self.fetch_manifest(d)
                todo.extend(m.children())
                if subjects and m.subject is not None and self._present(m.subject):
                    todo.append(m.subject)
        return present, missing

    def stale_temporaries(self, age: float = 3600.0) -> list[Path]:
        """Temporary files left by interrupted writes, older than *age* seconds."""
        now = time.time()
        out = []
        for p in self.path.glob(TMP_PREFIX + "*"):
            with contextlib.suppress(FileNotFoundError):
                if now - p.stat().st_mtime > age:
                    out.append(p)
        return out


def _merge(
    entries: list[Descriptor], new: list[Descriptor], only_new: bool = False
) -> list[Descriptor]:
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


def _dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _copy_into(src: BinaryIO, f: Any) -> None:
    """Write *src* to the unbuffered file *f*, read into one reused buffer when it can."""
    buf = memoryview(bytearray(CHUNK))
    first = readinto(src, buf)
    if first is None:
        while chunk := src.read(CHUNK):
            f.write(chunk)
        return
    n = first
    while n:
        view = buf[:n]
        while view:  # a raw write may be short
            view = view[f.write(view) :]
        n = src.readinto(buf)  # type: ignore[attr-defined]
