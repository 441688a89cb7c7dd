"""Index assembly: build, append to, filter and list multi-platform indexes.

Everything happens in two phases. *Building* resolves every source, reads
platforms, merges, applies overrides and jq edits and validates the result,
in memory, writing nothing: :func:`build`, :func:`build_append` and
:func:`build_filter` return a :class:`BuiltIndex`. *Pushing* plans the copy
of every entry's content to a target (exists / mount / copy), writes children
first and the index last: :meth:`BuiltIndex.push`. :func:`create`,
:func:`append` and :func:`filter` do both.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import wait
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from luff.context import Context, default_context
from luff.copy import EXISTS, TAG, Copier, ManifestItem, Plan, Progress
from luff.errors import InvalidManifest, InvalidPlatform, LuffError, NotFound, UsageError
from luff.model import mediatypes as mt
from luff.model.address import Address, parse_address
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, is_digest
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.model.reference import valid_tag
from luff.ops.basic import get_root
from luff.pool import Pool
from luff.stores import open_store
from luff.stores.base import Store
from luff.stores.memory import MemoryStore

__all__ = [
    "BuiltIndex",
    "Entry",
    "Listing",
    "Source",
    "append",
    "build",
    "build_append",
    "build_filter",
    "create",
    "destinations",
    "filter",
    "list_entries",
    "targets_of",
]

_T = TypeVar("_T")

OCI = "oci"
DOCKER = "docker"
FORMATS = {OCI: mt.OCI_INDEX, DOCKER: mt.DOCKER_LIST}
_CONFIG_LIMIT = 16 * 1024 * 1024


# --------------------------------------------------------------------------
# Sources and their overrides
# --------------------------------------------------------------------------

_ADDRESS_KEYS = ("ref", "src", "source")
_KEYS = (
    *_ADDRESS_KEYS,
    "only",
    "platform",
    "variant",
    "os.version",
    "os.features",
    "annotation.KEY",
)


@dataclass(frozen=True)
class Source:
    """A source address with its per-source overrides.

    ``platform`` replaces the platform read from the image config;
    ``variant``, ``os_version`` and ``os_features`` replace single fields of it
    (of the override when given, else of the detected platform).
    ``annotations`` are added to the entry's descriptor. ``only`` keeps, from
    an index source, just the images matching one of these platforms (and
    their attestations); an image source must match one of them.
    """

    address: str
    platform: Platform | None = None
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    store: Store | None = field(default=None, compare=False, repr=False)
    identifier: str = ""
    only: tuple[Platform, ...] = ()

    @classmethod
    def from_store(cls, store: Store, identifier: str = "", **overrides: Any) -> Source:
        """A source in an already open store (e.g. a :class:`MemoryStore`), by tag or digest.

        *overrides* are the other fields (``platform``, ``annotations``, ...).
        """
        name = (
            f"{store.name}@{identifier}" if is_digest(identifier) else f"{store.name}:{identifier}"
        )
        return cls(
            name if identifier else store.name, store=store, identifier=identifier, **overrides
        )

    @classmethod
    def parse(cls, text: str) -> Source:
        """Parse a plain address or the ``key=value,key=value`` override form.

        Keys: ``ref`` (or ``src``/``source``; a bare first item is the same),
        ``only`` (repeatable), ``platform`` (short form or JSON), ``variant``,
        ``os.version``, ``os.features`` (repeatable, or a JSON list) and
        ``annotation.KEY``.
        Values holding commas are double-quoted, CSV-style, or are JSON.
        """
        text = text.strip()
        if "=" not in text:
            if not text:
                raise UsageError("empty source")
            return cls(text)
        address = ""
        platform: Platform | None = None
        variant: str | None = None
        os_version: str | None = None
        features: list[str] | None = None
        annotations: dict[str, str] = {}
        only: list[Platform] = []
        seen: set[str] = set()
        for i, item in enumerate(_split_fields(text)):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq:
                if i == 0:
                    address = item.strip()
                    seen.add("ref")
                    continue
                raise UsageError(f"source {text!r}: {item!r} is not KEY=VALUE")
            value = _unquote(value.strip())
            canon = "ref" if key in _ADDRESS_KEYS else key
            repeatable = canon in ("os.features", "only") or key.startswith("annotation.")
            if canon in seen and not repeatable:
                raise UsageError(f"source {text!r}: {key!r} given twice")
            seen.add(canon)
            if canon == "ref":
                address = value
            elif key == "platform":
                try:
                    platform = Platform.parse(value)
                except InvalidPlatform as e:
                    raise InvalidPlatform(f"source {text!r}: {e}") from None
            elif key == "only":
                try:
                    only.append(Platform.parse(value))
                except InvalidPlatform as e:
                    raise InvalidPlatform(f"source {text!r}: only: {e}") from None
            elif key == "variant":
                variant = value
            elif key == "os.version":
                os_version = value
            elif key == "os.features":
                features = features or []
                features.extend(_feature_list(value, text))
            elif key.startswith("annotation.") and len(key) > len("annotation."):
                annotations[key[len("annotation.") :]] = value
            else:
                raise UsageError(f"source {text!r}: unknown key {key!r} (keys: {', '.join(_KEYS)})")
        if not address:
            raise UsageError(f"source {text!r}: no address (give ref=ADDRESS)")
        return cls(
            address,
            platform,
            variant,
            os_version,
            tuple(features) if features is not None else None,
            annotations,
            only=tuple(only),
        )

    @classmethod
    def coerce(cls, value: str | Source) -> Source:
        """*value* itself, or parsed when it is a string."""
        return value if isinstance(value, Source) else cls.parse(value)

    @property
    def overrides_platform(self) -> bool:
        """True when any part of the platform is overridden."""
        return (
            self.platform is not None
            or self.variant is not None
            or self.os_version is not None
            or self.os_features is not None
        )

    @property
    def overrides_whole_platform(self) -> bool:
        """True when the override alone gives the platform (no config needed)."""
        return self.platform is not None

    def apply_platform(self, detected: Callable[[], Platform | None]) -> Platform | None:
        """The entry's platform: the override, else *detected*, with field overrides."""
        if not self.overrides_platform:
            return detected()
        base = self.platform or detected()
        if base is None:
            raise UsageError(
                f"source {self.address}: the platform is unknown; give it with platform=OS/ARCH"
            )
        p = base
        if self.variant is not None:
            p = replace(p, variant=self.variant)
        if self.os_version is not None:
            p = replace(p, os_version=self.os_version)
        if self.os_features is not None:
            p = replace(p, os_features=self.os_features)
        return p.normalized()

    def __str__(self) -> str:
        return self.address


def _split_fields(text: str) -> list[str]:
    """Split on commas outside double quotes and outside JSON braces/brackets."""
    out: list[str] = []
    buf: list[str] = []
    depth = 0
    quoted = False
    for c in text:
        if c == '"':
            quoted = not quoted
        elif not quoted and c in "{[":
            depth += 1
        elif not quoted and c in "}]":
            depth = max(0, depth - 1)
        if c == "," and not quoted and depth == 0:
            out.append("".join(buf))
            buf = []
            continue
        buf.append(c)
    if quoted:
        raise UsageError(f"source {text!r}: unbalanced double quote")
    out.append("".join(buf))
    result = []
    for f in out:
        f = f.strip()
        if len(f) >= 2 and f[0] == '"' and f[-1] == '"':
            f = f[1:-1].replace('""', '"')
        if f:
            result.append(f)
    return result


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1].replace('""', '"')
    return value


def _feature_list(value: str, text: str) -> list[str]:
    if value.startswith("["):
        try:
            lst = json.loads(value)
        except json.JSONDecodeError as e:
            raise UsageError(f"source {text!r}: os.features: {e.msg}") from None
        if not isinstance(lst, list) or not all(isinstance(x, str) for x in lst):
            raise UsageError(f"source {text!r}: os.features must be a list of strings")
        return lst
    return [value] if value else []


# --------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------


def is_attestation(desc: Descriptor) -> bool:
    """True for a BuildKit attestation entry (``unknown/unknown`` + reference type)."""
    return (
        desc.platform is not None
        and desc.platform.is_unknown
        and mt.REFERENCE_TYPE in desc.annotations
    )


@dataclass
class Entry:
    """One entry of an index: its JSON form, where its content is, who provided it."""

    raw: dict[str, Any]
    source: str
    store: Store
    manifest: Manifest | None = None
    descriptor: Descriptor = field(init=False)

    def __post_init__(self) -> None:
        self.descriptor = Descriptor.from_dict(self.raw)

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def platform(self) -> Platform | None:
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

    def __repr__(self) -> str:
        kind = "attestation" if self.is_attestation else str(self.platform or "-")
        return f"<Entry {self.digest.short} {kind} from {self.source}>"


@dataclass
class _Content:
    """A manifest that some source provides."""

    store: Store
    media_type: str
    size: int
    source: str
    manifest: Manifest | None = None


# --------------------------------------------------------------------------
# The built index
# --------------------------------------------------------------------------


@dataclass
class BuiltIndex:
    """A validated index held in memory, with where each entry's content is.

    Inspect :attr:`manifest` (exact bytes), :attr:`document` and
    :attr:`entries`; :meth:`plan` shows what pushing would transfer,
    :meth:`push` writes it.
    """

    manifest: Manifest
    entries: list[Entry]
    replaced: list[tuple[Entry, Entry]] = field(default_factory=list)
    ctx: Context = field(default_factory=default_context)
    stores: list[Store] = field(default_factory=list, repr=False)

    @property
    def descriptor(self) -> Descriptor:
        """The descriptor of the index (media type, digest, size)."""
        return self.manifest.descriptor()

    @property
    def digest(self) -> Digest:
        return self.manifest.digest

    @property
    def document(self) -> dict[str, Any]:
        """The index as a JSON object."""
        return self.manifest.json

    def to_json(self) -> str:
        """The exact bytes of the index, as text."""
        return self.manifest.data.decode()

    def __repr__(self) -> str:
        plats = ", ".join(
            "attestation" if e.is_attestation else str(e.platform or "-") for e in self.entries
        )
        return f"<BuiltIndex {self.digest} [{plats}]>"

    # --- targets -------------------------------------------------------
    def _open(
        self, target: str | Store, tags: Sequence[str], write: bool
    ) -> tuple[Store, list[str]]:
        if isinstance(target, Store):
            return target, _check_tags(tags)
        addr = parse_address(target)
        own = _target_tag(addr, target)
        try:
            store, _ = open_store(addr, self.ctx, write=write)
        except ImportError:
            raise UsageError(f"{target}: {addr.transport} targets are not supported yet") from None
        except LuffError:
            if write or addr.is_registry:
                raise
            store = MemoryStore(str(addr))  # a file target that does not exist yet: empty
        return store, _dedupe([own, *_check_tags(tags)])

    def _plan(self, store: Store) -> tuple[Copier, Plan]:
        copier = Copier(store, self.ctx)
        unique: dict[Digest, Entry] = {}
        for e in self.entries:
            unique.setdefault(e.digest, e)
        todo = list(unique.values())
        if store.trusts_manifest_closure() and todo:
            with Pool(max_workers=max(1, self.ctx.settings.jobs) * 2) as pool:
                present = list(pool.map(lambda e: store.exists(_bare(e.descriptor)), todo))
        else:
            present = [False] * len(todo)
        existing = []
        for e, ex in zip(todo, present, strict=True):
            if ex:
                m = e.manifest or Manifest(b"", e.descriptor.media_type)
                existing.append(ManifestItem(_bare(e.descriptor), m, e.store, 1, EXISTS))
            else:
                copier.add(e.store, _bare(e.descriptor), e.manifest, depth=1)
        plan = copier.plan()
        plan.manifests.extend(existing)
        plan.manifests.append(
            ManifestItem(self.descriptor, self.manifest, MemoryStore("index"), 0, TAG)
        )
        return copier, plan

    def plan(self, target: str | Store, tags: Sequence[str] = ()) -> Plan:
        """What pushing to *target* would do, per blob and manifest; writes nothing."""
        store, _ = self._open(target, tags, write=False)
        try:
            return self._plan(store)[1]
        finally:
            if not isinstance(target, Store):
                store.abort()

    def push(
        self,
        target: str | Store,
        tags: Sequence[str] = (),
        *,
        progress: Progress | None = None,
        on_plan: Callable[[Plan], None] | None = None,
    ) -> Descriptor:
        """Copy what *target* lacks, then push the index under its tag and *tags*.

        *target* is an address (its tag, if any, is used) or a store. When every
        tag already points at this index, nothing is transferred.
        """
        store, all_tags = self._open(target, tags, write=True)
        owned = not isinstance(target, Store)
        try:
            if (
                all_tags
                and store.trusts_manifest_closure()
                and self._already_there(store, all_tags)
            ):
                self.ctx.say(f"{store.name}: already up to date")
            else:
                copier, plan = self._plan(store)
                if on_plan is not None:
                    on_plan(plan)
                copier.execute(plan, progress)
                if all_tags:
                    for t in all_tags:
                        store.push_manifest(self.manifest, t)
                else:
                    store.push_manifest(self.manifest)
        except BaseException:
            if owned:
                store.abort()
            raise
        if owned:
            store.close()
        return self.descriptor

    def _already_there(self, store: Store, tags: Sequence[str]) -> bool:
        try:
            return all(store.resolve(t).digest == self.digest for t in tags)
        except LuffError:
            return False

    def close(self) -> None:
        """Release the source stores (archives hold open files)."""
        for s in self.stores:
            s.close()
        self.stores = []

    def __enter__(self) -> BuiltIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bare(desc: Descriptor) -> Descriptor:
    return Descriptor(desc.media_type, desc.digest, desc.size, desc.urls)


def _dedupe(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for x in items:
        if x and x not in out:
            out.append(x)
    return out


def _check_tags(tags: Sequence[str]) -> list[str]:
    for t in tags:
        if not valid_tag(t):
            raise UsageError(f"invalid tag {t!r}")
    return list(tags)


def _target_tag(addr: Address, text: str) -> str:
    if addr.reference is not None:
        if addr.reference.digest:
            raise UsageError(f"{text}: a target names a tag, not a digest")
        return addr.reference.tag
    if addr.digest:
        raise UsageError(f"{text}: a target names a tag, not a digest")
    return addr.tag


def _repo_key(addr: Address) -> str:
    if addr.reference is not None:
        return addr.reference.name
    return f"{addr.transport}:{addr.path}"


def destinations(primary: str, extra: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """Group *primary* and the ``-t`` values into ``(address, extra tags)`` per repository.

    A value that is a valid tag is a tag in *primary*'s repository; anything
    else is a full address (another repository or registry gets its own copy).
    """
    paddr = parse_address(primary)
    _target_tag(paddr, primary)
    groups: dict[str, tuple[str, list[str]]] = {_repo_key(paddr): (primary, [])}
    for x in extra:
        if valid_tag(x):
            groups[_repo_key(paddr)][1].append(x)
            continue
        a = parse_address(x)
        tag = _target_tag(a, x)
        key = _repo_key(a)
        if key in groups:
            if tag:
                groups[key][1].append(tag)
        else:
            groups[key] = (x, [])
    return [(addr, _dedupe(tags)) for addr, tags in groups.values()]


# --------------------------------------------------------------------------
# Resolving sources
# --------------------------------------------------------------------------


def _open_source(source: str | Source, ctx: Context) -> tuple[Store, Descriptor, Manifest, bool]:
    """Open a source: ``(store, descriptor, manifest, opened_here)``."""
    src = source if isinstance(source, Source) else Source(source)
    if src.store is not None:
        try:
            desc, m = get_root(src.store, src.identifier)
        except NotFound as e:
            raise NotFound(f"unknown source {src.address}: {_detail(e, src.store)}") from None
        return src.store, desc, m, False
    address = src.address
    try:
        store, ident = open_store(address, ctx)
    except ImportError:
        t = address.split(":", 1)[0]
        raise UsageError(f"source {address}: {t} sources are not supported yet") from None
    try:
        desc, m = get_root(store, ident)
    except NotFound as e:
        store.abort()
        raise NotFound(f"unknown source {address}: {_detail(e, store)}") from None
    except BaseException:
        store.abort()
        raise
    return store, desc, m, True


def _detail(e: Exception, store: Store) -> str:
    """The message of *e* without the store name it starts with."""
    msg = str(e)
    head, sep, rest = msg.partition(": ")
    return rest if sep and head.startswith(store.name) else msg


def config_platform(store: Store, m: Manifest, label: str = "") -> Platform | None:
    """The platform an image's config declares (os, architecture, variant, os.version/features).

    None when the config names no os and architecture (e.g. an artifact).
    """
    label = label or store.name
    if m.is_index:
        raise UsageError(f"{label}: an index has no config")
    if m.config.media_type not in (mt.OCI_CONFIG, mt.DOCKER_CONFIG):
        return None
    data = store.fetch_bytes(m.config, limit=_CONFIG_LIMIT)
    try:
        cfg = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InvalidManifest(f"{label}: the image config is not JSON") from None
    if not isinstance(cfg, dict) or not cfg.get("os") or not cfg.get("architecture"):
        return None
    keys = ("os", "architecture", "variant", "os.version", "os.features")
    try:
        return Platform.from_dict({k: cfg[k] for k in keys if cfg.get(k) is not None})
    except InvalidPlatform as e:
        raise InvalidManifest(f"{label}: bad platform in the image config: {e}") from None


class _Resolver:
    """Turns sources into entries and records the content each one provides."""

    def __init__(self, ctx: Context, flatten: bool) -> None:
        self.ctx = ctx
        self.flatten = flatten
        self.content: dict[Digest, _Content] = {}
        self.stores: list[Store] = []

    def abort(self) -> None:
        """Release the stores opened so far."""
        for s in self.stores:
            s.abort()
        self.stores = []

    def remember(self, desc: Descriptor, store: Store, label: str, m: Manifest | None) -> None:
        prev = self.content.get(desc.digest)
        if prev is None or (prev.manifest is None and m is not None):
            self.content[desc.digest] = _Content(store, desc.media_type, desc.size, label, m)

    def resolve_all(self, sources: Sequence[Source]) -> list[list[Entry]]:
        if not sources:
            return []
        with Pool(max_workers=max(1, self.ctx.settings.jobs) * 2) as pool:
            futures = [pool.submit(self._open, s) for s in sources]
            wait(futures)  # an interrupt here is the caller's, not a source's error
            opened: list[tuple[Source, Store, Descriptor, Manifest]] = []
            owned: list[Store] = []
            errors: list[BaseException] = []
            for src, f in zip(sources, futures, strict=True):
                try:
                    store, desc, m, mine = f.result()
                except BaseException as e:
                    errors.append(e)
                    continue
                opened.append((src, store, desc, m))
                if mine:
                    owned.append(store)
            if errors:
                for st in owned:
                    st.abort()
                raise errors[0]
            self.stores.extend(owned)
            return list(pool.map(lambda t: self.expand(*t), opened))

    def _open(self, src: Source) -> tuple[Store, Descriptor, Manifest, bool]:
        return _open_source(src, self.ctx)

    def expand(self, src: Source, store: Store, desc: Descriptor, m: Manifest) -> list[Entry]:
        """The entries *src* contributes, with overrides applied."""
        label = src.address
        self.remember(desc, store, label, m)
        if src.only and m.is_index and not self.flatten:
            raise UsageError(
                f"source {label}: only= picks images out of an index; drop --no-flatten"
            )
        if src.only and not m.is_index:
            own = config_platform(store, m, label)
            if own is None or not any(s.matches(own) for s in src.only):
                raise UsageError(
                    f"source {label}: its image is {own or 'of no platform'}, "
                    f"not {_either(src.only)}"
                )
        if not m.is_index or not self.flatten:
            plat = src.apply_platform(
                lambda: None if m.is_index else config_platform(store, m, label)
            )
            if plat is None and not m.is_index:
                raise UsageError(
                    f"source {label}: its config names no os/architecture; "
                    "give the platform with platform=OS/ARCH"
                )
            raw = _bare(desc).to_dict()
            if plat is not None:
                raw["platform"] = plat.to_dict()
            return [_with_annotations(Entry(raw, label, store, m), src.annotations)]
        entries = self._flatten(store, m, label)
        if src.only:
            entries = _select(entries, src.only, label)
        images = [e for e in entries if not e.is_attestation]
        if src.overrides_platform and len(images) != 1:
            raise UsageError(
                f"source {label}: a platform override needs a single image, but it holds "
                f"{len(images)}; pick one with only=OS/ARCH or name it by digest"
            )
        out = []
        for e in entries:
            if e.is_attestation:
                out.append(e)
                continue
            if src.overrides_platform:
                e = _override(src, e)
            out.append(_with_annotations(e, src.annotations))
        if not out:
            raise UsageError(f"source {label}: the index is empty")
        return out

    def _flatten(self, store: Store, index: Manifest, label: str) -> list[Entry]:
        out: list[Entry] = []
        for raw, child in zip(index.json["manifests"], index.manifests, strict=True):
            self.remember(child, store, label, None)
            if mt.is_index(child.media_type) and not is_attestation(child):
                cm = store.fetch_manifest(child)
                self.remember(child, store, label, cm)
                out.extend(self._flatten(store, cm, label))
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


def _either(platforms: Sequence[Platform]) -> str:
    return " or ".join(str(p) for p in platforms)


def _select(entries: list[Entry], only: Sequence[Platform], label: str) -> list[Entry]:
    """The image entries matching one of *only*, with their attestations."""
    images = [e for e in entries if not e.is_attestation]
    keep = {
        e.digest
        for e in images
        if e.platform is not None and any(s.matches(e.platform) for s in only)
    }
    if not keep:
        have = ", ".join(str(e.platform) for e in images if e.platform is not None) or "none"
        raise UsageError(f"source {label}: no image is {_either(only)} (it has: {have})")
    return [e for e in entries if e.digest in keep or (e.is_attestation and e.subject in keep)]


def _override(src: Source, e: Entry) -> Entry:
    detected = e.platform
    plat = src.apply_platform(lambda: detected)
    raw = dict(e.raw)
    if plat is not None:
        raw["platform"] = plat.to_dict()
    return Entry(raw, e.source, e.store, e.manifest)


def _with_annotations(e: Entry, annotations: Mapping[str, str]) -> Entry:
    if not annotations:
        return e
    raw = dict(e.raw)
    raw["annotations"] = {**(raw.get("annotations") or {}), **annotations}
    return Entry(raw, e.source, e.store, e.manifest)


# --------------------------------------------------------------------------
# Assembly, edits and validation
# --------------------------------------------------------------------------


def _platform_key(p: Platform) -> tuple[str, str, str, str]:
    n = p.normalized()
    return (n.os, n.architecture, n.variant, n.os_version)


def _merge(entries: Iterable[Entry]) -> list[Entry]:
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
            and _platform_key(prev.platform) != _platform_key(e.platform)
        ):
            raise UsageError(
                f"image {e.digest} is given as {prev.platform} by {prev.source} "
                f"and as {e.platform} by {e.source}"
            )
        ann = {**(e.raw.get("annotations") or {}), **(prev.raw.get("annotations") or {})}
        if ann:
            raw = dict(prev.raw)
            raw["annotations"] = ann
            out[i] = Entry(raw, prev.source, prev.store, prev.manifest or e.manifest)
    return out


def _amended(old: Entry, new: Entry) -> Entry:
    raw = dict(old.raw)
    if new.platform is not None:
        raw["platform"] = new.raw["platform"]
    ann = {**(old.raw.get("annotations") or {}), **(new.raw.get("annotations") or {})}
    if ann:
        raw["annotations"] = ann
    return Entry(raw, new.source, new.store, new.manifest or old.manifest)


def _drop_with_attestations(entries: list[Entry], drop: set[Digest]) -> list[Entry]:
    return [
        e for e in entries if e.digest not in drop and not (e.is_attestation and e.subject in drop)
    ]


def apply_edits(doc: dict[str, Any], edits: Sequence[str]) -> dict[str, Any]:
    """Run each jq program on *doc* in turn; each must yield exactly one object."""
    if not edits:
        return doc
    import jq

    for n, program in enumerate(edits, 1):
        where = f"--set #{n} {program!r}"
        try:
            compiled = jq.compile(program)
        except ValueError as e:
            raise UsageError(f"invalid jq program {where}: {_jq_message(str(e))}") from None
        try:
            with _interruptible():
                # two results are enough to refuse; an endless generator must not be drained
                results = list(itertools.islice(iter(compiled.input_value(doc)), 2))
        except ValueError as e:
            raise UsageError(f"jq program {where} failed: {_jq_message(str(e))}") from None
        if len(results) != 1:
            many = "0 results" if not results else "more than one result"
            raise UsageError(f"jq program {where} gave {many}; it must give one")
        if not isinstance(results[0], dict):
            raise UsageError(
                f"jq program {where} gave {type(results[0]).__name__}, not an index object"
            )
        doc = results[0]
    return doc


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Let Ctrl-C end the process while jq runs in C, where Python cannot raise
    KeyboardInterrupt until the program returns (which an endless one never does).
    Nothing has been written at that point. Only in the main thread, and only when
    Python's own SIGINT handler is installed."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _jq_message(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else text
    first = first.removeprefix("jq: error: ").replace(" at <top-level>", "")
    return first.rstrip(":")


@dataclass
class _Assembly:
    """Inputs of one index assembly."""

    ctx: Context
    content: dict[Digest, _Content]
    stores: list[Store]
    base_doc: dict[str, Any] | None = None
    base_entries: list[Entry] = field(default_factory=list)
    format: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    edits: Sequence[str] = ()
    allow_duplicate_platforms: bool = False


def _assemble(a: _Assembly, new_groups: Sequence[Sequence[Entry]]) -> BuiltIndex:
    base = _merge(a.base_entries)
    new = _merge(e for g in new_groups for e in g)
    # A new source naming an image already in the base amends that entry in place.
    amend = {n.digest: n for n in new if n.digest in {b.digest for b in base}}
    if amend:
        base = [_amended(b, amend[b.digest]) if b.digest in amend else b for b in base]
        new = [n for n in new if n.digest not in amend]
    replaced: list[tuple[Entry, Entry]] = []
    base_digests = {e.digest for e in base}
    drop: set[Digest] = set()
    for n in new:
        if n.is_attestation or n.platform is None or n.digest in base_digests:
            continue
        for b in base:
            if (
                not b.is_attestation
                and b.platform is not None
                and b.digest not in drop
                and _platform_key(b.platform) == _platform_key(n.platform)
            ):
                drop.add(b.digest)
                replaced.append((b, n))
    # A replacement takes the place of the entry it replaces.
    instead = {old.digest: n for old, n in replaced}
    placed = {n.digest for n in instead.values()}
    kept = [instead.get(e.digest, e) for e in base if e.digest in instead or e.digest not in drop]
    kept = _drop_with_attestations(kept, drop)
    entries = _merge([*kept, *(n for n in new if n.digest not in placed)])

    rest: dict[str, Any] = dict(a.base_doc) if a.base_doc is not None else {}
    media = FORMATS[a.format] if a.format else rest.get("mediaType", mt.OCI_INDEX)
    for k in ("schemaVersion", "mediaType", "manifests"):
        rest.pop(k, None)
    ann = {**(rest.pop("annotations", None) or {}), **a.annotations}
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media}
    doc["manifests"] = [e.to_dict() for e in entries]
    doc.update(rest)
    if ann:
        doc["annotations"] = ann
    if a.edits:
        doc = apply_edits(json.loads(json.dumps(doc)), a.edits)

    manifest = _validate(doc, a.content)
    labels = {e.digest: e.source for e in entries}
    by_digest = {e.digest: e for e in entries}
    final: list[Entry] = []
    for raw in manifest.json["manifests"]:
        d = Digest.parse(raw["digest"])
        c = a.content[d]
        prior = by_digest.get(d)
        final.append(
            Entry(
                dict(raw),
                labels.get(d, c.source),
                prior.store if prior is not None else c.store,
                prior.manifest if prior is not None and prior.manifest is not None else c.manifest,
            )
        )
    if not a.allow_duplicate_platforms:
        _check_duplicates(final)
    _check_docker(manifest, final)
    return BuiltIndex(manifest, final, replaced, a.ctx, a.stores)


def _validate(doc: dict[str, Any], content: Mapping[Digest, _Content]) -> Manifest:
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


def _check_duplicates(entries: Sequence[Entry]) -> None:
    seen: dict[tuple[str, str, str, str], Entry] = {}
    for e in entries:
        if e.is_attestation or e.platform is None:
            continue
        key = _platform_key(e.platform)
        prev = seen.get(key)
        if prev is not None and prev.digest != e.digest:
            raise UsageError(
                f"duplicate platform {e.platform}: {prev.digest} from {prev.source} and "
                f"{e.digest} from {e.source} (--allow-duplicate-platforms keeps both)"
            )
        seen.setdefault(key, e)


def _check_docker(manifest: Manifest, entries: Sequence[Entry]) -> None:
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


# --------------------------------------------------------------------------
# Public operations
# --------------------------------------------------------------------------


def _check_format(fmt: str | None) -> None:
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown index format {fmt!r} (oci or docker)")


def _sources(sources: Iterable[str | Source]) -> list[Source]:
    return [Source.coerce(s) for s in sources]


def build(
    sources: Iterable[str | Source],
    *,
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    allow_duplicate_platforms: bool = False,
    flatten: bool = True,
    ctx: Context | None = None,
) -> BuiltIndex:
    """Build an index from *sources* in memory; nothing is written.

    Sources are addresses (registry, ``oci:``, ``oci-archive:``,
    ``docker-archive:``) or :class:`Source` objects with overrides; images and
    indexes alike (indexes are flattened unless ``flatten=False``).
    *format* is ``"oci"`` (default) or ``"docker"``. *edits* are jq programs
    run on the index JSON, whose result is validated.
    """
    ctx = ctx or default_context()
    _check_format(format)
    srcs = _sources(sources)
    if not srcs:
        raise UsageError("no sources given")
    r = _Resolver(ctx, flatten)
    groups = _safely(r, lambda: r.resolve_all(srcs))
    a = _Assembly(
        ctx,
        r.content,
        r.stores,
        format=format or OCI,
        annotations=dict(annotations or {}),
        edits=edits,
        allow_duplicate_platforms=allow_duplicate_platforms,
    )
    return _safely(r, lambda: _assemble(a, groups))


def _safely(r: _Resolver, fn: Callable[[], _T]) -> _T:
    """Run *fn*; on any error release the stores *r* opened."""
    try:
        return fn()
    except BaseException:
        r.abort()
        raise


def _base_entries(
    r: _Resolver, store: Store, desc: Descriptor, m: Manifest, label: str
) -> tuple[dict[str, Any] | None, list[Entry]]:
    r.remember(desc, store, label, m)
    if not m.is_index:
        plat = config_platform(store, m, label)
        raw = _bare(desc).to_dict()
        if plat is not None:
            raw["platform"] = plat.to_dict()
        return None, [Entry(raw, label, store, m)]
    entries = []
    for raw, child in zip(m.json["manifests"], m.manifests, strict=True):
        r.remember(child, store, label, None)
        entries.append(Entry(dict(raw), label, store, None))
    return dict(m.json), entries


def build_append(
    base: str | Source,
    sources: Iterable[str | Source],
    *,
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    allow_duplicate_platforms: bool = False,
    flatten: bool = True,
    ctx: Context | None = None,
) -> BuiltIndex:
    """The index at *base* with *sources* added; nothing is written.

    A plain image at *base* becomes an index holding it; a missing *base*
    means an empty one. A new entry with the platform of an existing one
    replaces it (see :attr:`BuiltIndex.replaced`).
    """
    ctx = ctx or default_context()
    _check_format(format)
    srcs = _sources(sources)
    r = _Resolver(ctx, flatten)
    base_doc: dict[str, Any] | None = None
    base_entries: list[Entry] = []
    try:
        store, desc, m, mine = _open_source(base, ctx)
    except NotFound:
        if not srcs:
            raise
    else:
        if mine:
            r.stores.append(store)
        label = str(base)
        base_doc, base_entries = _safely(r, lambda: _base_entries(r, store, desc, m, label))
    if not srcs:
        raise UsageError("no sources given")
    groups = _safely(r, lambda: r.resolve_all(srcs))
    a = _Assembly(
        ctx,
        r.content,
        r.stores,
        base_doc=base_doc,
        base_entries=base_entries,
        format=format or (None if base_doc is not None else OCI),
        annotations=dict(annotations or {}),
        edits=edits,
        allow_duplicate_platforms=allow_duplicate_platforms,
    )
    return _safely(r, lambda: _assemble(a, groups))


def _selectors(values: Iterable[Platform | str]) -> list[Platform]:
    return [Platform.parse(v) if isinstance(v, str) else v for v in values]


def build_filter(
    ref: str | Source,
    *,
    platforms: Iterable[Platform | str] = (),
    exclude: Iterable[Platform | str] = (),
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    ctx: Context | None = None,
) -> BuiltIndex:
    """The index at *ref* keeping only *platforms*, or dropping *exclude*; nothing is written.

    Matching is on normalised platforms (``linux/arm64`` matches
    ``linux/arm64/v8``); attestations go with their images.
    """
    ctx = ctx or default_context()
    _check_format(format)
    keep, drop = _selectors(platforms), _selectors(exclude)
    if bool(keep) == bool(drop):
        raise UsageError("give either platforms to keep or platforms to exclude")
    r = _Resolver(ctx, True)
    store, desc, m, mine = _open_source(ref, ctx)
    if mine:
        r.stores.append(store)
    if not m.is_index:
        r.abort()
        raise UsageError(f"{ref} is an image, not an index")
    label = str(ref)
    base_doc, entries = _safely(r, lambda: _base_entries(r, store, desc, m, label))

    def chosen(e: Entry) -> bool:
        if e.platform is None:
            return bool(drop)
        hit = any(s.matches(e.platform) for s in (keep or drop))
        return hit if keep else not hit

    removed = {e.digest for e in entries if not e.is_attestation and not chosen(e)}
    kept = _drop_with_attestations(entries, removed)
    if keep:
        kept_images = {e.digest for e in kept if not e.is_attestation}
        kept = [e for e in kept if not e.is_attestation or e.subject in kept_images]
    if not [e for e in kept if not e.is_attestation]:
        have = ", ".join(str(e.platform) for e in entries if not e.is_attestation) or "none"
        r.abort()
        raise UsageError(f"{ref}: no entries would remain (the index has: {have})")
    a = _Assembly(
        ctx,
        r.content,
        r.stores,
        base_doc=base_doc,
        base_entries=kept,
        format=format,
        annotations=dict(annotations or {}),
        edits=edits,
        allow_duplicate_platforms=True,
    )
    return _safely(r, lambda: _assemble(a, []))


def _push_all(
    built: BuiltIndex,
    primary: str | Store,
    extra: Sequence[str],
    progress: Progress | None,
    on_plan: Callable[[Plan], None] | None,
) -> Descriptor:
    try:
        if isinstance(primary, Store):
            return built.push(primary, extra, progress=progress, on_plan=on_plan)
        desc = built.descriptor
        for addr, tags in destinations(primary, extra):
            desc = built.push(addr, tags, progress=progress, on_plan=on_plan)
        return desc
    finally:
        built.close()


def create(
    target: str | Store,
    sources: Iterable[str | Source],
    *,
    tags: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    allow_duplicate_platforms: bool = False,
    flatten: bool = True,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Descriptor:
    """Build an index from *sources* and push it to *target* (and *tags*); returns its descriptor.

    *tags* are extra tags in the target repository, or full addresses.
    Everything is validated before anything is written.
    """
    if isinstance(target, str):
        destinations(target, tags)  # fail on a bad target before any work
    built = build(
        sources,
        annotations=annotations,
        edits=edits,
        format=format,
        allow_duplicate_platforms=allow_duplicate_platforms,
        flatten=flatten,
        ctx=ctx,
    )
    return _push_all(built, target, tags, progress, on_plan)


def targets_of(base: str, targets: Sequence[str]) -> tuple[str, list[str]]:
    """The primary target and extra tags for append/filter (``-t`` or back to *base*)."""
    if not targets:
        return base, []
    first = targets[0]
    if valid_tag(first):
        addr = parse_address(base)
        if addr.reference is not None:
            first = str(addr.reference.with_tag(first))
        else:
            first = f"{addr.transport}:{addr.path}:{first}"
    return first, list(targets[1:])


def append(
    base: str,
    sources: Iterable[str | Source],
    *,
    targets: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    allow_duplicate_platforms: bool = False,
    flatten: bool = True,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Descriptor:
    """Add *sources* to the index (or image) at *base* and push it back, or to *targets*."""
    primary, extra = targets_of(base, targets)
    destinations(primary, extra)
    built = build_append(
        base,
        sources,
        annotations=annotations,
        edits=edits,
        format=format,
        allow_duplicate_platforms=allow_duplicate_platforms,
        flatten=flatten,
        ctx=ctx,
    )
    return _push_all(built, primary, extra, progress, on_plan)


def filter(
    ref: str,
    *,
    platforms: Iterable[Platform | str] = (),
    exclude: Iterable[Platform | str] = (),
    targets: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    edits: Sequence[str] = (),
    format: str | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Descriptor:
    """Keep (or drop) entries of the index at *ref* by platform and push the result."""
    primary, extra = targets_of(ref, targets)
    destinations(primary, extra)
    built = build_filter(
        ref,
        platforms=platforms,
        exclude=exclude,
        annotations=annotations,
        edits=edits,
        format=format,
        ctx=ctx,
    )
    return _push_all(built, primary, extra, progress, on_plan)


@dataclass
class Listing:
    """The entries of an index (or the single image) at a reference."""

    descriptor: Descriptor
    manifest: Manifest
    entries: list[Entry]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the index descriptor and its entries (attestations marked)."""
        out = []
        for e in self.entries:
            d = e.to_dict()
            d["attestation"] = e.is_attestation
            if e.subject is not None:
                d["subject"] = str(e.subject)
            out.append(d)
        return {**self.descriptor.to_dict(), "manifests": out}


def list_entries(ref: str | Source, *, ctx: Context | None = None) -> Listing:
    """The entries of the index at *ref*; a plain image lists as one entry."""
    ctx = ctx or default_context()
    r = _Resolver(ctx, True)
    store, desc, m, mine = _open_source(ref, ctx)
    try:
        _, entries = _base_entries(r, store, desc, m, str(ref))
    finally:
        if mine:
            store.close()
    return Listing(_bare(desc), m, entries)
