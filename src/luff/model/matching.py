"""Platform matching, as containerd's ``MatchComparer`` does it.

:func:`only` (what a host of a platform can run, best first), :func:`only_strict`
(that platform and no other), :func:`ordered` and :func:`any_of` make a
:class:`Matcher`; :func:`best_match` and :func:`ranked` apply one to a list of
candidates. Platforms are compared normalised (:meth:`Platform.normalized`);
Windows os.versions by the compatibility rules of Windows Server releases.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar, overload

from luff.model.platform import Platform
from luff.record import Record, replace, setfields

__all__ = [
    "Matcher",
    "any_of",
    "best_match",
    "only",
    "only_strict",
    "ordered",
    "ranked",
]

# --- Windows os.version --------------------------------------------------------------------

_LTSC2022 = 20348  # Windows Server 2022
_LTSC2025 = 26100  # Windows Server 2025
_COMPAT_LTSC = (_LTSC2022, _LTSC2025)  # stable-ABI LTSC releases, ascending


class _WinVersion(Record, frozen=True):
    major: int
    minor: int
    build: int
    revision: int  # -1: none or not a number (ranks below any revision)

    def __init__(
        self,
        major: int,
        minor: int,
        build: int,
        revision: int = -1,
    ) -> None:
        setfields(
            self,
            major=major,
            minor=minor,
            build=build,
            revision=revision,
        )

    @classmethod
    def parse(cls, text: str) -> _WinVersion | None:
        """``major.minor.build[.revision]``, or None (containerd then matches anything)."""
        parts = text.split(".")
        if len(parts) < 3:
            return None
        nums = []
        for part, limit in zip(parts[:3], (1 << 8, 1 << 8, 1 << 16), strict=True):
            if not (part.isascii() and part.isdigit()) or int(part) >= limit:
                return None
            nums.append(int(part))
        rev = parts[3] if len(parts) > 3 else ""
        revision = int(rev) if rev.isascii() and rev.isdigit() else -1
        return cls(nums[0], nums[1], nums[2], revision)

    @property
    def empty(self) -> bool:
        return (self.major, self.minor, self.build) == (0, 0, 0)


def _windows_compatible(host: _WinVersion, ctr: _WinVersion) -> bool:
    """Can a Windows *host* run a container built for *ctr* (major.minor.build)?

    Before Windows Server 2022 the builds must be equal; from 2022 on a host
    also runs containers of the previous stable-ABI LTSC release up to itself.
    """
    if (host.major, host.minor) != (ctr.major, ctr.minor):
        return False
    if host.build < _LTSC2022:
        return host.build == ctr.build
    oldest = next((r for r in reversed(_COMPAT_LTSC) if host.build > r), _LTSC2022)
    return oldest <= ctr.build <= host.build


# --- matchers ------------------------------------------------------------------------------


class Matcher(Protocol):
    """Matches and ranks platforms (containerd's ``MatchComparer``)."""

    def match(self, p: Platform) -> bool:
        """True when *p* is acceptable."""
        ...

    def less(self, a: Platform, b: Platform) -> bool:
        """True when *a* ranks before (is preferred to) *b*."""
        ...


class _One:
    """One platform (containerd's ``NewMatcher``), normalised.

    os, architecture and variant must be equal after normalisation; the
    candidate's os.features must be a subset of the selector's (``win32k`` is
    ignored for Windows). os.version counts only for Windows: see
    :func:`_windows_compatible`; a candidate without one matches.
    """

    def __init__(self, p: Platform) -> None:
        self.platform = p.normalized()
        self.windows = self.platform.os == "windows"
        v = _WinVersion.parse(p.os_version) if self.windows else None
        self.version = v if v is not None and not v.empty else None

    def match(self, p: Platform) -> bool:
        n = p.normalized()
        want = self.platform
        if (n.os, n.architecture, n.variant) != (want.os, want.architecture, want.variant):
            return False
        feats = set(n.os_features)
        if self.windows:
            feats.discard("win32k")
        if not feats <= set(want.os_features):
            return False
        if self.version is None or not p.os_version:
            return True
        ctr = _WinVersion.parse(p.os_version) or _WinVersion(0, 0, 0)
        return _windows_compatible(self.version, ctr)

    def rank(self, p: Platform) -> tuple[int, int, int]:
        """Windows preference among matches when an os.version was asked for.

        First the requested build (highest revision first), then other builds
        the host runs (highest first), then entries without an os.version.
        """
        if self.version is None:
            return (0, 0, 0)
        v = _WinVersion.parse(p.os_version)
        if v is None:
            return (2, 0, 0)
        if v.build == self.version.build:
            return (0, 0, -v.revision)
        return (1, -v.build, -v.revision)

    def __repr__(self) -> str:
        return self.platform.to_specifier()


class _Ordered:
    """Matches any of its platforms; ranks by the first of them that matches."""

    def __init__(self, name: str, platforms: Iterable[Platform]) -> None:
        self.name = name
        self.matchers = [_One(p) for p in platforms]

    def match(self, p: Platform) -> bool:
        return any(m.match(p) for m in self.matchers)

    def less(self, a: Platform, b: Platform) -> bool:
        for m in self.matchers:
            am, bm = m.match(a), m.match(b)
            if am != bm:
                return am
            if am:
                ra, rb = m.rank(a), m.rank(b)
                if ra != rb:
                    return ra < rb
                # Prefer the one with more os.features.
                return len(a.os_features) > len(b.os_features)
        if a.os_features or b.os_features:
            # Neither matches: rank as if without os.features (closer misses first).
            return self.less(replace(a, os_features=()), replace(b, os_features=()))
        return False

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(map(repr, self.matchers))})"


class _Any(_Ordered):
    """Matches any of its platforms, with no preference among them."""

    def less(self, a: Platform, b: Platform) -> bool:
        am, bm = self.match(a), self.match(b)
        if am and bm:
            return len(a.os_features) > len(b.os_features)
        if not am and not bm and (a.os_features or b.os_features):
            return self.less(replace(a, os_features=()), replace(b, os_features=()))
        return am and not bm


def _as_platform(p: Platform | str) -> Platform:
    return p if isinstance(p, Platform) else Platform.parse(p)


# containerd's arm64 levels: each runs its own lower minors and, for v9.x, v8.0 to v8.(x+5).
_ARM64_LEVELS: dict[str, tuple[tuple[int, int], ...]] = {
    **{f"v8.{n}": ((8, n),) for n in range(10)},
    **{f"v9.{n}": ((9, n), (8, min(n + 5, 9))) for n in range(8)},
}
_ARM64_LEVELS["v8"] = _ARM64_LEVELS["v8.0"]
_ARM64_LEVELS["v9"] = _ARM64_LEVELS["v9.0"]


def _level(variant: str) -> int | None:
    v = variant.removeprefix("v")
    return int(v) if v.isascii() and v.isdigit() else None


def _compatible(p: Platform) -> list[Platform]:
    """What a host of normalised *p* runs, best first (containerd's platformVector)."""

    def like(arch: str, variant: str = "") -> Platform:
        return replace(p, architecture=arch, variant=variant)

    if p.architecture == "amd64":
        n = _level(p.variant) or 0
        return [p, *(like("amd64", f"v{i}") for i in range(n - 1, 0, -1)), like("386")]
    if p.architecture == "arm":
        n = _level(p.variant) or 0
        return [p, *(like("arm", f"v{i}") for i in range(n - 1, 4, -1))]
    if p.architecture == "arm64":
        levels = _ARM64_LEVELS.get(p.variant or "v8")
        if levels is None:
            return [p]  # containerd matches nothing here, not even p itself
        out = [
            like("arm64", f"v{major}.{minor}" if minor else f"v{major}")
            for major, top in levels
            for minor in range(top, -1, -1)
        ]
        return out + _compatible(like("arm", "v8"))
    return [p]


def only(p: Platform | str) -> Matcher:
    """What a host of platform *p* can run, best first (containerd's ``Only``).

    ``amd64/vN`` runs ``amd64/vN`` down to ``v1``, then ``386``; ``arm/vN`` runs
    down to ``arm/v5``; ``arm64/v8.x`` runs ``arm64/v8.x`` down to ``v8``,
    ``arm64/v9.x`` also ``v8.(x+5)`` down to ``v8`` (at most ``v8.9``), and
    every arm64 also ``arm/v8`` down to ``arm/v5``.
    """
    want = _as_platform(p)
    return _Ordered("only", _compatible(want.normalized()))


def only_strict(p: Platform | str) -> Matcher:
    """Platform *p* and no other (containerd's ``OnlyStrict``).

    A selector without a variant means the default variant: ``linux/arm64``
    matches ``arm64/v8`` but not ``arm64/v9``; ``linux/amd64`` not ``amd64/v3``.
    """
    return _Ordered("only_strict", [_as_platform(p)])


def ordered(*platforms: Platform | str) -> Matcher:
    """Any of *platforms*, ranked in the order given (containerd's ``Ordered``)."""
    return _Ordered("ordered", [_as_platform(p) for p in platforms])


def any_of(*platforms: Platform | str) -> Matcher:
    """Any of *platforms*, with no preference among them (containerd's ``Any``)."""
    return _Any("any_of", [_as_platform(p) for p in platforms])


_T = TypeVar("_T")


def _ranked(
    matcher: Matcher, candidates: Iterable[_T], key: Callable[[_T], Platform | None]
) -> list[tuple[_T, Platform]]:
    hits = [(c, p) for c in candidates if (p := key(c)) is not None and matcher.match(p)]

    def cmp(x: tuple[_T, Platform], y: tuple[_T, Platform]) -> int:
        return -1 if matcher.less(x[1], y[1]) else 1 if matcher.less(y[1], x[1]) else 0

    return sorted(hits, key=functools.cmp_to_key(cmp))


def _identity(p: Platform) -> Platform:
    return p


@overload
def ranked(matcher: Matcher, candidates: Iterable[Platform]) -> list[Platform]: ...
@overload
def ranked(
    matcher: Matcher, candidates: Iterable[_T], key: Callable[[_T], Platform | None]
) -> list[_T]: ...
def ranked(
    matcher: Matcher, candidates: Iterable[Any], key: Callable[[Any], Platform | None] = _identity
) -> list[Any]:
    """The candidates that *matcher* matches, best first (ties keep their order).

    *key* gives a candidate's platform; candidates without one are left out.
    """
    return [c for c, _ in _ranked(matcher, candidates, key)]


@overload
def best_match(matcher: Matcher, candidates: Iterable[Platform]) -> Platform | None: ...
@overload
def best_match(
    matcher: Matcher, candidates: Iterable[_T], key: Callable[[_T], Platform | None]
) -> _T | None: ...
def best_match(
    matcher: Matcher, candidates: Iterable[Any], key: Callable[[Any], Platform | None] = _identity
) -> Any:
    """The candidate *matcher* ranks best among those it matches, or None.

    On a tie the earlier candidate wins. *key* gives a candidate's platform
    (e.g. ``lambda d: d.platform`` for descriptors); None means no platform.
    """
    hits = _ranked(matcher, candidates, key)
    return hits[0][0] if hits else None
