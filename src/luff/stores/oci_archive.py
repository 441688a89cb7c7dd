"""``oci-archive``: a tar of an OCI image layout.

Reading uses the tarball in place; writing stages a layout in a temporary
directory beside the target and builds the tarball on :meth:`Store.close`
(temporary name, then rename); an existing archive at the path is replaced.
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from luff.errors import (
    DigestMismatch,
    InvalidManifest,
    NotFound,
    UsageError,
    located,
)
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.referrers import ReferrerList
from luff.stores.base import scan_referrers
from luff.stores.layout import (
    INDEX_FILE,
    LAYOUT_FILE,
    LayoutStore,
    blob_relpath,
    find_entry,
    parse_index,
)

if TYPE_CHECKING:
    pass
from luff.stores.tarball import (
    ArchiveStore,
    SafeTar,
    staging_dir,
    write_tar,
)

# --- oci-archive ------------------------------------------------------------------


class OciArchiveStore(ArchiveStore):
    """A tar of an OCI image layout (``oci-archive:FILE[:TAG]``)."""

    path: Path

    @classmethod
    def open(cls, path: str | os.PathLike[str], write: bool = False) -> OciArchiveStore:
        """Open *path* for reading, or (``write``) stage a new archive written on close."""
        if write:
            return _OciArchiveWriter(Path(path))
        return _OciArchiveReader(Path(path))

    def entries(self) -> list[Descriptor]:
        """The manifests listed in the archive's ``index.json``."""
        raise NotImplementedError


class _OciArchiveReader(OciArchiveStore):
    def __init__(self, path: Path, tar: SafeTar | None = None) -> None:
        self.path = path
        self.name = f"oci-archive:{path}"
        self.tar = tar or SafeTar(path)
        if not self.tar.has(LAYOUT_FILE) or not self.tar.has(INDEX_FILE):
            raise InvalidManifest("not an OCI layout archive (no oci-layout)", where=self.name)
        self._index, self._entries = parse_index(self.tar.read(INDEX_FILE), self.name)
        self._referrers: dict[Digest, list[Descriptor]] | None = None

    def entries(self) -> list[Descriptor]:
        return list(self._entries)

    def index_annotations(self) -> dict[str, str]:
        ann = self._index.get("annotations")
        return dict(ann) if isinstance(ann, dict) else {}

    def referrers(self, subject: Descriptor, artifact_types: Sequence[str] = ()) -> ReferrerList:
        """The manifests reachable from the archive's ``index.json`` whose subject is *subject*."""
        if self._referrers is None:
            self._referrers = scan_referrers(self, self._entries)
        found = tuple(self._referrers.get(subject.digest, ()))
        return ReferrerList(subject.digest, found, "layout").of_types(artifact_types)

    def resolve(self, identifier: str) -> Descriptor:
        found = find_entry(self._entries, identifier, self.name)
        if found is not None:
            return found
        d = Digest.parse(identifier)
        rel = blob_relpath(d)
        if not self.tar.has(rel):
            raise NotFound("manifest unknown", where=f"{self.name}@{identifier}")
        data = self.tar.read(rel)
        with located(where=f"{self.name}@{identifier}"):
            m = Manifest.parse(data)
        if m.digest != d:
            raise DigestMismatch(f"blob {d} does not match its digest", where=self.name)
        return m.descriptor()

    def exists(self, desc: Descriptor) -> bool:
        rel = blob_relpath(desc.digest)
        return self.tar.has(rel) and self.tar.size(rel) == desc.size

    def _open(self, desc: Descriptor) -> BinaryIO:
        rel = blob_relpath(desc.digest)
        if not self.tar.has(rel):
            raise NotFound(f"blob {desc.digest} is not in the archive", where=self.name)
        return self.tar.open(rel)

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        raise UsageError("opened for reading", where=self.name)

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        raise UsageError("opened for reading", where=self.name)

    def tags(self) -> list[str]:
        return sorted({e.annotations.get(mt.REF_NAME, "") for e in self._entries} - {""})

    def close(self) -> None:
        self.tar.close()


class _OciArchiveWriter(OciArchiveStore):
    """Stages a layout beside the target; :meth:`close` tars it up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"oci-archive:{path}"
        self._dir = staging_dir(path)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self.layout = LayoutStore.init(self._dir / "layout")
        self.layout.name = self.name
        self.layout.remember_verified = False  # thrown away after the tarball is written
        self._closed = False

    def entries(self) -> list[Descriptor]:
        return self.layout.entries()

    def index_annotations(self) -> dict[str, str]:
        return self.layout.index_annotations()

    def referrers(self, subject: Descriptor, artifact_types: Sequence[str] = ()) -> ReferrerList:
        return self.layout.referrers(subject, artifact_types)

    def resolve(self, identifier: str) -> Descriptor:
        return self.layout.resolve(identifier)

    def get_manifest(self, identifier: str) -> tuple[Descriptor, Manifest]:
        return self.layout.get_manifest(identifier)

    def exists(self, desc: Descriptor) -> bool:
        return self.layout.exists(desc)

    def _open(self, desc: Descriptor) -> BinaryIO:
        return self.layout._open(desc)

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        self.layout.push_blob(desc, stream)

    def push_blob_unsized(self, media_type: str, stream: BinaryIO) -> Descriptor:
        return self.layout.push_blob_unsized(media_type, stream)

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        return self.layout.push_manifest(manifest, tag)

    def tag(self, desc: Descriptor, tag: str) -> None:
        self.layout.tag(desc, tag)

    def tags(self) -> list[str]:
        return self.layout.tags()

    def delete(self, identifier: str) -> None:
        self.layout.delete(identifier)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.layout.close()
            root = self.layout.path
            present, _ = self.layout.reachable()
            members: list[tuple[str, Path | bytes]] = [
                (LAYOUT_FILE, root / LAYOUT_FILE),
                (INDEX_FILE, root / INDEX_FILE),
            ]
            members += [(blob_relpath(d), root / blob_relpath(d)) for d in sorted(present)]
            write_tar(self.path, members)
        finally:
            self.layout.abort()  # lets go of the staging layout's lock
            self._cleanup()

    def abort(self) -> None:
        self._closed = True
        self.layout.abort()
        self._cleanup()
