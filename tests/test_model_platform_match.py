"""Platform matchers: only, only_strict, ordered, any_of, best_match and ranked."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from luff.model.descriptor import Descriptor
from luff.model.matching import any_of, best_match, only, only_strict, ordered, ranked
from luff.model.platform import Platform


def P(text: str) -> Platform:
    return Platform.parse(text)


def names(ps: list[Platform]) -> list[str]:
    return [p.to_specifier() for p in ps]


# --- only: what a host runs, best first ------------------------------------------------

ALL = [
    "linux/386",
    "linux/amd64",
    "linux/amd64/v2",
    "linux/amd64/v3",
    "linux/amd64/v4",
    "linux/arm/v5",
    "linux/arm/v6",
    "linux/arm/v7",
    "linux/arm/v8",
    "linux/arm64",
    "linux/arm64/v8.2",
    "linux/arm64/v9",
    "linux/arm64/v9.1",
    "linux/s390x",
    "windows/amd64",
]


@pytest.mark.parametrize(
    ("host", "runs"),
    [
        ("linux/amd64", ["linux/amd64", "linux/386"]),
        ("linux/amd64/v3", ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]),
        ("linux/386", ["linux/386"]),
        (
            "linux/arm64",
            ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"],
        ),
        (
            "linux/arm64/v9",
            [
                "linux/arm64/v9",
                "linux/arm64/v8.2",
                "linux/arm64",
                "linux/arm/v8",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5",
            ],
        ),
        ("linux/arm/v8", ["linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v7", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v6", ["linux/arm/v6", "linux/arm/v5"]),
        ("linux/s390x", ["linux/s390x"]),
        ("windows/amd64", ["windows/amd64"]),
    ],
)
def test_only_ranks_what_a_host_runs(host: str, runs: list[str]) -> None:
    candidates = [P(x) for x in ALL]
    random.Random(host).shuffle(candidates)
    assert names(ranked(only(host), candidates)) == runs
    assert best_match(only(host), candidates) == P(runs[0])


def test_only_arm64_levels() -> None:
    m = only("linux/arm64/v9.2")
    for v in ["v9.2", "v9.1", "v9", "v9.0", "v8.7", "v8.1", "v8", "8", "v8.0"]:
        assert m.match(P(f"linux/arm64/{v}")), v
    for v in ["v9.3", "v8.8", "v8.10", "v10"]:
        assert not m.match(P(f"linux/arm64/{v}")), v
    assert names(ranked(m, [P("linux/arm64/v8.7"), P("linux/arm64/v9")])) == [
        "linux/arm64/v9",
        "linux/arm64/v8.7",
    ]


def test_only_unknown_arm64_level_matches_itself() -> None:
    # containerd's Only matches nothing at all here; luff keeps the exact platform.
    m = only("linux/arm64/v8.10")
    assert m.match(P("linux/arm64/v8.10"))
    assert not m.match(P("linux/arm64"))


def test_only_amd64_levels_in_order() -> None:
    m = only("linux/amd64/v3")
    cands = [P(x) for x in ["linux/386", "linux/amd64/v1", "linux/amd64/v2", "linux/amd64/v3"]]
    assert names(ranked(m, cands)) == [
        "linux/amd64/v3",
        "linux/amd64/v2",
        "linux/amd64/v1",
        "linux/386",
    ]


def test_only_normalises_both_sides() -> None:
    m = only(Platform("Linux", "aarch64", "8"))
    assert m.match(Platform("linux", "arm64", "v8"))
    assert m.match(Platform("linux", "armhf"))
    assert only("linux/x86_64").match(Platform("linux", "i386"))


# --- only_strict -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("want", "candidate", "expected"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/amd64/v1", True),
        ("linux/amd64", "linux/amd64/v3", False),
        ("linux/amd64", "linux/386", False),
        ("linux/amd64/v3", "linux/amd64/v2", False),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64", "linux/aarch64", True),
        ("linux/arm64", "linux/arm64/v9", False),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/arm", "linux/arm/v7", True),
        ("linux/arm", "linux/armhf", True),
        ("linux/arm", "linux/arm/v6", False),
        ("linux/arm/v6", "linux/armel", True),
        ("linux/riscv64", "linux/riscv64/rva22", False),
        ("linux/amd64", "windows/amd64", False),
        # os.version counts for Windows only (containerd); luff's old matches() differs.
        ("linux/amd64:5.10", "linux/amd64:6.1", True),
    ],
)
def test_only_strict(want: str, candidate: str, expected: bool) -> None:
    assert only_strict(want).match(P(candidate)) is expected


def test_os_features_must_be_a_subset_of_the_selectors() -> None:
    gpu = Platform("linux", "amd64", os_features=("gpu",))
    assert not only_strict("linux/amd64").match(gpu)
    assert only_strict(gpu).match(P("linux/amd64"))
    assert only_strict("linux(+gpu+simd)/amd64").match(gpu)
    # win32k is ignored on Windows.
    win = Platform("windows", "amd64", "", "10.0.17763.1", ("win32k",))
    assert only_strict("windows/amd64").match(win)
    assert not only_strict("windows/amd64").match(Platform("windows", "amd64", os_features=("x",)))


# --- ordered and any_of ----------------------------------------------------------------


def test_ordered_ranks_in_the_order_given() -> None:
    m = ordered("linux/s390x", "linux/arm64", P("linux/amd64"))
    cands = [P(x) for x in ["linux/amd64", "linux/ppc64le", "linux/arm64/v8", "linux/s390x"]]
    assert names(ranked(m, cands)) == ["linux/s390x", "linux/arm64/v8", "linux/amd64"]
    assert not m.match(P("linux/386"))  # ordered is strict per platform


def test_any_of_has_no_preference() -> None:
    m = any_of("linux/s390x", "linux/arm64")
    cands = [P(x) for x in ["linux/arm64", "linux/amd64", "linux/s390x"]]
    assert names(ranked(m, cands)) == ["linux/arm64", "linux/s390x"]
    assert best_match(m, cands) == P("linux/arm64")
    assert not m.match(P("linux/arm/v7"))


def test_more_os_features_rank_first() -> None:
    m = only("linux(+a+b)/amd64")
    cands = [P("linux/amd64"), P("linux(+a)/amd64"), P("linux(+a+b)/amd64"), P("linux(+c)/amd64")]
    assert names(ranked(m, cands)) == ["linux(+a+b)/amd64", "linux(+a)/amd64", "linux/amd64"]


# --- Windows os.version -----------------------------------------------------------------


def test_windows_prefers_the_requested_build_then_the_highest_revision() -> None:
    m = only("windows/amd64:10.0.26100.100")
    cands = [
        P("linux/amd64"),
        P("windows/amd64"),  # no os.version: matches, ranks after every version
        P("windows/amd64:10.0.20348.3000"),  # Server 2022 runs on a 2025 host
        P("windows/amd64:10.0.26100.50"),
        P("windows/amd64:10.0.26100.2894"),
        P("windows/amd64:10.0.17763.9999"),  # 2019: not on a 2025 host
        P("windows/amd64:10.0.26200.1"),  # newer than the host
        Platform("windows", "amd64", "", "10.0.26100.2894", ("win32k",)),
    ]
    assert [str(p) for p in ranked(m, cands)] == [
        "windows/amd64:10.0.26100.2894",
        "windows/amd64:10.0.26100.2894",
        "windows/amd64:10.0.26100.50",
        "windows/amd64:10.0.20348.3000",
        "windows/amd64",
    ]
    # Equal version: the one with more os.features first (win32k counts).
    assert ranked(m, cands)[0].os_features == ("win32k",)


def test_windows_revision_is_compared_as_a_number() -> None:
    m = only_strict("windows/amd64:10.0.17763.1")
    cands = [P("windows/amd64:10.0.17763.999"), P("windows/amd64:10.0.17763.1234")]
    assert best_match(m, cands) == cands[1]


def test_windows_without_a_requested_version_keeps_list_order() -> None:
    cands = [P("windows/amd64:10.0.17763.1"), P("windows/amd64"), P("windows/amd64:10.0.26100.1")]
    assert ranked(only("windows/amd64"), cands) == cands


def test_windows_build_before_2022_must_be_equal() -> None:
    m = only("windows/amd64:10.0.17763")
    assert m.match(P("windows/amd64:10.0.17763.5820"))
    assert not m.match(P("windows/amd64:10.0.17134.1"))
    assert not m.match(P("windows/amd64:10.0.20348.1"))
    assert not m.match(P("windows/amd64:6.3.17763"))
    assert not m.match(P("windows/amd64:garbage"))
    # A requested version that is no major.minor.build matches any.
    assert only("windows/amd64:garbage").match(P("windows/amd64:10.0.1.1"))


# --- best_match and ranked ---------------------------------------------------------------


def _desc(platform: str | None) -> Descriptor:
    return Descriptor.for_bytes(
        "application/x", (platform or "none").encode(), platform=P(platform) if platform else None
    )


def test_best_match_with_a_key() -> None:
    entries = [_desc(None), _desc("linux/386"), _desc("linux/arm64/v8"), _desc("linux/amd64")]
    got = best_match(only("linux/amd64"), entries, key=lambda d: d.platform)
    assert got is entries[3]
    got = best_match(only("linux/arm64"), entries, key=lambda d: d.platform)
    assert got is entries[2]
    assert best_match(only("linux/s390x"), entries, key=lambda d: d.platform) is None
    assert ranked(only("linux/amd64"), entries, key=lambda d: d.platform) == [
        entries[3],
        entries[1],
    ]


def test_best_match_keeps_list_order_on_ties() -> None:
    a, b, c = (
        Platform("linux", "arm64"),
        Platform("linux", "aarch64"),
        Platform("linux", "arm64", "v8"),
    )
    assert best_match(only("linux/arm64"), [a, b, c]) is a
    assert best_match(only("linux/arm64"), [c, b, a]) is c
    assert ranked(only("linux/arm64"), [b, c, a]) == [b, c, a]


def test_best_match_of_nothing() -> None:
    assert best_match(only("linux/amd64"), []) is None
    assert ranked(only("linux/amd64"), []) == []


def test_matchers_describe_themselves() -> None:
    assert repr(only("linux/amd64")) == "only(linux/amd64, linux/386)"
    assert repr(only_strict("linux/arm")) == "only_strict(linux/arm/v7)"
    assert repr(any_of("linux/amd64", "windows/amd64")) == "any_of(linux/amd64, windows/amd64)"


# --- properties ----------------------------------------------------------------------------

_arch = st.sampled_from(
    ["amd64", "x86_64", "386", "i386", "arm64", "aarch64", "arm", "armhf", "armel", "s390x"]
)
_variant = st.sampled_from(["", "v1", "v2", "v3", "v5", "v6", "v7", "v8", "8", "v8.3", "v9", "9"])


@st.composite
def platforms(draw: st.DrawFn) -> Platform:
    return Platform(
        draw(st.sampled_from(["linux", "Linux", "windows", "freebsd"])),
        draw(_arch),
        draw(_variant),
        draw(st.sampled_from(["", "10.0.17763.1", "10.0.20348.5", "10.0.26100.1", "x"])),
        tuple(draw(st.lists(st.sampled_from(["a", "b", "win32k"]), max_size=2))),
    )


@given(platforms())
def test_a_platform_matches_itself(p: Platform) -> None:
    assert only_strict(p).match(p)
    assert only(p).match(p)
    assert only(p).match(p.normalized())


@given(platforms(), platforms())
def test_strict_matches_are_host_matches(want: Platform, p: Platform) -> None:
    if only_strict(want).match(p):
        assert only(want).match(p)
        assert want.normalized().architecture == p.normalized().architecture


@given(platforms(), st.lists(platforms(), max_size=8), st.randoms())
def test_best_match_is_first_of_ranked(
    want: Platform, cands: list[Platform], rnd: random.Random
) -> None:
    rnd.shuffle(cands)
    best = best_match(only(want), cands)
    r = ranked(only(want), cands)
    assert best == (r[0] if r else None)
    assert all(only(want).match(c) for c in r)
    assert len(r) == sum(only(want).match(c) for c in cands)


@given(platforms(), st.lists(platforms(), max_size=8))
def test_the_exact_platform_wins(want: Platform, cands: list[Platform]) -> None:
    want = Platform(want.os, want.architecture, want.variant)  # no os.version nor features
    got = best_match(only(want), [*cands, want])
    assert got is not None and only_strict(want).match(got)
