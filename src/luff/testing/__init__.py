"""Helpers for tests: random images and indexes (and, with the server, registries)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from dataclasses import dataclass, field

from luff.context import Context
from luff.copy import copy_graph
from luff.model import mediatypes as mt
from luff.model.address import parse_address
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.stores import open_target
from luff.stores.memory import MemoryStore
from luff.testing.registry import Registry

__all__ = ["Image", "Registry", "random_image", "random_index", "random_layer"]


@dataclass
class Image:
    """An image or index held in a :class:`MemoryStore`."""

    descriptor: Descriptor
    manifest: Manifest
    store: MemoryStore
    children: list[Image] = field(default_factory=list)

    @property
    def digest(self) -> Digest:
        """The digest of the image's (or index's) manifest."""
        return self.descriptor.digest

    def push(self, address: str, ctx: Context | None = None) -> Descriptor:
        """Copy this image (with all its content) to *address* and tag it."""
        addr = parse_address(address)
        with open_target(addr, ctx) as dst:
            tag = addr.target_tag()
            tags = [tag] if tag else []
            return copy_graph(
                self.store, self.descriptor, dst, manifest=self.manifest, tags=tags, ctx=ctx
            )


def random_layer(size: int, *, seed: bytes | None = None) -> tuple[bytes, str]:
    """A gzipped tar holding one file of *size* random bytes; returns ``(blob, diff_id)``."""
    payload = os.urandom(size) if seed is None else (seed * (size // max(1, len(seed)) + 1))[:size]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/{Digest.of(payload).short}.bin")
        info.size = len(payload)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    diff_id = str(Digest.of(tar_bytes))
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), diff_id


def random_image(
    platform: Platform | str = "linux/amd64",
    *,
    layers: int = 1,
    size: int = 1024,
    media: str = "oci",
    store: MemoryStore | None = None,
    annotations: dict[str, str] | None = None,
) -> Image:
    """A random image of *layers* layers of about *size* bytes each (``media``: oci|docker)."""
    plat = Platform.parse(platform) if isinstance(platform, str) else platform
    store = store if store is not None else MemoryStore()
    docker = media == "docker"
    layer_descs = []
    diff_ids = []
    for _ in range(layers):
        blob, diff_id = random_layer(size)
        layer_descs.append(
            store.add_blob(blob, mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP)
        )
        diff_ids.append(diff_id)
    cfg: dict[str, object] = {
        "architecture": plat.architecture,
        "os": plat.os,
        "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "luff.testing"}] * layers,
    }
    if plat.variant:
        cfg["variant"] = plat.variant
    if plat.os_version:
        cfg["os.version"] = plat.os_version
    if plat.os_features:
        cfg["os.features"] = list(plat.os_features)
    config_desc = store.add_blob(
        json.dumps(cfg, indent=2).encode(), mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG
    )
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        "config": config_desc.to_dict(),
        "layers": [d.to_dict() for d in layer_descs],
    }
    if annotations:
        body["annotations"] = dict(annotations)
    m = Manifest.from_dict(body)
    store.push_manifest(m)
    return Image(m.descriptor(platform=plat), m, store)


def random_index(
    platforms: list[str] | tuple[str, ...] = ("linux/amd64", "linux/arm64"),
    *,
    layers: int = 1,
    size: int = 1024,
    media: str = "oci",
) -> Image:
    """An index of one random image per platform, all in one memory store."""
    store = MemoryStore()
    children = [
        random_image(p, layers=layers, size=size, media=media, store=store) for p in platforms
    ]
    body = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_LIST if media == "docker" else mt.OCI_INDEX,
        "manifests": [c.descriptor.to_dict() for c in children],
    }
    m = Manifest.from_dict(body)
    store.push_manifest(m)
    return Image(m.descriptor(), m, store, children)
