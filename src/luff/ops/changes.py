"""What ``luff mutate`` changes, and the pure functions that change it (no I/O).

:class:`Changes` holds the requested edits. :func:`edit_config` applies them
to one image config (then the ``--config-set`` jq programs) and validates
the result; :func:`edit_manifest` points an image manifest at its new config
and layers; :func:`edit_index` rewrites an index's entries in place, keeping
their order, platforms and annotations. Each returns its input unchanged
(same bytes) when nothing changed. The parsers turn command-line text into
these values.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from luff.errors import InvalidManifest, InvalidPlatform, UsageError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, is_digest
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.ops.index.edits import apply_edits
from luff.ops.index.resolve import is_attestation
from luff.ops.layers import Layer, source_date_epoch


@dataclass(frozen=True)
class Changes:
    """The edits asked for, the same for every selected image.

    ``entrypoint`` and ``cmd`` are argument lists (an empty list removes the
    field); ``created`` is an RFC 3339 time in UTC (see :func:`parse_created`).
    """

    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    workdir: str | None = None
    user: str | None = None
    config_edits: Sequence[str] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    index_annotations: Mapping[str, str] = field(default_factory=dict)
    created: str | None = None

    @property
    def config_section(self) -> bool:
        """True when the ``config`` object of the image config is edited."""
        return bool(self.labels or self.env) or any(
            v is not None for v in (self.entrypoint, self.cmd, self.workdir, self.user)
        )

    @property
    def touches_config(self) -> bool:
        """True when every selected image's config is edited (layers aside)."""
        return self.config_section or bool(self.config_edits) or self.created is not None

    @property
    def touches_images(self) -> bool:
        """True when image manifests change (layers aside)."""
        return self.touches_config or bool(self.annotations)


# --- parsing command-line values --------------------------------------------------------


def parse_pairs(values: Iterable[str], flag: str) -> dict[str, str]:
    """``{KEY: VALUE}`` from repeated ``KEY=VALUE`` values (the last one of a key wins)."""
    out: dict[str, str] = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq or not key:
            raise UsageError(f"{flag} {v!r}: expected KEY=VALUE")
        out[key] = value
    return out


def parse_command(text: str, flag: str) -> list[str]:
    """A JSON array of strings, or *text* split as a POSIX shell would (``shlex``)."""
    if text.strip().startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"{flag} {text!r}: not a JSON array ({e.msg})") from None
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise UsageError(f"{flag} {text!r}: the JSON array must hold strings only")
        return value
    try:
        return shlex.split(text)
    except ValueError as e:
        raise UsageError(f"{flag} {text!r}: {e}") from None


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)"
)


def _time(text: str) -> tuple[datetime, str] | None:
    """The UTC time and the fraction (``.123``) of an RFC 3339 time; None when it is not one."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    zone = m.group(8)
    offset = timedelta(0)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        t = datetime(y, mo, d, h, mi, s, tzinfo=timezone(offset))
    except ValueError:
        return None
    return t.astimezone(timezone.utc), m.group(7) or ""


def _format(t: datetime, fraction: str = "") -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def parse_created(text: str) -> str:
    """An RFC 3339 time (or ``now``: the current second) as UTC text: ``2024-05-01T12:00:00Z``."""
    if text.strip().lower() == "now":
        return _format(datetime.now(timezone.utc))
    parsed = _time(text.strip())
    if parsed is None:
        raise UsageError(
            f"--created {text!r}: not an RFC 3339 time (e.g. 2024-05-01T12:00:00Z) or 'now'"
        )
    return _format(*parsed)


def epoch_time(seconds: int) -> str:
    """*seconds* since 1970 as RFC 3339 UTC text."""
    return _format(datetime.fromtimestamp(seconds, timezone.utc))


@dataclass(frozen=True)
class Append:
    """A layer to add: a path, for every selected image or only those of ``platform``."""

    path: str
    platform: Platform | None = None

    @classmethod
    def parse(cls, text: str) -> Append:
        """``PATH`` or ``PLATFORM=PATH`` (a path that exists is never split)."""
        left, eq, right = text.partition("=")
        if eq and left and right and not os.path.exists(text):
            try:
                return cls(right, Platform.parse(left))
            except InvalidPlatform:
                pass
        return cls(text)

    @classmethod
    def coerce(cls, value: str | os.PathLike[str] | Append) -> Append:
        """An :class:`Append` as given, or parsed from ``[PLATFORM=]PATH`` or a path."""
        if isinstance(value, Append):
            return value
        return cls.parse(value) if isinstance(value, str) else cls(os.fspath(value))

    def __str__(self) -> str:
        return f"{self.platform}={self.path}" if self.platform is not None else self.path


def _created(created: str | None) -> str | None:
    if created is not None:
        return parse_created(created)
    epoch = source_date_epoch()
    return epoch_time(epoch) if epoch is not None else None


def changes_of(
    *,
    labels: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    config_edits: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    index_annotations: Mapping[str, str] | None = None,
    created: str | None = None,
) -> Changes:
    """A :class:`Changes` from keyword arguments; *created* (RFC 3339, or ``now``) defaults
    to ``SOURCE_DATE_EPOCH`` when that is set."""
    for name, value in (("entrypoint", entrypoint), ("cmd", cmd)):
        if isinstance(value, str):
            raise UsageError(f"{name} is a list of arguments, not a string")
    return Changes(
        labels=dict(labels or {}),
        env=dict(env or {}),
        entrypoint=list(entrypoint) if entrypoint is not None else None,
        cmd=list(cmd) if cmd is not None else None,
        workdir=workdir,
        user=user,
        config_edits=list(config_edits),
        annotations=dict(annotations or {}),
        index_annotations=dict(index_annotations or {}),
        created=_created(created),
    )


# --- the image config ------------------------------------------------------------------

WINDOWS_APPEND = (
    "cannot --append to a Windows image: its layers need the Windows layer format "
    "(Files/ and Hives/ with PAX headers), which luff does not make"
)


def _config_platform(cfg: Mapping[str, Any]) -> Platform | None:
    try:
        return Platform.from_config(cfg)
    except InvalidPlatform:
        return None


def edit_config(
    data: bytes, changes: Changes, layers: Sequence[Layer] = (), *, where: str = ""
) -> bytes | None:
    """The image config *data* with *changes* and *layers* applied, validated.

    The flags' edits come first, then the layers (``rootfs.diff_ids`` and, if
    the config keeps one, ``history``), then the jq programs. Returns None
    when the result equals the input (the image keeps its digest).
    """
    try:
        cfg = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidManifest("the image config is not JSON", where=where) from None
    if not isinstance(cfg, dict):
        raise InvalidManifest("the image config is not a JSON object", where=where)
    if layers and str(cfg.get("os", "")).lower() == "windows":
        raise UsageError(WINDOWS_APPEND, where=where)
    before = copy.deepcopy(cfg)
    platform = _config_platform(cfg)
    rootfs = cfg.get("rootfs")
    old_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(old_ids, list):
        raise InvalidManifest("the image config has no rootfs.diff_ids", where=where)
    expected = [*old_ids, *(str(layer.diff_id) for layer in layers)]

    if changes.config_section:
        section = cfg.get("config") or {}
        if not isinstance(section, dict):
            raise InvalidManifest("the image config's 'config' is not an object", where=where)
        if changes.labels:
            section["Labels"] = {**(section.get("Labels") or {}), **changes.labels}
        if changes.env:
            section["Env"] = merge_env(section.get("Env") or [], changes.env)
        for key, value in (("Entrypoint", changes.entrypoint), ("Cmd", changes.cmd)):
            if value is not None:
                if value:
                    section[key] = list(value)
                else:
                    section.pop(key, None)
        if changes.workdir is not None:
            section["WorkingDir"] = changes.workdir
        if changes.user is not None:
            section["User"] = changes.user
        cfg["config"] = section
    if changes.created is not None:
        cfg["created"] = changes.created
    if layers:
        rootfs["diff_ids"] = list(expected)  # type: ignore[index]
        history = cfg.get("history")
        if isinstance(history, list):
            when = cfg.get("created") if isinstance(cfg.get("created"), str) else None
            for layer in layers:
                entry = {"created": when} if when else {}
                entry["created_by"] = f"luff mutate --append {layer.name}"
                history.append(entry)
    cfg = apply_edits(cfg, changes.config_edits, flag="--config-set", what="an image config")
    check_config(cfg, expected, platform, where=where)
    if cfg == before:
        return None
    return json.dumps(cfg, separators=(",", ":")).encode()


def merge_env(env: Sequence[str], new: Mapping[str, str]) -> list[str]:
    """*env* (``KEY=VALUE`` strings) with *new* set: a key already there keeps its place."""
    out = list(env)
    for key, value in new.items():
        item = f"{key}={value}"
        for i, e in enumerate(out):
            if isinstance(e, str) and e.partition("=")[0] == key:
                out[i] = item
                break
        else:
            out.append(item)
    return out


def _strings(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _string_map(v: object) -> bool:
    return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())


_SECTION_TYPES: dict[str, tuple[str, Any]] = {
    "Env": ("a list of strings", _strings),
    "Entrypoint": ("a list of strings", _strings),
    "Cmd": ("a list of strings", _strings),
    "Labels": ("an object of strings", _string_map),
    "ExposedPorts": ("an object", lambda v: isinstance(v, dict)),
    "Volumes": ("an object", lambda v: isinstance(v, dict)),
    "WorkingDir": ("a string", lambda v: isinstance(v, str)),
    "User": ("a string", lambda v: isinstance(v, str)),
    "StopSignal": ("a string", lambda v: isinstance(v, str)),
}


def check_config(
    cfg: Mapping[str, Any],
    diff_ids: Sequence[str],
    platform: Platform | None = None,
    *,
    where: str = "",
) -> None:
    """Refuse a config that would not describe the image: the fields an image config
    must have, with their types; ``rootfs.diff_ids`` exactly *diff_ids*; *platform* kept."""

    def bad(why: str) -> InvalidManifest:
        return InvalidManifest(f"the image config would be invalid: {why}", where=where)

    for key in ("os", "architecture"):
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            raise bad(f"{key!r} must be a non-empty string")
    after = _config_platform(cfg)
    if platform is not None and (after is None or not after.same(platform)):
        raise bad(f"the platform changed from {platform} to {after}; mutate keeps platforms")
    created = cfg.get("created")
    if created is not None and (not isinstance(created, str) or _time(created) is None):
        raise bad(f"'created' must be an RFC 3339 time, not {json.dumps(created)}")
    section = cfg.get("config")
    if section is not None:
        if not isinstance(section, dict):
            raise bad("'config' must be an object")
        for key, (what, ok) in _SECTION_TYPES.items():
            if section.get(key) is not None and not ok(section[key]):
                raise bad(f"config.{key} must be {what}")
    rootfs = cfg.get("rootfs")
    if not isinstance(rootfs, dict):
        raise bad("'rootfs' is missing")
    if rootfs.get("type") != "layers":
        raise bad("rootfs.type must be 'layers'")
    ids = rootfs.get("diff_ids")
    if not isinstance(ids, list) or not _strings(ids) or not all(is_digest(x) for x in ids):
        raise bad("rootfs.diff_ids must be a list of digests")
    if list(ids) != list(diff_ids):
        raise bad(
            f"rootfs.diff_ids ({len(ids)}) no longer match the image's layers ({len(diff_ids)})"
        )
    history = cfg.get("history")
    if history is not None:
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise bad("'history' must be a list of objects")
        for h in history:
            for key in ("created_by", "author", "comment"):
                if h.get(key) is not None and not isinstance(h[key], str):
                    raise bad(f"history {key} must be a string")
            when = h.get("created")
            if when is not None and (not isinstance(when, str) or _time(when) is None):
                raise bad(f"history 'created' must be an RFC 3339 time, not {json.dumps(when)}")
            if h.get("empty_layer") is not None and not isinstance(h["empty_layer"], bool):
                raise bad("history empty_layer must be true or false")


# --- manifests and indexes --------------------------------------------------------------


def edit_manifest(
    m: Manifest,
    *,
    config: Descriptor | None = None,
    layers: Sequence[Descriptor] = (),
    annotations: Mapping[str, str] | None = None,
    where: str = "",
) -> Manifest:
    """Image manifest *m* pointing at *config* (if given), with *layers* added and
    *annotations* set; *m* itself when that changes nothing."""
    if config is None and not layers and not annotations:
        return m
    doc = json.loads(m.data)
    if config is not None:
        c = {k: v for k, v in doc["config"].items() if k != "data"}
        c["digest"], c["size"] = str(config.digest), config.size
        doc["config"] = c
    doc["layers"] = [*doc["layers"], *(d.to_dict() for d in layers)]
    if annotations:
        if m.media_type == mt.DOCKER_MANIFEST:
            keys = ", ".join(annotations)
            raise UsageError(
                f"a Docker image manifest has no annotations (asked for: {keys})", where=where
            )
        doc["annotations"] = {**(doc.get("annotations") or {}), **annotations}
    new = Manifest.from_dict(doc, m.media_type)
    return m if new.json == m.json else new


@dataclass(frozen=True)
class AttestationChange:
    """An attestation whose image changed: dropped, or re-pointed at the new image."""

    digest: Digest
    subject: Digest
    new_subject: Digest
    kept: bool

    def to_dict(self) -> dict[str, Any]:
        """The change as JSON (``luff mutate --json``)."""
        return {
            "digest": str(self.digest),
            "subject": str(self.subject),
            "newSubject": str(self.new_subject),
            "action": "re-pointed" if self.kept else "dropped",
        }


def edit_index(
    index: Manifest,
    replaced: Mapping[Digest, Descriptor],
    *,
    annotations: Mapping[str, str] | None = None,
    keep_attestations: bool = False,
    where: str = "",
) -> tuple[Manifest, list[AttestationChange]]:
    """*index* with each entry in *replaced* pointing at its new manifest (platform,
    annotations and order kept) and *annotations* set.

    Attestations of a replaced image are dropped, or with *keep_attestations*
    re-pointed at the new image. Returns *index* itself when nothing changed.
    """
    doc = json.loads(index.data)
    entries: list[dict[str, Any]] = []
    notes: list[AttestationChange] = []
    for raw in doc["manifests"]:
        d = Descriptor.from_dict(raw)
        new = replaced.get(d.digest)
        if new is not None:
            raw = {k: v for k, v in raw.items() if k != "data"}
            raw["digest"], raw["size"] = str(new.digest), new.size
        elif is_attestation(d):
            ref = d.annotations.get(mt.REFERENCE_DIGEST, "")
            subject = Digest.parse(ref) if is_digest(ref) else None
            if subject is not None and subject in replaced:
                now = replaced[subject].digest
                notes.append(AttestationChange(d.digest, subject, now, keep_attestations))
                if not keep_attestations:
                    continue
                raw = {**raw, "annotations": {**raw["annotations"], mt.REFERENCE_DIGEST: str(now)}}
        entries.append(raw)
    doc["manifests"] = entries
    if annotations:
        if index.media_type == mt.DOCKER_LIST:
            keys = ", ".join(annotations)
            raise UsageError(
                f"a Docker manifest list has no annotations (asked for: {keys})", where=where
            )
        doc["annotations"] = {**(doc.get("annotations") or {}), **annotations}
    result = Manifest.from_dict(doc, index.media_type)
    return (index if result.json == index.json else result), notes
