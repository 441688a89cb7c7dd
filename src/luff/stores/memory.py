"""Stores in memory: a read-write :class:`MemoryStore`, and :class:`OverlayStore` for built content.

An :class:`OverlayStore` holds manifests that luff made (a built, edited or
mutated index, new configs) and serves every other digest from the store
that provided it, so that writing the result anywhere is an ordinary copy.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from typing import BinaryIO

from luff.errors import NotFound, UsageError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, is_digest, verify_bytes
from luff.model.manifest import Manifest
from luff.stores.base import Store


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
        with self._lock:
            return sorted(self.tag_map)

    def delete(self, identifier: str) -> None:
        d = self.resolve(identifier).digest
        with self._lock:
            self.manifests.pop(d, None)
            for t in [t for t, v in self.tag_map.items() if v == d]:
                del self.tag_map[t]

    def untag(self, tag: str) -> None:
        with self._lock:
            if self.tag_map.pop(tag, None) is None:
                raise NotFound("manifest unknown", where=f"{self.name}:{tag}")

    def referrers(
        self, subject: Descriptor, artifact_types: Iterable[str] = ()
    ) -> list[Descriptor]:
        """Manifests held here whose ``subject`` is *subject*."""
        from luff.model.referrers import referrer_descriptor

        types = set(artifact_types)
        with self._lock:
            held = list(self.manifests.values())
        out = []
        for m in held:
            s = m.subject
            if s is not None and s.digest == subject.digest:
                d = referrer_descriptor(m)
                if not types or d.artifact_type in types:
                    out.append(d)
        return out


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

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        raise UsageError(f"{self.name} is read-only")

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        raise UsageError(f"{self.name} is read-only")
