"""OCI image layouts on disk: ``oci-layout``, ``index.json`` and ``blobs/ALG/HEX``.

The store itself (:class:`LayoutStore`): opening and creating a layout,
reading, writing blobs and manifests, tags, referrers and conditional tag
writes. It composes the helpers of its other concerns:

- :mod:`luff.stores.layout_dir`: the directory: digests re-validated before
  they become paths, temporary files renamed into place, symlinked ``blobs``
  directories refused, the directory ``flock`` a writing handle holds
  shared and ``gc`` exclusively (so it never deletes a blob that a running
  writer has written, or counted on, but not yet referenced);
- :mod:`luff.stores.layout_index`: ``index.json``: parsing, entries, and
  the exclusive ``flock`` every rewrite holds, so concurrent writers all land;
- :mod:`luff.stores.layout_verified`: blobs already in the layout are hashed
  before a write counts on them, remembered in ``luff-verified.json``;
- :mod:`luff.stores.layout_sparse`: ``luff-sparse.json``, the source each
  blob missing from a *sparse* layout can be fetched from.

``oci-layout``, ``index.json``, ``luff-sparse.json`` and blobs are opened
without blocking and must be regular files (a FIFO would hang a reader); a
blob file that is a symbolic link is neither read nor trusted (a write
replaces the link). Blobs are written before the manifests that point at
them, and manifests before ``index.json``, so an interrupted write leaves a
valid layout.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from luff.errors import (
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
from luff.model.digest import Digest, VerifyingReader, is_digest, verified_digest
from luff.model.manifest import MAX_MANIFEST, Manifest, sniff_media_type
from luff.model.referrers import ReferrerList, referrer_descriptor
from luff.stores.base import BlobFetcher, Store, scan_referrers
from luff.stores.files import not_regular, open_regular, read_regular
from luff.stores.layout_dir import CHUNK, TMP_PREFIX, LayoutDir, blob_relpath, copy_into
from luff.stores.layout_index import (
    INDEX_FILE,
    MAX_INDEX,
    empty_index,
    find_entry,
    lock_index,
    merge_entries,
    parse_index,
    platform_of_config,
    read_index,
    ref_name,
)
from luff.stores.layout_sparse import SPARSE_FILE, read_sparse, write_sparse
from luff.stores.layout_verified import MAX_VERIFIED, VERIFIED_FILE, VerifiedBlobs

if TYPE_CHECKING:
    from luff.context import Context
    from luff.model.address import Address

__all__ = [
    "CHUNK",
    "INDEX_FILE",
    "LAYOUT_FILE",
    "LAYOUT_VERSION",
    "MAX_INDEX",
    "MAX_VERIFIED",
    "SPARSE_FILE",
    "TMP_PREFIX",
    "VERIFIED_FILE",
    "LayoutStore",
    "blob_relpath",
    "empty_index",
    "find_entry",
    "parse_index",
    "platform_of_config",
    "ref_name",
]

LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = "1.0.0"


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
        self._dir = LayoutDir(self.path)
        self._verified = VerifiedBlobs(self.path)
        self._written: dict[Digest, Manifest] = {}
        self._origins: dict[str, Store] = {}
        self._referrers: dict[Digest, list[Descriptor]] | None = None

    @property
    def rehashed(self) -> list[Digest]:
        """Blobs already in the layout that this handle hashed to check them."""
        return self._verified.rehashed

    @property
    def remember_verified(self) -> bool:
        """Keep ``luff-verified.json`` (off for a staging layout that is thrown away)."""
        return self._verified.remember

    @remember_verified.setter
    def remember_verified(self, value: bool) -> None:
        self._verified.remember = value

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
            store._dir.check_boundary(store.name)
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
            store._dir.write_json(INDEX_FILE, empty_index())
        # oci-layout last: its presence marks a complete, valid layout.
        store._dir.write_json(LAYOUT_FILE, {"imageLayoutVersion": LAYOUT_VERSION})
        store._dir.release()
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

    def _write_blob(self, fill: Callable[[BinaryIO], Digest]) -> Digest:
        """Write a blob with *fill* (see :meth:`LayoutDir.write_blob`), remembered as verified."""
        digest = self._dir.write_blob(fill, self.name)
        self._verified.remember_file(digest, self.blob_path(digest))
        return digest

    # --- index.json ------------------------------------------------------
    def read_index(self) -> tuple[dict[str, Any], list[Descriptor]]:
        """The parsed ``index.json`` object and its entries."""
        return read_index(self.path, self.name)

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
        self._dir.hold_shared()  # the directory lock first, always: gc takes them in this order
        with self._index_lock, lock_index(self.path, self.name):
            yield

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
        self._dir.write_json(INDEX_FILE, obj)
        return new

    def add_entries(self, descs: Iterable[Descriptor]) -> list[Descriptor]:
        """Add entries to ``index.json``.

        An entry whose ref.name already exists replaces that entry; an entry
        without ref.name replaces an unnamed entry of the same digest.
        """
        descs = list(descs)
        return self.update_index(lambda es: merge_entries(es, descs))

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
        return read_sparse(self.path, self.name)

    def write_sparse_locked(self, records: dict[Digest, str]) -> None:
        """Replace the sparse records (hold :meth:`locked` while calling this)."""
        write_sparse(self._dir, records)

    def record_sparse(self, records: dict[Digest, str], entries: Iterable[Descriptor] = ()) -> None:
        """Record where missing blobs come from, then add *entries*, in one locked update."""
        entries = list(entries)
        with self.locked():
            cur = self.sparse_records()
            cur.update(records)
            self.write_sparse_locked(cur)
            if entries:
                self._update_index_locked(lambda es: merge_entries(es, entries))

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
        self._dir.hold_shared()  # what exists now must still exist when we reference it
        path = self.blob_path(desc.digest)
        return self._verified.trusted(desc, path, where=self.name, ctx=self.ctx)

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

    # --- writing -------------------------------------------------------
    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        if self.exists(desc):
            return
        src: BinaryIO = stream
        if verified_digest(stream) != desc.digest:  # else it already checks itself
            src = VerifyingReader(stream, desc.digest, desc.size)  # type: ignore[assignment]

        def fill(f: BinaryIO) -> Digest:
            copy_into(src, f)
            return desc.digest

        self._write_blob(fill)

    def push_blob_unsized(self, media_type: str, stream: BinaryIO) -> Descriptor:
        import hashlib

        h = hashlib.sha256()
        n = 0

        def fill(f: BinaryIO) -> Digest:
            nonlocal n
            while chunk := stream.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
                f.write(chunk)
            return Digest("sha256", h.hexdigest())

        digest = self._write_blob(fill)
        return Descriptor(media_type, digest, n)

    def write_manifest(self, manifest: Manifest) -> None:
        """Store a manifest's bytes as a blob, without an ``index.json`` entry."""
        if not self.exists(manifest.descriptor()):

            def fill(f: BinaryIO) -> Digest:
                f.write(manifest.data)
                return manifest.digest

            self._write_blob(fill)

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
            return merge_entries(entries, [entry])

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

    def _flush_verified(self) -> None:
        self._verified.flush(self.locked, self._dir.write_json)

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
                self.update_index(lambda es: merge_entries(es, new, only_new=True))
        finally:
            self._flush_verified()
            self._dir.release()

    def abort(self) -> None:
        with self._lock:
            self._written.clear()
        try:
            self._flush_verified()  # what was verified stays true
        finally:
            self._dir.release()

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

    def blob_files(self) -> Iterator[tuple[Digest, Path, int]]:
        """``(digest, path, size)`` of every blob file (see :meth:`LayoutDir.blob_files`)."""
        return self._dir.blob_files(self.name)

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Hold the directory's lock exclusively: no other handle is writing."""
        return self._dir.exclusive(self.name)

    def stale_temporaries(self, age: float = 3600.0) -> list[Path]:
        """Temporary files left by interrupted writes, older than *age* seconds."""
        return self._dir.stale_temporaries(age)
