"""Index options, and the spec files that give them (``luff index create -f spec.yaml``).

A spec lists sources with their per-source overrides, index annotations,
jq edits and tags::

    target: registry.example.com/app:1.4     # optional; a TARGET argument wins
    tags: [latest]
    format: oci                               # or docker
    annotations:
      org.opencontainers.image.source: https://example.com/app
    set:
      - '.annotations["org.example.built-by"] = "ci"'
    allow-duplicate-platforms: false
    flatten: true
    sources:
      - build.internal:5000/app-amd64:1.4
      - ref: docker.io/library/alpine:3.20   # an index: keep two of its platforms
        only: [linux/amd64, linux/arm64]
      - ref: oci:./out/windows:1.4           # relative to the spec file
        platform: windows/amd64:10.0.17763.1234   # short form or a mapping
        os.features: [win32k]
        annotations:
          org.example.flavour: servercore

JSON is YAML, so a ``.json`` spec works too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from luff.errors import InvalidPlatform, UsageError
from luff.model.address import FILE_TRANSPORTS
from luff.model.platform import Platform
from luff.ops.index.sources import Source
from luff.record import Record

if TYPE_CHECKING:
    from pathlib import Path

_TOP = {
    "target",
    "tags",
    "format",
    "annotations",
    "set",
    "allow-duplicate-platforms",
    "flatten",
    "sources",
}
_SOURCE = {"ref", "only", "platform", "variant", "os.version", "os.features", "annotations"}


class IndexOptions(Record):
    """What ``index create|append|filter`` take besides their base: sources and settings.

    Produced by the CLI's flags, by a spec file (:func:`load_spec`), or by
    code; :meth:`merged` combines a spec with flags (flags win, lists add).
    ``tags`` are more places to push to: tags in the target's repository,
    or full addresses.
    """

    sources: list[Source]
    target: str | None
    tags: list[str]
    annotations: dict[str, str]
    edits: list[str]
    format: str | None
    allow_duplicate_platforms: bool
    flatten: bool

    def __init__(
        self,
        sources: list[Source] | None = None,
        target: str | None = None,
        tags: list[str] | None = None,
        annotations: dict[str, str] | None = None,
        edits: list[str] | None = None,
        format: str | None = None,
        allow_duplicate_platforms: bool = False,
        flatten: bool = True,
    ) -> None:
        self.sources = [] if sources is None else sources
        self.target = target
        self.tags = [] if tags is None else tags
        self.annotations = {} if annotations is None else annotations
        self.edits = [] if edits is None else edits
        self.format = format
        self.allow_duplicate_platforms = allow_duplicate_platforms
        self.flatten = flatten

    def merged(self, later: IndexOptions) -> IndexOptions:
        """These options, then *later*'s: lists are joined, single values taken from *later*."""
        return IndexOptions(
            sources=[*self.sources, *later.sources],
            target=later.target or self.target,
            tags=[*self.tags, *later.tags],
            annotations={**self.annotations, **later.annotations},
            edits=[*self.edits, *later.edits],
            format=later.format or self.format,
            allow_duplicate_platforms=self.allow_duplicate_platforms
            or later.allow_duplicate_platforms,
            flatten=self.flatten and later.flatten,
        )


def load_spec(path: str | os.PathLike[str]) -> IndexOptions:
    """Read and check a YAML (or JSON) spec file."""
    from pathlib import Path

    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{e.strerror}", where=path) from None
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{path}: not a YAML or JSON text file ({e.reason} at byte {e.start})"
        ) from None
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise UsageError(f"invalid YAML{where}: {problem}", where=path) from None
    return parse_spec(obj, str(path), base_dir=p.parent)


def parse_spec(obj: Any, where: str = "spec", base_dir: Path | None = None) -> IndexOptions:
    """Check a spec already parsed into Python objects.

    Relative paths of ``oci:``/``oci-archive:``/``docker-archive:`` sources are
    taken relative to *base_dir*.
    """
    if not isinstance(obj, Mapping):
        raise UsageError("a spec is a mapping with a 'sources' list", where=where)
    _no_unknown_keys(obj, _TOP, where)
    raw_sources = obj.get("sources") or []
    if not isinstance(raw_sources, list):
        raise UsageError("'sources' must be a list", where=where)
    sources = [_source(s, f"{where}: sources[{i}]", base_dir) for i, s in enumerate(raw_sources)]
    target = obj.get("target")
    if target is not None and not isinstance(target, str):
        raise UsageError("'target' must be a string", where=where)
    fmt = obj.get("format")
    if fmt is not None and fmt not in ("oci", "docker"):
        raise UsageError("'format' must be oci or docker", where=where)
    return IndexOptions(
        sources=sources,
        target=target,
        tags=_strings(obj.get("tags"), f"{where}: 'tags'"),
        annotations=_annotations(obj.get("annotations"), f"{where}: 'annotations'"),
        edits=_strings(obj.get("set"), f"{where}: 'set'"),
        format=fmt,
        allow_duplicate_platforms=_bool(obj, "allow-duplicate-platforms", False, where),
        flatten=_bool(obj, "flatten", True, where),
    )


def _bool(obj: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    v = obj.get(key, default)
    if not isinstance(v, bool):
        raise UsageError(f"{key!r} must be true or false", where=where)
    return v


def _strings(v: Any, where: str) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str | int | float) for x in v):
        raise UsageError(f"{where} must be a list of strings")
    return [str(x) for x in v]


def _annotations(v: Any, where: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise UsageError(f"{where} must map keys to values")
    out = {}
    for k, val in v.items():
        if not isinstance(k, str) or isinstance(val, Mapping | list) or val is None:
            raise UsageError(f"{k!r} must be a string value", where=where)
        if isinstance(val, bool):
            val = "true" if val else "false"
        out[k] = str(val)
    return out


def _rebase(address: str, base_dir: Path | None) -> str:
    if base_dir is None:
        return address
    for t in FILE_TRANSPORTS:
        prefix = t + ":"
        if address.startswith(prefix):
            rest = address[len(prefix) :]
            if rest and not os.path.isabs(rest) and str(base_dir) not in ("", "."):
                return prefix + os.path.join(str(base_dir), rest)
    return address


def _no_unknown_keys(obj: Mapping[Any, Any], known: Iterable[str], where: str) -> None:
    unknown = set(obj) - set(known)
    if unknown:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
            f"(known: {', '.join(sorted(known))})"
        )


def _source(s: Any, where: str, base_dir: Path | None) -> Source:
    if isinstance(s, str):
        return Source(_rebase(s, base_dir))
    if not isinstance(s, Mapping):
        raise UsageError("a source is an address or a mapping with 'ref'", where=where)
    _no_unknown_keys(s, _SOURCE, where)
    ref = s.get("ref")
    if not isinstance(ref, str) or not ref:
        raise UsageError("'ref' (the source address) is required", where=where)
    platform = None
    p = s.get("platform")
    try:
        if isinstance(p, str):
            platform = Platform.parse(p)
        elif isinstance(p, Mapping):
            platform = Platform.from_dict(p)
        elif p is not None:
            raise UsageError("'platform' must be OS/ARCH[/VARIANT] or a mapping", where=where)
    except InvalidPlatform as e:
        raise InvalidPlatform(f"{e}", where=where) from None
    variant = s.get("variant")
    version = s.get("os.version")
    for key, val in (("variant", variant), ("os.version", version)):
        if val is not None and not isinstance(val, str | int | float):
            raise UsageError(f"{key!r} must be a string", where=where)
    features = s.get("os.features")
    if "only" in s and not s["only"]:
        raise UsageError("'only' must name at least one platform", where=where)
    try:
        picked = tuple(Platform.parse(x) for x in _strings(s.get("only"), f"{where}: 'only'"))
    except InvalidPlatform as e:
        raise InvalidPlatform(f"'only': {e}", where=where) from None
    return Source(
        _rebase(ref, base_dir),
        platform,
        str(variant) if variant is not None else None,
        str(version) if version is not None else None,
        tuple(_strings(features, f"{where}: 'os.features'")) if features is not None else None,
        _annotations(s.get("annotations"), f"{where}: 'annotations'"),
        only=picked,
    )
