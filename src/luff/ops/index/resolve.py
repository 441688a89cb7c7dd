"""Resolving index sources: open each, read its platforms, flatten indexes into entries.

Every distinct manifest is read once, however often the source's graph
reaches it (diamonds of nested indexes cost their size, not their paths),
and nesting is bounded by :data:`luff.copy.MAX_DEPTH`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from luff.context import Context
from luff.copy import MAX_DEPTH
from luff.errors import InvalidManifest, LimitExceeded, NotFound, UsageError, located
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, is_digest
from luff.model.manifest import Manifest
from luff.model.matching import any_of
from luff.model.platform import Platform
from luff.ops.common import config_platform, get_root, open_root
from luff.ops.index.sources import Source
from luff.pool import run_all
from luff.record import Record
from luff.stores.base import Store


def is_attestation(desc: Descriptor) -> bool:
    """True for a BuildKit attestation entry (``unknown/unknown`` + reference type)."""
    return (
        desc.platform is not None
        and desc.platform.is_unknown
        and mt.REFERENCE_TYPE in desc.annotations
    )


class Entry(Record):
    """One entry of an index: its JSON form, where its content is, who provided it."""

    raw: dict[str, Any]
    source: str
    store: Store
    manifest: Manifest | None
    descriptor: Descriptor  # parsed from raw

    def __init__(
        self, raw: dict[str, Any], source: str, store: Store, manifest: Manifest | None = None
    ) -> None:
        self.raw = raw
        self.source = source
        self.store = store
        self.manifest = manifest
        self.descriptor = Descriptor.from_dict(raw)

    @property
    def digest(self) -> Digest:
        """The digest of the entry's manifest."""
        return self.descriptor.digest

    @property
    def platform(self) -> Platform | None:
        """The platform of the entry (as its descriptor writes it), or None."""
        return self.descriptor.platform

    @property
    def is_attestation(self) -> bool:
        """True for an attestation manifest (exempt from duplicate checks)."""
        return is_attestation(self.descriptor)

    @property
    def subject(self) -> Digest | None:
        """The image an attestation entry describes."""
        ref = self.descriptor.annotations.get(mt.REFERENCE_DIGEST, "")
        return Digest.parse(ref) if self.is_attestation and is_digest(ref) else None

    def to_dict(self) -> dict[str, Any]:
        """The descriptor's JSON form as written in the index."""
        return dict(self.raw)

    def with_raw(self, **changes: Any) -> Entry:
        """A copy whose JSON form has *changes* (keys of the descriptor JSON)."""
        return Entry({**self.raw, **changes}, self.source, self.store, self.manifest)

    def __repr__(self) -> str:
        kind = "attestation" if self.is_attestation else str(self.platform or "-")
        return f"<Entry {self.digest.short} {kind} from {self.source}>"


class Content(Record):
    """A manifest some source provides: where, what kind, how big."""

    store: Store
    media_type: str
    size: int
    source: str
    manifest: Manifest | None

    def __init__(
        self,
        store: Store,
        media_type: str,
        size: int,
        source: str,
        manifest: Manifest | None = None,
    ) -> None:
        self.store = store
        self.media_type = media_type
        self.size = size
        self.source = source
        self.manifest = manifest


def bare(desc: Descriptor) -> Descriptor:
    """*desc* without annotations, platform or data: the content alone."""
    return Descriptor(desc.media_type, desc.digest, desc.size, desc.urls)


class Resolver:
    """Turns sources into entries and records the content each one provides."""

    def __init__(self, ctx: Context, flatten: bool = True) -> None:
        self.ctx = ctx
        self.flatten = flatten
        self.content: dict[Digest, Content] = {}
        self.stores: list[Store] = []
        self._lock = threading.Lock()

    def abort(self) -> None:
        """Release the stores opened so far."""
        for s in self.stores:
            s.abort()
        self.stores = []

    def remember(self, desc: Descriptor, store: Store, label: str, m: Manifest | None) -> None:
        with self._lock:
            prev = self.content.get(desc.digest)
            if prev is None or (prev.manifest is None and m is not None):
                self.content[desc.digest] = Content(store, desc.media_type, desc.size, label, m)

    def open(self, source: str | Source) -> tuple[Store, Descriptor, Manifest]:
        """Open one source (kept open until :meth:`abort` or the built index is closed)."""
        src = Source.coerce(source)
        with located(op="open source", where=src.address):
            if src.store is not None:
                try:
                    desc, m = get_root(src.store, src.identifier)
                except NotFound as e:
                    raise NotFound(f"unknown source: {e.message}", where=src.address) from None
                return src.store, desc, m
            try:
                root = open_root(src.address, self.ctx)
            except NotFound as e:
                raise NotFound(f"unknown source: {e.message}", where=src.address) from None
        with self._lock:
            self.stores.append(root.store)
        return root.store, root.descriptor, root.manifest

    def resolve_all(self, sources: Sequence[Source]) -> list[list[Entry]]:
        """The entries of every source, in order; the sources are opened and read
        concurrently (one task per source: opened, then its platforms read)."""
        return run_all(lambda s: self.expand(s, *self.open(s)), list(sources), self.ctx.limiter)

    def expand(self, src: Source, store: Store, desc: Descriptor, m: Manifest) -> list[Entry]:
        """The entries *src* contributes, with overrides applied."""
        label = src.address
        self.remember(desc, store, label, m)
        if src.only and m.is_index and not self.flatten:
            raise UsageError(
                f"source {label}: only= picks images out of an index; drop --no-flatten"
            )
        own: Platform | None = None
        if src.only and not m.is_index:
            own = config_platform(store, m, label)
            if own is None or not any_of(*src.only).match(own):
                raise UsageError(
                    f"source {label}: its image is {own or 'of no platform'}, "
                    f"not {either(src.only)}"
                )
        if not m.is_index or not self.flatten:
            plat = src.apply_platform(
                lambda: None if m.is_index else own or config_platform(store, m, label)
            )
            if plat is None and not m.is_index:
                raise UsageError(
                    f"source {label}: its config names no os/architecture; "
                    "give the platform with platform=OS/ARCH"
                )
            raw = bare(desc).to_dict()
            if plat is not None:
                raw["platform"] = plat.to_dict()
            return [with_annotations(Entry(raw, label, store, m), src.annotations)]
        entries = self.flattened(store, m, label)
        if src.only:
            entries = select(entries, src.only, label)
        images = [e for e in entries if not e.is_attestation]
        if src.overrides_platform and len(images) != 1:
            raise UsageError(
                f"source {label}: a platform override needs a single image, but it holds "
                f"{len(images)}; pick one with only=OS/ARCH or name it by digest"
            )
        out = []
        for e in entries:
            if not e.is_attestation:
                if src.overrides_platform:
                    e = override(src, e)
                e = with_annotations(e, src.annotations)
            out.append(e)
        if not out:
            raise UsageError(f"source {label}: the index is empty")
        return out

    def flattened(self, store: Store, index: Manifest, label: str) -> list[Entry]:
        """The images of *index* and of the indexes inside it, each distinct index once.

        Entries without a platform get the one their config declares. An index
        reached again below itself (a cycle) is refused.
        """
        out: list[Entry] = []
        seen: set[Digest] = {index.digest}
        on_path: list[Digest] = [index.digest]  # the indexes being walked, outermost first
        stack = [(iter(zip(index.json["manifests"], index.manifests, strict=True)), 1)]
        while stack:
            it, depth = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                on_path.pop()
                continue
            raw, child = nxt
            self.remember(child, store, label, None)
            if mt.is_index(child.media_type) and not is_attestation(child):
                if child.digest in on_path:
                    raise InvalidManifest(
                        "the indexes form a cycle", where=label, digest=child.digest
                    )
                if child.digest in seen:
                    continue  # a diamond: its images are in already
                seen.add(child.digest)
                if depth >= MAX_DEPTH:
                    raise LimitExceeded(
                        f"indexes nested too deeply (more than {MAX_DEPTH} levels)", where=label
                    )
                cm = store.fetch_manifest(child)
                self.remember(child, store, label, cm)
                on_path.append(child.digest)
                stack.append(
                    (iter(zip(cm.json["manifests"], cm.manifests, strict=True)), depth + 1)
                )
                continue
            entry_raw = dict(raw)
            m: Manifest | None = None
            if child.platform is None and mt.is_image_manifest(child.media_type):
                m = store.fetch_manifest(child)
                self.remember(child, store, label, m)
                plat = config_platform(store, m, f"{label}@{child.digest}")
                if plat is not None:
                    entry_raw["platform"] = plat.to_dict()
            out.append(Entry(entry_raw, label, store, m))
        return out

    def base_entries(
        self, store: Store, desc: Descriptor, m: Manifest, label: str
    ) -> tuple[dict[str, Any] | None, list[Entry]]:
        """The entries of an existing index (or image) to append to or filter, as written."""
        self.remember(desc, store, label, m)
        if not m.is_index:
            plat = config_platform(store, m, label)
            raw = bare(desc).to_dict()
            if plat is not None:
                raw["platform"] = plat.to_dict()
            return None, [Entry(raw, label, store, m)]
        entries = []
        for raw, child in zip(m.json["manifests"], m.manifests, strict=True):
            self.remember(child, store, label, None)
            entries.append(Entry(dict(raw), label, store, None))
        return dict(m.json), entries


def either(platforms: Sequence[Platform]) -> str:
    return " or ".join(str(p) for p in platforms)


def select(entries: list[Entry], only: Sequence[Platform], label: str) -> list[Entry]:
    """The image entries of one of the *only* platforms, with their attestations."""
    images = [e for e in entries if not e.is_attestation]
    strict = any_of(*only)
    keep = {e.digest for e in images if e.platform is not None and strict.match(e.platform)}
    if not keep:
        have = ", ".join(str(e.platform) for e in images if e.platform is not None) or "none"
        raise UsageError(f"source {label}: no image is {either(only)} (it has: {have})")
    return [e for e in entries if e.digest in keep or (e.is_attestation and e.subject in keep)]


def override(src: Source, e: Entry) -> Entry:
    detected = e.platform
    plat = src.apply_platform(lambda: detected)
    return e.with_raw(platform=plat.to_dict()) if plat is not None else e


def with_annotations(e: Entry, annotations: Mapping[str, str]) -> Entry:
    if not annotations:
        return e
    return e.with_raw(annotations={**(e.raw.get("annotations") or {}), **annotations})
