"""Index assembly, without I/O: merge entries, apply edits, validate.

It takes resolved entries (and, to append or filter, the base index) and
returns the index document's exact bytes with its final entries. Platforms
are compared normalised and written as the entries give them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from luff.errors import InvalidManifest, LuffError, UsageError
from luff.model import mediatypes as mt
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.ops.index.edits import apply_edits
from luff.ops.index.resolve import Content, Entry
from luff.record import Record

OCI = "oci"
DOCKER = "docker"
FORMATS = {OCI: mt.OCI_INDEX, DOCKER: mt.DOCKER_LIST}


def check_format(fmt: str | None) -> None:
    """Refuse an index format other than ``oci`` and ``docker``."""
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown index format {fmt!r} (oci or docker)")


def platform_key(p: Platform) -> tuple[str, str, str, str]:
    """What two platforms must share to be the same platform."""
    n = p.normalized()
    return (n.os, n.architecture, n.variant, n.os_version)


class Assembly(Record):
    """The inputs of one assembly, besides the new entries."""

    content: Mapping[Digest, Content]
    base_doc: dict[str, Any] | None
    base_entries: list[Entry]
    format: str | None
    annotations: Mapping[str, str]
    edits: Sequence[str]
    allow_duplicate_platforms: bool

    def __init__(
        self,
        content: Mapping[Digest, Content],
        base_doc: dict[str, Any] | None = None,
        base_entries: list[Entry] | None = None,
        format: str | None = None,
        annotations: Mapping[str, str] | None = None,
        edits: Sequence[str] = (),
        allow_duplicate_platforms: bool = False,
    ) -> None:
        self.content = content
        self.base_doc = base_doc
        self.base_entries = [] if base_entries is None else base_entries
        self.format = format
        self.annotations = {} if annotations is None else annotations
        self.edits = edits
        self.allow_duplicate_platforms = allow_duplicate_platforms


class Assembled(Record):
    """The index bytes, its entries (with where their content is), and what was replaced."""

    manifest: Manifest
    entries: list[Entry]
    replaced: list[tuple[Entry, Entry]]

    def __init__(
        self,
        manifest: Manifest,
        entries: list[Entry],
        replaced: list[tuple[Entry, Entry]],
    ) -> None:
        self.manifest = manifest
        self.entries = entries
        self.replaced = replaced


def assemble(a: Assembly, new_groups: Sequence[Sequence[Entry]]) -> Assembled:
    """Merge the base with the new entries, edit and validate the result."""
    check_format(a.format)
    base = merge(a.base_entries)
    new = merge(e for g in new_groups for e in g)
    # A new source naming an image already in the base amends that entry in place.
    base_digests = {b.digest for b in base}
    amend = {n.digest: n for n in new if n.digest in base_digests}
    if amend:
        base = [amended(b, amend[b.digest]) if b.digest in amend else b for b in base]
        new = [n for n in new if n.digest not in amend]
    replaced: list[tuple[Entry, Entry]] = []
    drop: set[Digest] = set()
    for n in new:
        if n.is_attestation or n.platform is None:
            continue
        key = platform_key(n.platform)
        for b in base:
            if (
                not b.is_attestation
                and b.platform is not None
                and b.digest not in drop
                and platform_key(b.platform) == key
            ):
                drop.add(b.digest)
                replaced.append((b, n))
    # A replacement takes the place of the entry it replaces.
    instead = {old.digest: n for old, n in replaced}
    placed = {n.digest for n in instead.values()}
    kept = [instead.get(e.digest, e) for e in base if e.digest in instead or e.digest not in drop]
    kept = drop_with_attestations(kept, drop)
    entries = merge([*kept, *(n for n in new if n.digest not in placed)])

    doc = document(entries, a.base_doc, a.format, a.annotations)
    if a.edits:
        doc = apply_edits(json.loads(json.dumps(doc)), a.edits)
    manifest = validate(doc, a.content)
    by_digest = {e.digest: e for e in entries}
    final: list[Entry] = []
    for raw in manifest.json["manifests"]:
        d = Digest.parse(raw["digest"])
        c = a.content[d]
        prior = by_digest.get(d)
        final.append(
            Entry(
                dict(raw),
                prior.source if prior is not None else c.source,
                prior.store if prior is not None else c.store,
                prior.manifest if prior is not None and prior.manifest is not None else c.manifest,
            )
        )
    if not a.allow_duplicate_platforms:
        check_duplicates(final)
    check_docker(manifest, final)
    return Assembled(manifest, final, replaced)


def document(
    entries: Sequence[Entry],
    base_doc: Mapping[str, Any] | None,
    fmt: str | None,
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    """The index JSON: the base's other fields kept, its annotations merged with *annotations*."""
    rest: dict[str, Any] = dict(base_doc) if base_doc is not None else {}
    media = FORMATS[fmt] if fmt else rest.get("mediaType", mt.OCI_INDEX)
    for k in ("schemaVersion", "mediaType", "manifests"):
        rest.pop(k, None)
    ann = {**(rest.pop("annotations", None) or {}), **annotations}
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media}
    doc["manifests"] = [e.to_dict() for e in entries]
    doc.update(rest)
    if ann:
        doc["annotations"] = ann
    return doc


def merge(entries: Iterable[Entry]) -> list[Entry]:
    """Merge entries of the same digest (annotations combined; platforms must agree)."""
    out: list[Entry] = []
    index: dict[Digest, int] = {}
    for e in entries:
        i = index.get(e.digest)
        if i is None:
            index[e.digest] = len(out)
            out.append(e)
            continue
        prev = out[i]
        if (
            prev.platform is not None
            and e.platform is not None
            and platform_key(prev.platform) != platform_key(e.platform)
        ):
            raise UsageError(
                f"image {e.digest} is given as {prev.platform} by {prev.source} "
                f"and as {e.platform} by {e.source}"
            )
        ann = {**(e.raw.get("annotations") or {}), **(prev.raw.get("annotations") or {})}
        if ann:
            merged = prev.with_raw(annotations=ann)
            merged.manifest = prev.manifest or e.manifest
            out[i] = merged
    return out


def amended(old: Entry, new: Entry) -> Entry:
    """*old* with *new*'s platform and annotations (the same image, named again)."""
    raw = dict(old.raw)
    if new.platform is not None:
        raw["platform"] = new.raw["platform"]
    ann = {**(old.raw.get("annotations") or {}), **(new.raw.get("annotations") or {})}
    if ann:
        raw["annotations"] = ann
    return Entry(raw, new.source, new.store, new.manifest or old.manifest)


def drop_with_attestations(entries: list[Entry], drop: set[Digest]) -> list[Entry]:
    """*entries* without those in *drop* and the attestations of those."""
    return [
        e for e in entries if e.digest not in drop and not (e.is_attestation and e.subject in drop)
    ]


def validate(doc: dict[str, Any], content: Mapping[Digest, Content]) -> Manifest:
    """The bytes of *doc*, once it is a valid index of content that some source provides."""
    if not mt.is_index(str(doc.get("mediaType", ""))):
        raise InvalidManifest(
            f"the result is not an index (mediaType {doc.get('mediaType')!r}); "
            f"use {mt.OCI_INDEX} or {mt.DOCKER_LIST}"
        )
    try:
        data = json.dumps(doc, indent=2).encode()
        manifest = Manifest.parse(data, str(doc.get("mediaType", "")))
    except (LuffError, TypeError, ValueError) as e:
        raise InvalidManifest(f"the index is not valid: {e}") from None
    if not manifest.is_index:
        raise InvalidManifest(f"the result is not an index (mediaType {manifest.media_type})")
    if not manifest.manifests:
        raise InvalidManifest("the index has no entries")
    for i, d in enumerate(manifest.manifests):
        c = content.get(d.digest)
        where = f"manifests[{i}] ({d.digest})"
        if c is None:
            raise InvalidManifest(f"{where} points at content that no source provides")
        if c.size != d.size:
            raise InvalidManifest(
                f"{where} says size {d.size}, but the content from {c.source} is {c.size} bytes"
            )
        if c.media_type != d.media_type:
            raise InvalidManifest(
                f"{where} says mediaType {d.media_type}, but the content from {c.source} "
                f"is {c.media_type}"
            )
    return manifest


def check_duplicates(entries: Sequence[Entry]) -> None:
    """Refuse two different images of the same platform."""
    seen: dict[tuple[str, str, str, str], Entry] = {}
    for e in entries:
        if e.is_attestation or e.platform is None:
            continue
        key = platform_key(e.platform)
        prev = seen.get(key)
        if prev is not None and prev.digest != e.digest:
            raise UsageError(
                f"duplicate platform {e.platform}: {prev.digest} from {prev.source} and "
                f"{e.digest} from {e.source} (--allow-duplicate-platforms keeps both)"
            )
        seen.setdefault(key, e)


def check_docker(manifest: Manifest, entries: Sequence[Entry]) -> None:
    """Refuse what a Docker manifest list cannot hold (annotations, OCI manifests)."""
    if manifest.media_type != mt.DOCKER_LIST:
        return
    if manifest.json.get("annotations"):
        keys = ", ".join(manifest.json["annotations"])
        raise UsageError(
            f"a Docker manifest list has no annotations (index annotations: {keys}); "
            "use --format oci"
        )
    for e in entries:
        if e.descriptor.annotations:
            keys = ", ".join(e.descriptor.annotations)
            raise UsageError(
                f"a Docker manifest list has no annotations (entry {e.digest} from {e.source} "
                f"has {keys}); use --format oci"
            )
        if e.descriptor.media_type not in (mt.DOCKER_MANIFEST, mt.DOCKER_LIST):
            raise UsageError(
                f"a Docker manifest list holds only Docker v2 manifests, but {e.digest} from "
                f"{e.source} is {e.descriptor.media_type}; use --format oci"
            )
