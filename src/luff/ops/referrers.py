"""Referrers: list what is attached to an image (signatures, SBOMs), attach an artifact.

Listing asks the store that holds the image: a registry's referrers API
(or its ``sha256-<hex>`` tag-schema index where it has none), or the
manifests a layout holds. Attaching builds an OCI 1.1 artifact manifest
(empty config, the files as layers, ``subject`` = the image) in memory and
writes it with the copy engine, like everything luff writes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from luff.context import Context, default_context
from luff.copy import Plan, Progress, copy_graph
from luff.errors import UsageError
from luff.model import mediatypes as mt
from luff.model.address import Address
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.model.referrers import EMPTY_CONFIG, cosign_tags
from luff.ops.common import as_address, open_root, select_platform
from luff.stores.base import ReferrerLister, Store, TagLister
from luff.stores.memory import FileBlobs, OverlayStore

CREATED = "org.opencontainers.image.created"
TITLE = "org.opencontainers.image.title"
#: How deep ``--recursive`` follows referrers of referrers.
MAX_REFERRER_DEPTH = 16


@dataclass
class Referrer:
    """One attached manifest: its descriptor, how it was found, and what is attached to it."""

    descriptor: Descriptor
    via: str
    referrers: list[Referrer] = field(default_factory=list)

    @property
    def created(self) -> str:
        """The ``org.opencontainers.image.created`` annotation ("" when absent)."""
        return self.descriptor.annotations.get(CREATED, "")

    def to_dict(self) -> dict[str, Any]:
        """The descriptor as JSON, with ``via`` and nested ``referrers`` (``--json``)."""
        out = {**self.descriptor.to_dict(), "via": self.via}
        if self.referrers:
            out["referrers"] = [r.to_dict() for r in self.referrers]
        return out


@dataclass
class Node:
    """A manifest of the graph listed, with its referrers (and, recursively, its children)."""

    descriptor: Descriptor
    referrers: list[Referrer] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The descriptor as JSON, with its ``referrers`` and child ``manifests`` (``--json``)."""
        out: dict[str, Any] = {**self.descriptor.to_dict()}
        out["referrers"] = [r.to_dict() for r in self.referrers]
        if self.children:
            out["manifests"] = [c.to_dict() for c in self.children]
        return out

    def walk(self) -> Iterable[Referrer]:
        """Every referrer in the tree, depth first."""
        todo: list[Referrer] = list(reversed(self.referrers))
        for c in self.children:
            yield from c.walk()
        while todo:
            r = todo.pop()
            yield r
            todo.extend(reversed(r.referrers))


def _referrers_of(
    store: Store, desc: Descriptor, types: Sequence[str], depth: int, seen: set[Digest]
) -> list[Referrer]:
    out: list[Referrer] = []
    if isinstance(store, ReferrerLister):
        found = store.referrers(desc, types)
        for r in found.descriptors:
            if r.digest in seen:
                continue  # listed twice, or a cycle: each referrer once
            seen.add(r.digest)
            out.append(Referrer(r, found.via))
    if isinstance(store, TagLister):
        tags = set(store.tags())
        for t in cosign_tags(desc.digest):
            if t in tags:
                r, m = store.get_manifest(t)
                kind = m.artifact_type or (m.layers[0].media_type if m.layers else "")
                if r.digest not in seen and (not types or kind in types):
                    seen.add(r.digest)
                    out.append(Referrer(r.with_(artifact_type=kind), f"cosign tag {t}"))
    if depth > 0:
        for ref in out:
            ref.referrers = _referrers_of(store, ref.descriptor, types, depth - 1, seen)
    return out


def list_referrers(
    ref: str | Address,
    *,
    types: Sequence[str] = (),
    recursive: bool = False,
    platform: Platform | str | None = None,
    ctx: Context | None = None,
) -> Node:
    """The referrers of the manifest at *ref* (of these artifact *types*, if given).

    With *recursive*, the referrers of an index's children (per-platform
    signatures and SBOMs) and the referrers of referrers are listed too, as
    a tree; each manifest once.
    """
    root = open_root(ref, ctx or default_context())
    with root.store:
        desc, m = root.descriptor, root.manifest
        if platform is not None:
            desc, m = select_platform(root.store, desc, m, platform)
        seen: set[Digest] = {desc.digest}
        depth = MAX_REFERRER_DEPTH if recursive else 0
        node = Node(desc, _referrers_of(root.store, desc, types, depth, seen))
        if recursive and m.is_index:
            stack = [(node, m)]
            while stack:
                parent, pm = stack.pop()
                for child in pm.manifests:
                    if child.digest in seen:
                        continue
                    seen.add(child.digest)
                    c = Node(child, _referrers_of(root.store, child, types, depth, seen))
                    parent.children.append(c)
                    if mt.is_index(child.media_type):
                        stack.append((c, root.store.fetch_manifest(child)))
        return node


def attach(
    ref: str | Address,
    files: Sequence[str | tuple[str, str]],
    *,
    artifact_type: str,
    annotations: Mapping[str, str] | None = None,
    platform: Platform | str | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Descriptor:
    """Attach an OCI 1.1 artifact to the manifest at *ref*; returns the artifact's descriptor.

    *files* are paths, or ``(path, media_type)`` pairs (default media type
    ``application/octet-stream``); each becomes a layer titled with its
    file name. The config is the empty descriptor (``{}``). The
    ``org.opencontainers.image.created`` annotation is set to now, or to
    ``SOURCE_DATE_EPOCH``, unless given. Every file is read before anything
    is written; a missing file or subject writes nothing.
    """
    if not artifact_type:
        raise UsageError("an artifact needs an --artifact-type")
    ctx = ctx or default_context()
    blobs = FileBlobs("attached files")
    layers = []
    for f in files:
        path, media = (f, "application/octet-stream") if isinstance(f, str) else f
        d = blobs.add_file(path, media or "application/octet-stream")
        layers.append(d.with_(annotations={TITLE: os.path.basename(path)}))
    addr = as_address(ref)
    root = open_root(addr, ctx)
    with root.store:
        subject, _ = root.descriptor, root.manifest
        if platform is not None:
            subject, _ = select_platform(root.store, subject, root.manifest, platform)
        ann = {CREATED: _now(), **(annotations or {})}
        manifest = artifact_manifest(artifact_type, layers, subject, ann)
        overlay = OverlayStore("attach")
        overlay.add(manifest)
        overlay.add_blob(EMPTY_CONFIG, mt.OCI_EMPTY)
        for layer in layers:
            overlay.provide(layer.digest, blobs)
        return copy_graph(
            overlay,
            manifest.descriptor(),
            root.store,
            manifest=manifest,
            ctx=ctx,
            progress=progress,
            on_plan=on_plan,
        )


def artifact_manifest(
    artifact_type: str,
    layers: Sequence[Descriptor],
    subject: Descriptor,
    annotations: Mapping[str, str],
) -> Manifest:
    """An OCI 1.1 artifact manifest: empty config, *layers*, attached to *subject*."""
    empty = Descriptor(mt.OCI_EMPTY, Digest.of(EMPTY_CONFIG), len(EMPTY_CONFIG), data=EMPTY_CONFIG)
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty.to_dict(),
        "layers": [d.to_dict() for d in layers] or [empty.to_dict()],
        "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_dict(),
    }
    if annotations:
        body["annotations"] = dict(annotations)
    return Manifest.from_dict(body)


def _now() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    t = int(epoch) if epoch.isdigit() else int(time.time())
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
