"""Platforms: parse, normalise, format and match.

Normalisation follows containerd: ``aarch64`` becomes ``arm64`` (its ``v8``
variant is implied and dropped), ``x86_64`` becomes ``amd64``, ``armhf`` is
``arm/v7`` and plain ``arm`` means ``arm/v7``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from luff.errors import InvalidPlatform

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
}
_OS_ALIASES = {"macos": "darwin"}
_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Platform:
    """An OCI platform: os, architecture and optional details."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=())
    features: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant][:os.version]`` or a JSON object."""
        text = text.strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise InvalidPlatform(f"invalid platform JSON {text!r}: {e.msg}") from None
            if not isinstance(obj, dict):
                raise InvalidPlatform(f"invalid platform JSON {text!r}: not an object")
            return cls.from_dict(obj)
        main, sep, version = text.partition(":")
        if sep and not version:
            raise InvalidPlatform(f"invalid platform {text!r}: empty os.version after ':'")
        parts = main.split("/")
        if len(parts) < 2 or len(parts) > 3 or any(not p for p in parts):
            raise InvalidPlatform(
                f"invalid platform {text!r}: expected os/arch[/variant][:os.version]"
            )
        for p in parts:
            if not _WORD.match(p):
                raise InvalidPlatform(f"invalid platform {text!r}: bad character in {p!r}")
        return cls(
            os=parts[0],
            architecture=parts[1],
            variant=parts[2] if len(parts) == 3 else "",
            os_version=version,
        ).normalized()

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], *, normalize: bool = True) -> Platform:
        """Build from the OCI JSON form (``os``, ``architecture``, ...).

        With ``normalize=False`` the fields are kept as written (descriptors
        do this, so that re-serialising an entry does not change it).
        """
        os_ = obj.get("os")
        arch = obj.get("architecture")
        if not isinstance(os_, str) or not os_ or not isinstance(arch, str) or not arch:
            raise InvalidPlatform(f"platform needs 'os' and 'architecture' strings: {dict(obj)}")
        variant = obj.get("variant", "") or ""
        version = obj.get("os.version", "") or ""
        osf = obj.get("os.features", []) or []
        feats = obj.get("features", []) or []
        if not isinstance(variant, str) or not isinstance(version, str):
            raise InvalidPlatform(f"platform 'variant' and 'os.version' must be strings: {obj}")
        for name, lst in (("os.features", osf), ("features", feats)):
            if not isinstance(lst, list) or not all(isinstance(x, str) for x in lst):
                raise InvalidPlatform(f"platform {name!r} must be a list of strings")
        p = cls(os_, arch, variant, version, tuple(osf), tuple(feats))
        return p.normalized() if normalize else p

    def normalized(self) -> Platform:
        """The containerd-normalised form of this platform."""
        os_ = self.os.lower()
        os_ = _OS_ALIASES.get(os_, os_)
        arch = self.architecture.lower()
        variant = self.variant.lower()
        if arch in _ARCH_ALIASES:
            arch, default_variant = _ARCH_ALIASES[arch]
            if default_variant and not variant:
                variant = default_variant
        if arch == "arm64" and variant in ("v8", "8", "v8.0"):
            variant = ""
        elif arch == "arm64" and variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        elif arch == "arm":
            if not variant:
                variant = "v7"
            elif variant in ("5", "6", "7", "8"):
                variant = "v" + variant
        elif arch == "amd64" and variant == "v1":
            variant = ""
        return Platform(os_, arch, variant, self.os_version, self.os_features, self.features)

    def to_dict(self) -> dict[str, Any]:
        """The OCI JSON form, with empty fields left out."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        if self.features:
            out["features"] = list(self.features)
        return out

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        if self.variant:
            s += f"/{self.variant}"
        if self.os_version:
            s += f":{self.os_version}"
        return s

    def matches(self, other: Platform) -> bool:
        """True when *other* satisfies this platform as a selector.

        Comparison is on normalised os, architecture and variant; an empty
        variant or os.version in the selector matches any. Normalising gives
        ``arm`` the variant ``v7``, so ``linux/arm`` selects only ``arm/v7``.
        """
        a, b = self.normalized(), other.normalized()
        if a.os != b.os or a.architecture != b.architecture:
            return False
        if a.variant and a.variant != b.variant:
            return False
        return not (a.os_version and a.os_version != b.os_version)

    def same(self, other: Platform) -> bool:
        """True when both name the same platform after normalisation."""
        a, b = self.normalized(), other.normalized()
        return (a.os, a.architecture, a.variant, a.os_version) == (
            b.os,
            b.architecture,
            b.variant,
            b.os_version,
        )

    @property
    def is_unknown(self) -> bool:
        """True for ``unknown/unknown`` (attestation entries)."""
        return self.os == "unknown" and self.architecture == "unknown"


def host_platform() -> Platform:
    """The platform of the running machine (Linux assumed for os)."""
    import platform as _p

    return Platform("linux", _p.machine() or "amd64").normalized()
