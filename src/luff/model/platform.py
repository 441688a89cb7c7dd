"""Platforms: parse, normalise and format, as containerd's platforms package does.

A :class:`Platform` is kept exactly as written (by an image config, a descriptor
or the user); :meth:`Platform.normalized` gives containerd's canonical form
(``aarch64`` is ``arm64``, whose ``v8`` variant is implied and dropped;
``x86_64`` is ``amd64``; plain ``arm`` is ``arm/v7``; ``armhf`` is ``arm/v7``
and ``armel`` ``arm/v6`` whatever variant they carry; ...) and is what every
comparison uses. :func:`host_platform` is the running machine's platform,
which also fills in what a single-word platform (``arm64``, ``windows``)
leaves out.

Matching platforms (:func:`~luff.model.matching.only`,
:func:`~luff.model.matching.best_match`, ...) is :mod:`luff.model.matching`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from luff.errors import InvalidPlatform
from luff.record import Record, setfields

__all__ = ["Platform", "detect_host_platform", "host_platform"]

# Go's GOOS and GOARCH lists, as containerd's database.go has them.
_GOOS = (
    "aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9"
    " solaris windows zos"
)
_GOARCH = (
    "386 amd64 amd64p32 arm armbe arm64 arm64be ppc64 ppc64le loong64 mips mipsle mips64"
    " mips64le mips64p32 mips64p32le ppc riscv riscv64 s390 s390x sparc sparc64 wasm"
)
KNOWN_OS = frozenset(_GOOS.split())
KNOWN_ARCH = frozenset(_GOARCH.split())

_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]+$")  # arch and variant (containerd's specifierRe)
_OS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # the OS: no dots (containerd's osRe)
_OS_OPTION = re.compile(r"^[A-Za-z0-9_.%-]*$")  # os.version and os.features inside os(...)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FORMS = "expected os/arch[/variant][:os.version], an OS or an architecture"


def _normalize_os(os_: str) -> str:
    os_ = os_.lower()
    return "darwin" if os_ == "macos" else os_


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's normalizeArch: canonical architecture and variant."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return arch, variant


def _decode_option(text: str, what: str, spec: str) -> str:
    if not _OS_OPTION.match(text):
        raise InvalidPlatform(
            f"invalid platform {spec!r}: bad character in {what} {text!r}"
            " (inside os(...) use letters, digits, '_', '.', '-' and %XX escapes)"
        )
    if _BAD_ESCAPE.search(text):
        raise InvalidPlatform(f"invalid platform {spec!r}: bad %-escape in {what} {text!r}")
    if "%" not in text:
        return text
    from urllib.parse import unquote

    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise InvalidPlatform(f"invalid platform {spec!r}: {what} {text!r} is not UTF-8") from None


def _encode_option(text: str) -> str:
    for a, b in (("%", "%25"), ("+", "%2B"), ("(", "%28"), (")", "%29"), ("/", "%2F")):
        text = text.replace(a, b)
    return text


class Platform(Record, frozen=True):
    """An OCI platform: os, architecture and optional details, kept as written."""

    os: str
    architecture: str
    variant: str
    os_version: str
    os_features: tuple[str, ...]
    features: tuple[str, ...]

    def __init__(
        self,
        os: str,
        architecture: str,
        variant: str = "",
        os_version: str = "",
        os_features: tuple[str, ...] = (),
        features: tuple[str, ...] = (),
    ) -> None:
        setfields(
            self,
            os=os,
            architecture=architecture,
            variant=variant,
            os_version=os_version,
            os_features=os_features,
            features=features,
        )

    @classmethod
    def parse(cls, text: str, *, host: Platform | None = None) -> Platform:
        """Parse a platform as the user wrote it; nothing is normalised.

        Accepted forms: ``os/arch[/variant][:os.version]``; containerd's
        ``os(os.version+feature+...)/arch[/variant]``; a single known OS
        (``windows``: the host's architecture and variant) or known
        architecture (``arm64``, ``x86_64``, ``armhf``: the host's OS); a JSON
        object. *host* (default :func:`host_platform`) fills in what a single
        word leaves out.
        """
        text = text.strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise InvalidPlatform(f"invalid platform JSON {text!r}: {e.msg}") from None
            if not isinstance(obj, dict):
                raise InvalidPlatform(f"invalid platform JSON {text!r}: not an object")
            return cls.from_dict(obj, normalize=False)
        return _parse_specifier(text, host)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], *, normalize: bool = False) -> Platform:
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

    @classmethod
    def from_config(cls, cfg: object) -> Platform | None:
        """The platform a parsed image config declares, exactly as written.

        None when it names no os and architecture (an artifact's config, say);
        :class:`InvalidPlatform` when what it names is not a platform.
        """
        if not isinstance(cfg, Mapping) or not cfg.get("os") or not cfg.get("architecture"):
            return None
        keys = ("os", "architecture", "variant", "os.version", "os.features")
        return cls.from_dict({k: cfg[k] for k in keys if cfg.get(k) is not None})

    def normalized(self) -> Platform:
        """containerd's ``Normalize``: canonical os, architecture and variant.

        os.features are sorted and de-duplicated; os.version and features are
        kept.
        """
        arch, variant = _normalize_arch(self.architecture, self.variant)
        return Platform(
            _normalize_os(self.os),
            arch,
            variant,
            self.os_version,
            tuple(sorted(set(self.os_features))),
            self.features,
        )

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

    def to_specifier(self) -> str:
        """containerd's ``FormatAll``: ``os(os.version+feature...)/arch[/variant]``.

        Features are sorted, empty and repeated ones left out; ``%``, ``+``,
        ``(``, ``)`` and ``/`` are %-escaped. :meth:`parse` reads it back.
        """
        feats = sorted({f for f in self.os_features if f})
        head = self.os
        if self.os_version or feats:
            opts = _encode_option(self.os_version)
            if feats:
                opts += "+" + "+".join(_encode_option(f) for f in feats)
            head += f"({opts})"
        return "/".join(x for x in (head, self.architecture, self.variant) if x)

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        if self.variant:
            s += f"/{self.variant}"
        if self.os_version:
            s += f":{self.os_version}"
        return s

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


def _parse_specifier(text: str, host: Platform | None) -> Platform:
    def bad(why: str) -> InvalidPlatform:
        return InvalidPlatform(f"invalid platform {text!r}: {why}")

    if "*" in text:
        raise bad("wildcards are not supported")
    # The OS runs up to the first '/', ':' or '('; os(...) holds version and features.
    cut = min((i for i in (text.find(c) for c in "/:(") if i >= 0), default=len(text))
    os_, rest = text[:cut], text[cut:]
    opt_version, os_features = "", tuple[str, ...]()
    if rest.startswith("("):
        end = rest.find(")")
        if end < 0:
            raise bad(f"'(' after {os_!r} is not closed")
        version_text, *feature_texts = rest[1:end].split("+")
        opt_version = _decode_option(version_text, "os.version", text)
        for f in feature_texts:
            if not f:
                raise bad("empty os.feature in os(...)")
        os_features = tuple(
            f for f in (_decode_option(f, "os.feature", text) for f in feature_texts) if f
        )
        rest = rest[end + 1 :]
        if rest and rest[0] not in "/:":
            raise bad(f"unexpected {rest!r} after {text[: len(text) - len(rest)]!r}")
    path, sep, version = rest.partition(":")
    if sep and not version:
        raise bad("empty os.version after ':'")
    if sep and opt_version:
        raise bad("os.version given twice, in os(...) and after ':'")
    version = version or opt_version
    parts = [os_, *path.split("/")[1:]] if path else [os_]
    if len(parts) > 3 or not all(parts):
        raise bad(_FORMS)
    if not _OS_NAME.match(os_):
        raise bad(f"bad character in {os_!r} (an OS is letters, digits, '_' and '-')")
    for p in parts[1:]:
        if not _COMPONENT.match(p):
            raise bad(f"bad character in {p!r}")
    if len(parts) > 1:
        variant = parts[2] if len(parts) == 3 else ""
        return Platform(os_, parts[1], variant, version, os_features)
    # A single word: a known OS on the host's architecture, or a known architecture on
    # the host's OS (containerd tries the OS first).
    h = (host or host_platform()).normalized()
    if _normalize_os(os_) in KNOWN_OS:
        variant = "" if (h.architecture, h.variant) == ("arm", "v7") else h.variant
        return Platform(os_, h.architecture, variant, version, os_features)
    if _normalize_arch(os_, "")[0] in KNOWN_ARCH:
        return Platform(h.os, os_, "", version, os_features)
    raise bad(f"{os_!r} is neither a known OS nor a known architecture ({_FORMS})")


# --- host ----------------------------------------------------------------------------------

# containerd's reading of /proc/cpuinfo's "CPU architecture" (and of uname -m).
_CPU_VARIANTS = {
    **dict.fromkeys(["8", "aarch64"], "v8"),
    **dict.fromkeys(["7", "7m", *(f"?({n})" for n in range(12, 18))], "v7"),
    **dict.fromkeys(["6", "6tej"], "v6"),
    **dict.fromkeys(["5", "5t", "5te", "5tej"], "v5"),
    **dict.fromkeys(["4", "4t"], "v4"),
    "3": "v3",
}


def _cpuinfo_field(text: str, name: str) -> str | None:
    """The first value of *name* (any case) in /proc/cpuinfo's text."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
    return None


def _arm_level_of_machine(machine: str) -> str | None:
    """``aarch64`` is 8, ``armv7l`` 7, ...; None when *machine* is not ARM."""
    if machine in ("aarch64", "arm64"):
        return "8"
    if machine.startswith("armv") and len(machine) >= 5:
        return machine[4] if machine[4] in "345678" else "unknown"
    return None


def detect_host_platform(
    machine: str, *, system: str = "Linux", cpuinfo: str | None = None, pointer_bits: int = 64
) -> Platform:
    """The platform a host runs, from ``uname -m`` and, on Linux/ARM, /proc/cpuinfo.

    The OS is always ``linux`` (luff's containers are Linux ones, as with
    Docker Desktop on macOS and Windows). The architecture is *machine*'s
    (a 32-bit Python on a 64-bit kernel counts as ``arm`` or ``386``). As in
    containerd only ARM gets a variant: on Linux from cpuinfo's "CPU
    architecture" (else from *machine*; an ARMv6 Raspberry Pi that claims 7 is
    v6), on macOS and Windows ``v8`` for arm64 and ``v7`` for arm; a level
    containerd calls "unknown" is left empty. amd64 levels are not detected.
    """
    m = machine.strip().lower()
    if m in ("i386", "i486", "i586", "i686", "x86"):
        arch = "386"
    elif m.startswith("armv") or m in ("arm", "armhf", "armel"):
        arch = "arm"
    else:
        arch = _normalize_arch(m, "")[0] if m else "amd64"
    if pointer_bits == 32:
        arch = {"arm64": "arm", "amd64": "386"}.get(arch, arch)
    variant = ""
    sysname = system.lower()
    if arch in ("arm", "arm64"):
        if sysname == "linux":
            level = _cpuinfo_field(cpuinfo or "", "CPU architecture") or _arm_level_of_machine(m)
            if level is not None:
                model = _cpuinfo_field(cpuinfo or "", "model name") or ""
                if arch == "arm" and level == "7" and model.lower().startswith("armv6-compatible"):
                    level = "6"
                variant = _CPU_VARIANTS.get(level.lower(), "")
        elif sysname in ("darwin", "windows"):
            variant = "v8" if arch == "arm64" else "v7"
        elif sysname == "freebsd" and arch == "arm64":
            variant = "v8"
    return Platform("linux", arch, variant)


@functools.cache
def host_platform() -> Platform:
    """The platform of the running machine (see :func:`detect_host_platform`)."""
    import platform as _p
    import struct

    machine, system = _p.machine(), _p.system()
    cpuinfo = None
    if system == "Linux" and machine.lower().startswith(("arm", "aarch")):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            pass
    bits = struct.calcsize("P") * 8
    return detect_host_platform(machine, system=system, cpuinfo=cpuinfo, pointer_bits=bits)
