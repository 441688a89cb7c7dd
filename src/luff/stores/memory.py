"""A store that keeps everything in memory (tests, staging, building indexes)."""

from __future__ import annotations

import io
import threading
from typing import BinaryIO

from luff.errors import NotFound
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
                raise NotFound(f"{self.name}:{identifier}: manifest unknown")
            m = self.manifests.get(d)
        if m is None:
            raise NotFound(f"{self.name}@{identifier}: manifest unknown")
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
        raise NotFound(f"{self.name}: blob {desc.digest} unknown")

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
        with self._lock:
            if is_digest(identifier):
                d = Digest.parse(identifier)
                if self.manifests.pop(d, None) is None:
                    raise NotFound(f"{self.name}@{identifier}: manifest unknown")
                for t in [t for t, v in self.tag_map.items() if v == d]:
                    del self.tag_map[t]
            elif self.tag_map.pop(identifier, None) is None:
                raise NotFound(f"{self.name}:{identifier}: manifest unknown")

    def trusts_manifest_closure(self) -> bool:
        return False
