"""Stores in memory: a read-write :class:`MemoryStore`, and :class:`OverlayStore` for built content.

An :class:`OverlayStore` holds manifests that luff made (a built, edited or
mutated index, new configs) and serves every other digest from the store
that provided it, so that writing the result anywhere is an ordinary copy.
"""

from __future__ import annotations

import io
import os
import stat
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO

from luff.errors import NotFound, PreconditionFailed, UsageError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, is_digest, verify_bytes
from luff.model.manifest import Manifest
from luff.model.referrers import ReferrerList, referrer_descriptor
from luff.stores.base import ReferrerLister, Store

if TYPE_CHECKING:
    from pathlib import Path


class MemoryStore(Store):
    """Blobs and manifests in dictionaries; safe to use from several threads."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.blobs: dict[Digest, bytes] = {}
        self.manifests: dict[Digest, Manifest] = {}
        self.tag_map: dict[str, Digest] = {}
        self._lock = threading.Lock()

    def resolve(self, identifier: str) -> Descriptor:
        with self._lock:
            if is_digest(identifier):
                d = Digest.parse(identifier)
            elif identifier in self.tag_map:
                d = self.tag_map[identifier]
            else:
                raise NotFound("manifest unknown", where=f"{self.name}:{identifier}")
            m = self.manifests.get(d)
        if m is None:
            raise NotFound("manifest unknown", where=f"{self.name}@{identifier}")
        return m.descriptor()

    def exists(self, desc: Descriptor) -> bool:
        with self._lock:
            return desc.digest in self.blobs or desc.digest in self.manifests

    def _open(self, desc: Descriptor) -> BinaryIO:
        with self._lock:
            if desc.digest in self.manifests:
                return io.BytesIO(self.manifests[desc.digest].data)
            if desc.digest in self.blobs:
                return io.BytesIO(self.blobs[desc.digest])
        raise NotFound("blob unknown", where=self.name, digest=desc.digest)

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        data = stream.read()
        verify_bytes(data, desc.digest, desc.size)
        with self._lock:
            self.blobs[desc.digest] = data

    def add_blob(self, data: bytes, media_type: str = mt.OCI_LAYER_GZIP) -> Descriptor:
        """Store *data* and return its descriptor."""
        desc = Descriptor.for_bytes(media_type, data)
        with self._lock:
            self.blobs[desc.digest] = data
        return desc

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        with self._lock:
            self.manifests[manifest.digest] = manifest
            if tag:
                self.tag_map[tag] = manifest.digest
        return manifest.descriptor()

    def tags(self) -> list[str]:
        """The tags this store holds, sorted."""
        with self._lock:
            return sorted(self.tag_map)

    def delete(self, identifier: str) -> None:
        """Delete the manifest named by a tag or digest (and the tags pointing at it)."""
        d = self.resolve(identifier).digest
        with self._lock:
            self.manifests.pop(d, None)
            for t in [t for t, v in self.tag_map.items() if v == d]:
                del self.tag_map[t]

    def read_tag(self, tag: str) -> tuple[Descriptor, Manifest, str] | None:
        """What *tag* points at, with its digest as the version token."""
        with self._lock:
            d = self.tag_map.get(tag)
            m = self.manifests.get(d) if d is not None else None
        return (m.descriptor(), m, str(m.digest)) if m is not None else None

    def push_manifest_if(self, manifest: Manifest, tag: str, token: str | None) -> Descriptor:
        """Point *tag* at *manifest* if it is at *token* (checked and set under one lock)."""
        with self._lock:
            now = self.tag_map.get(tag)
            if (str(now) if now else None) != token:
                raise PreconditionFailed(
                    f"the tag moved (to {now or 'nothing'})", 412, where=f"{self.name}:{tag}"
                )
            self.manifests[manifest.digest] = manifest
            self.tag_map[tag] = manifest.digest
        return manifest.descriptor()

    def enforces_conditions(self, probe: Manifest | None = None) -> bool:
        """Always: one lock holds the check and the update together."""
        return True

    def untag(self, tag: str) -> None:
        """Remove *tag*; the manifest stays."""
        with self._lock:
            if self.tag_map.pop(tag, None) is None:
                raise NotFound("manifest unknown", where=f"{self.name}:{tag}")

    def referrers(self, subject: Descriptor, artifact_types: Sequence[str] = ()) -> ReferrerList:
        """Manifests held here whose ``subject`` is *subject*."""
        with self._lock:
            held = list(self.manifests.values())
        found = tuple(
            referrer_descriptor(m)
            for m in held
            if m.subject is not None and m.subject.digest == subject.digest
        )
        return ReferrerList(subject.digest, found, "memory").of_types(artifact_types)


class OverlayStore(Store):
    """Read-only: manifests made by luff, over the stores that provide everything else.

    ``provide(digest, store)`` says which store serves a digest; a manifest
    fetched through the overlay makes its store the provider of what it
    points at, so a whole graph can be read from the top. ``origin`` tells
    the copy engine where content really is (for cross-repository mounts).
    """

    def __init__(self, name: str = "built") -> None:
        self.name = name
        self.manifests: dict[Digest, Manifest] = {}
        self.blobs: dict[Digest, bytes] = {}
        self._providers: dict[Digest, Store] = {}
        self._fetched: dict[Digest, Manifest] = {}  # providers' manifests read already
        self._lock = threading.Lock()

    def add(self, manifest: Manifest) -> Descriptor:
        """Hold *manifest* (made here); returns its descriptor."""
        with self._lock:
            self.manifests[manifest.digest] = manifest
        return manifest.descriptor()

    def add_blob(self, data: bytes, media_type: str) -> Descriptor:
        """Hold a small blob made here (a config); returns its descriptor."""
        desc = Descriptor.for_bytes(media_type, data)
        with self._lock:
            self.blobs[desc.digest] = data
        return desc

    def provide(self, digest: Digest, store: Store, manifest: Manifest | None = None) -> None:
        """Serve *digest* (and, once fetched, what it points at) from *store*.

        *manifest*, when given, is the content of *digest* already read from
        *store*: it is not fetched again.
        """
        with self._lock:
            self._providers.setdefault(digest, store)
            if manifest is not None and manifest.digest == digest:
                self._fetched.setdefault(digest, manifest)

    def origin(self, desc: Descriptor) -> Store | None:
        with self._lock:
            if desc.digest in self.manifests or desc.digest in self.blobs:
                return None
            return self._providers.get(desc.digest)

    def _provider(self, desc: Descriptor) -> Store:
        with self._lock:
            store = self._providers.get(desc.digest)
        if store is None:
            raise NotFound("no source provides this content", where=self.name, digest=desc.digest)
        return store

    def resolve(self, identifier: str) -> Descriptor:
        if is_digest(identifier):
            d = Digest.parse(identifier)
            with self._lock:
                m = self.manifests.get(d)
            if m is not None:
                return m.descriptor()
            return self._provider(Descriptor(mt.OCI_MANIFEST, d, 0)).resolve(identifier)
        raise NotFound("a built index has no tags", where=f"{self.name}:{identifier}")

    def exists(self, desc: Descriptor) -> bool:
        with self._lock:
            return (
                desc.digest in self.manifests
                or desc.digest in self.blobs
                or desc.digest in self._providers
            )

    def _open(self, desc: Descriptor) -> BinaryIO:
        with self._lock:
            m = self.manifests.get(desc.digest)
            b = self.blobs.get(desc.digest)
        if m is not None:
            return io.BytesIO(m.data)
        if b is not None:
            return io.BytesIO(b)
        return self._provider(desc)._open(desc)

    def fetch_manifest(self, desc: Descriptor) -> Manifest:
        with self._lock:
            m = self.manifests.get(desc.digest)
            known = self._fetched.get(desc.digest)
        if m is None:
            store = self._provider(desc)
            if known is not None and known.media_type == desc.media_type:
                m = known
            else:
                m = store.fetch_manifest(desc)
        else:
            store = self
        self._provide_children(m, store)
        return m

    def _provide_children(self, m: Manifest, store: Store) -> None:
        if store is self:
            return
        with self._lock:
            for c in (*m.children(), *([m.subject] if m.subject is not None else [])):
                self._providers.setdefault(c.digest, store)

    def referrers(self, subject: Descriptor, artifact_types: Sequence[str] = ()) -> ReferrerList:
        """The referrers the provider of *subject* knows; none for what was made here."""
        with self._lock:
            ours = subject.digest in self.manifests
            store = self._providers.get(subject.digest)
        if ours or store is None or not isinstance(store, ReferrerLister):
            return ReferrerList(subject.digest, (), "built")
        return store.referrers(subject, artifact_types)

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        raise UsageError(f"{self.name} is read-only")

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        raise UsageError(f"{self.name} is read-only")


class FileBlobs(Store):
    """Read-only: blobs that are local files (what ``attach`` uploads), hashed when added."""

    def __init__(self, name: str = "files") -> None:
        self.name = name
        self._files: dict[Digest, Path] = {}

    def add_file(self, path: str | os.PathLike[str], media_type: str) -> Descriptor:
        """Hash the regular file at *path* and serve it; returns its descriptor."""
        from pathlib import Path

        p = Path(path)
        try:
            st = p.stat()
        except OSError as e:
            raise UsageError(f"cannot read the file: {e.strerror}", where=str(path)) from None
        if not stat.S_ISREG(st.st_mode):
            raise UsageError("not a regular file", where=str(path))
        import hashlib

        h = hashlib.sha256()
        n = 0
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                n += len(chunk)
        desc = Descriptor(media_type, Digest("sha256", h.hexdigest()), n)
        self._files[desc.digest] = p
        return desc

    def resolve(self, identifier: str) -> Descriptor:
        raise NotFound("files have no tags", where=f"{self.name}:{identifier}")

    def exists(self, desc: Descriptor) -> bool:
        return desc.digest in self._files

    def _open(self, desc: Descriptor) -> BinaryIO:
        path = self._files.get(desc.digest)
        if path is None:
            raise NotFound("no such file", where=self.name, digest=desc.digest)
        return open(path, "rb")

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        raise UsageError(f"{self.name} is read-only")

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        raise UsageError(f"{self.name} is read-only")
