"""containerd/platforms' own test tables, run against luff's platforms.

Source: https://github.com/containerd/platforms at commit
09756f59cb1d6b3fb368f371043d36e634789537 (2026-03-31). Each table names its
file and Go test. Where luff differs on purpose the case says so.

Translation: containerd's ``Parse`` normalises, luff's keeps what was written,
so "Parse gives X" becomes ``parse(...).same(X)`` / normalised fields;
``NewMatcher(p)`` and ``OnlyStrict(p)`` are :func:`only_strict`, ``Only`` is
:func:`only`, ``Ordered``/``Any`` are :func:`ordered`/:func:`any_of`;
``FormatAll`` is :meth:`Platform.to_specifier`. containerd fills a single word
from ``runtime.GOOS``/``GOARCH``; here the host is fixed (luff's host OS is
always linux).
"""

from __future__ import annotations

import functools

import pytest

from luff.errors import InvalidPlatform
from luff.model.matching import Matcher, any_of, best_match, only, only_strict, ordered
from luff.model.platform import Platform, detect_host_platform

COMMIT = "09756f59cb1d6b3fb368f371043d36e634789537"

HOSTS = [
    Platform("linux", "amd64"),
    Platform("linux", "arm", "v6"),
    Platform("linux", "arm64", "v8"),
]


def _default_arch_variant(host: Platform) -> tuple[str, str]:
    # TestParseSelector: defaultVariant is cpuVariant() only on arm, and only if not v7.
    variant = host.variant if host.architecture == "arm" and host.variant != "v7" else ""
    return host.architecture, variant


def _sorted(m: Matcher, specs: list[str]) -> list[str]:
    ps = [Platform.parse(s) for s in specs]

    def cmp(a: Platform, b: Platform) -> int:
        return -1 if m.less(a, b) else 1 if m.less(b, a) else 0

    # Go's sort.Slice is an insertion sort below 12 elements, i.e. stable like Python's.
    return [p.to_specifier() for p in sorted(ps, key=functools.cmp_to_key(cmp))]


# --- platforms_test.go: TestParseSelector ------------------------------------------------

# (input, expected (os, arch, variant, os.version, os.features); "{os}", "{arch}" and
# "{variant}" stand for the host's; matches; formatted)
PARSE_SELECTOR = [
    (
        "linux/arm64",
        ("linux", "arm64", "", "", ()),
        ["linux/aarch64", "linux/aarch64/v8", "linux/arm64/v8"],
        "linux/arm64",
    ),
    (
        "linux/arm64/v8",
        ("linux", "arm64", "v8", "", ()),
        ["linux/aarch64", "linux/aarch64/v8", "linux/arm64"],
        "linux/arm64/v8",
    ),
    (
        "linux/arm",
        ("linux", "arm", "", "", ()),
        ["linux/arm/v7", "linux/armhf", "linux/arm/7"],
        "linux/arm",
    ),
    ("linux/arm/v6", ("linux", "arm", "v6", "", ()), ["linux/armel"], "linux/arm/v6"),
    ("linux/arm/v7", ("linux", "arm", "v7", "", ()), ["linux/arm", "linux/armhf"], "linux/arm/v7"),
    ("arm", ("{os}", "arm", "", "", ()), [], "{os}/arm"),
    ("armel", ("{os}", "arm", "v6", "", ()), [], "{os}/arm/v6"),
    ("armhf", ("{os}", "arm", "", "", ()), [], "{os}/arm"),
    ("Aarch64", ("{os}", "arm64", "", "", ()), [], "{os}/arm64"),
    ("x86_64", ("{os}", "amd64", "", "", ()), [], "{os}/amd64"),
    ("Linux/x86_64", ("linux", "amd64", "", "", ()), [], "linux/amd64"),
    ("i386", ("{os}", "386", "", "", ()), [], "{os}/386"),
    ("linux", ("linux", "{arch}", "{variant}", "", ()), [], "linux/{arch}/{variant}"),
    ("s390x", ("{os}", "s390x", "", "", ()), [], "{os}/s390x"),
    ("linux/s390x", ("linux", "s390x", "", "", ()), [], "linux/s390x"),
    ("macOS", ("darwin", "{arch}", "{variant}", "", ()), [], "darwin/{arch}/{variant}"),
    ("windows", ("windows", "{arch}", "{variant}", "", ()), [], "windows/{arch}/{variant}"),
    ("windows()", ("windows", "{arch}", "{variant}", "", ()), [], "windows/{arch}/{variant}"),
    (
        "windows(10.0.17763)",
        ("windows", "{arch}", "{variant}", "10.0.17763", ()),
        [],
        "windows(10.0.17763)/{arch}/{variant}",
    ),
    (
        "windows(10.0.17763+win32k)",
        ("windows", "{arch}", "{variant}", "10.0.17763", ("win32k",)),
        [],
        "windows(10.0.17763+win32k)/{arch}/{variant}",
    ),
    (
        "linux(+gpu)",
        ("linux", "{arch}", "{variant}", "", ("gpu",)),
        [],
        "linux(+gpu)/{arch}/{variant}",
    ),
    (
        "linux(+gpu+simd)",
        ("linux", "{arch}", "{variant}", "", ("gpu", "simd")),
        [],
        "linux(+gpu+simd)/{arch}/{variant}",
    ),
    (
        "linux(+unsorted+erofs)",
        ("linux", "{arch}", "{variant}", "", ("unsorted", "erofs")),
        [],
        "linux(+erofs+unsorted)/{arch}/{variant}",
    ),
    (
        "windows(10.0.17763%2Bbuild.42)",
        ("windows", "{arch}", "{variant}", "10.0.17763+build.42", ()),
        [],
        "windows(10.0.17763%2Bbuild.42)/{arch}/{variant}",
    ),
    (
        "windows(10.0.17763%2Bbuild.42+win32k)",
        ("windows", "{arch}", "{variant}", "10.0.17763+build.42", ("win32k",)),
        [],
        "windows(10.0.17763%2Bbuild.42+win32k)/{arch}/{variant}",
    ),
    (
        "windows(50%25done)",
        ("windows", "{arch}", "{variant}", "50%done", ()),
        [],
        "windows(50%25done)/{arch}/{variant}",
    ),
]


@pytest.mark.parametrize("host", HOSTS, ids=str)
@pytest.mark.parametrize(
    ("text", "expected", "matches", "formatted"), PARSE_SELECTOR, ids=[c[0] for c in PARSE_SELECTOR]
)
def test_parse_selector(
    host: Platform,
    text: str,
    expected: tuple[str, str, str, str, tuple[str, ...]],
    matches: list[str],
    formatted: str,
) -> None:
    arch, variant = _default_arch_variant(host)

    def fill(s: str) -> str:
        s = s.replace("{os}", host.os).replace("{arch}", arch).replace("{variant}", variant)
        return s.rstrip("/")  # Go's path.Join drops an empty variant

    os_, exp_arch, exp_variant, version, feats = expected
    want = Platform(fill(os_), fill(exp_arch), fill(exp_variant), version, feats)
    p = Platform.parse(text, host=host)
    n = p.normalized()
    assert n == want.normalized()
    assert p.os_features == want.os_features  # as written, not sorted
    m = only_strict(p)
    assert m.match(want)
    for other in matches:
        assert m.match(Platform.parse(other, host=host)), other
    # Re-parsing the formatted output is stable.
    again = Platform.parse(fill(formatted), host=host)
    assert again.normalized() == n
    assert again.to_specifier() == fill(formatted)


# --- platforms_test.go: TestFormatAllEncoding, TestFormatAllSkipsEmptyOSFeatures ------------


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        (
            Platform("windows", "amd64", os_version="10.0.17763+build.42"),
            "windows(10.0.17763%2Bbuild.42)/amd64",
        ),
        (
            Platform("windows", "amd64", os_version="10.0.17763+build.42", os_features=("win32k",)),
            "windows(10.0.17763%2Bbuild.42+win32k)/amd64",
        ),
        (Platform("windows", "amd64", os_version="50%done"), "windows(50%25done)/amd64"),
        (Platform("windows", "amd64", os_version="1.0(beta)"), "windows(1.0%28beta%29)/amd64"),
        (Platform("windows", "amd64", os_version="a/b"), "windows(a%2Fb)/amd64"),
        (Platform("windows", "amd64", os_version="10.0.17763"), "windows(10.0.17763)/amd64"),
        (Platform("linux", "amd64", os_features=("feat+v2",)), "linux(+feat%2Bv2)/amd64"),
        (Platform("linux", "amd64", os_features=("100%gpu",)), "linux(+100%25gpu)/amd64"),
        (
            Platform("windows", "amd64", os_version="10.0+build", os_features=("feat+1",)),
            "windows(10.0%2Bbuild+feat%2B1)/amd64",
        ),
    ],
)
def test_format_all_encoding(platform: Platform, expected: str) -> None:
    assert platform.to_specifier() == expected
    again = Platform.parse(expected)
    assert (again.os_version, again.os_features) == (platform.os_version, platform.os_features)


def test_format_all_skips_empty_os_features() -> None:
    p = Platform("linux", "amd64", os_features=("", "gpu", "", "simd"))
    assert p.to_specifier() == "linux(+gpu+simd)/amd64"


# --- platforms_test.go: TestParseSelectorInvalid ------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "/linux/arm", "linux/arm/", "linux /arm", "linux/&arm", "linux/arm/foo/bar"]
)
def test_parse_selector_invalid(text: str) -> None:
    with pytest.raises(InvalidPlatform):
        Platform.parse(text)


# --- compare_test.go: TestOnly and TestOnlyStrict ------------------------------------------

ONLY = {
    "linux/amd64": (
        ["linux/amd64", "linux/386"],
        ["linux/amd64/v2", "linux/arm/v7", "linux/arm64", "windows/amd64", "windows/arm"],
    ),
    "linux/amd64/v2": (
        ["linux/amd64", "linux/amd64/v1", "linux/amd64/v2", "linux/386"],
        [
            "linux/amd64/v3",
            "linux/amd64/v4",
            "linux/arm/v7",
            "linux/arm64",
            "windows/amd64",
            "windows/arm",
        ],
    ),
    "linux/386": (
        ["linux/386"],
        ["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/amd64", "windows/arm"],
    ),
    "windows/amd64": (
        ["windows/amd64", "windows(10.0.17763)/amd64"],
        ["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"],
    ),
    "linux/arm/v8": (
        ["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8"],
        ["linux/amd64", "linux/arm/v4", "linux/arm64", "windows/amd64", "windows/arm"],
    ),
    "linux/arm/v7": (
        ["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7"],
        [
            "linux/amd64",
            "linux/arm/v4",
            "linux/arm/v8",
            "linux/arm64",
            "windows/amd64",
            "windows/arm",
        ],
    ),
    "linux/arm/v6": (
        ["linux/arm/v5", "linux/arm/v6"],
        [
            "linux/amd64",
            "linux/arm",
            "linux/arm/v4",
            "linux/arm/v7",
            "linux/arm/v8",
            "linux/arm64",
            "windows/amd64",
            "windows/arm",
        ],
    ),
    "linux/arm/v5": (
        ["linux/arm/v5"],
        [
            "linux/amd64",
            "linux/arm",
            "linux/arm/v4",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
            "linux/arm64",
            "windows/amd64",
            "windows/arm",
        ],
    ),
    "linux/arm/v4": (
        ["linux/arm/v4"],
        [
            "linux/amd64",
            "linux/arm",
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
            "linux/arm64",
            "windows/amd64",
            "windows/arm",
        ],
    ),
    "linux/arm64/v9.6": (
        [
            "linux/arm",
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
            "linux/arm64",
            "linux/arm64/v8",
            *(f"linux/arm64/v8.{n}" for n in range(1, 10)),
            "linux/arm64/v9",
            *(f"linux/arm64/v9.{n}" for n in range(7)),
        ],
        ["linux/amd64", "linux/arm/v4", "windows/amd64", "windows/arm", "linux/arm64/v8.10"],
    ),
    "linux/arm64/v9": (
        [
            "linux/arm",
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
            "linux/arm64",
            "linux/arm64/v8",
            *(f"linux/arm64/v8.{n}" for n in range(1, 6)),
            "linux/arm64/v9",
            "linux/arm64/v9.0",
        ],
        ["linux/amd64", "linux/arm/v4", "windows/amd64", "windows/arm", "linux/arm64/v8.6"],
    ),
    "linux/arm64/v8.1": (
        [
            "linux/arm",
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
            "linux/arm64",
            "linux/arm64/v8",
            "linux/arm64/v8.1",
        ],
        [
            "linux/amd64",
            "linux/arm/v4",
            "linux/arm/v9",
            "linux/arm64/v9",
            "windows/amd64",
            "windows/arm",
        ],
    ),
    "linux/arm64": (
        [
            "linux/arm",
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
            "linux/arm64",
            "linux/arm64/v8",
        ],
        [
            "linux/amd64",
            "linux/arm/v4",
            "linux/arm/v9",
            "linux/arm64/v9",
            "windows/amd64",
            "windows/arm",
        ],
    ),
}

_NOT_ARM = ["linux/amd64", "linux/arm/v4", "windows/amd64", "windows/arm"]
_ARM32 = ["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8"]

ONLY_STRICT = {
    "linux/amd64": (
        ["linux/amd64"],
        ["linux/386", "linux/arm/v7", "linux/arm64", "windows/amd64", "windows/arm"],
    ),
    "linux/386": (
        ["linux/386"],
        ["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/amd64", "windows/arm"],
    ),
    "windows/amd64": (
        ["windows/amd64", "windows(10.0.17763)/amd64"],
        ["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"],
    ),
    "windows(10.0.17763)/amd64": (
        ["windows/amd64", "windows(10.0.17763)/amd64"],
        ["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"],
    ),
    "linux/arm/v8": (
        ["linux/arm/v8"],
        [
            "linux/arm",
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm64",
            *_NOT_ARM,
        ],
    ),
    "linux/arm/v7": (
        ["linux/arm", "linux/arm/v7"],
        ["linux/arm/v5", "linux/arm/v6", "linux/arm/v8", "linux/arm64", *_NOT_ARM],
    ),
    "linux/arm/v6": (
        ["linux/arm/v6"],
        ["linux/arm/v5", "linux/arm", "linux/arm/v7", "linux/arm/v8", "linux/arm64", *_NOT_ARM],
    ),
    "linux/arm/v5": (
        ["linux/arm/v5"],
        ["linux/arm", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8", "linux/arm64", *_NOT_ARM],
    ),
    "linux/arm/v4": (
        ["linux/arm/v4"],
        [
            "linux/amd64",
            "linux/arm",
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
            "linux/arm64",
            "windows/amd64",
            "windows/arm",
        ],
    ),
    "linux/arm64/v9.5": (
        ["linux/arm64/v9.5"],
        [
            *_ARM32,
            *_NOT_ARM,
            "linux/arm64/v8",
            "linux/arm64/v8.1",
            "linux/arm64/v9",
            "linux/arm64/v9.1",
            "linux/arm64/v9.4",
        ],
    ),
    "linux/arm64/v9": (
        ["linux/arm64/v9", "linux/arm64/v9.0"],
        [*_ARM32, *_NOT_ARM, "linux/arm/v9", "linux/arm64/v8", "linux/arm64/v8.1"],
    ),
    "linux/arm64/v8.1": (
        ["linux/arm64/v8.1"],
        [*_ARM32, *_NOT_ARM, "linux/arm/v9", "linux/arm64/v8", "linux/arm64/v9"],
    ),
    "linux/arm64": (
        ["linux/arm64", "linux/arm64/v8"],
        [*_ARM32, *_NOT_ARM, "linux/arm/v9", "linux/arm64/v9"],
    ),
}


def _cases(table: dict[str, tuple[list[str], list[str]]]) -> list[tuple[str, str, bool]]:
    return [
        (want, other, ok)
        for want, (yes, no) in table.items()
        for ok, others in ((True, yes), (False, no))
        for other in others
    ]


@pytest.mark.parametrize(("want", "candidate", "expected"), _cases(ONLY))
def test_only(want: str, candidate: str, expected: bool) -> None:
    assert only(Platform.parse(want)).match(Platform.parse(candidate)) is expected


@pytest.mark.parametrize(("want", "candidate", "expected"), _cases(ONLY_STRICT))
def test_only_strict(want: str, candidate: str, expected: bool) -> None:
    assert only_strict(Platform.parse(want)).match(Platform.parse(candidate)) is expected


# --- compare_test.go: TestCompareOSFeatures --------------------------------------------------

COMPARE_OS_FEATURES = [
    (
        "linux/amd64",
        ["windows/amd64", "linux/amd64", "linux(+other)/amd64", "linux/arm64"],
        ["linux/amd64", "linux(+other)/amd64", "windows/amd64", "linux/arm64"],
    ),
    (
        "linux(+none)/amd64",
        ["windows/amd64", "linux/amd64", "linux/arm64", "linux(+other)/amd64"],
        ["linux/amd64", "linux(+other)/amd64", "windows/amd64", "linux/arm64"],
    ),
    (
        "linux(+other)/amd64",
        ["windows/amd64", "linux/amd64", "linux/arm64", "linux(+other)/amd64"],
        ["linux(+other)/amd64", "linux/amd64", "windows/amd64", "linux/arm64"],
    ),
    (
        "linux(+af+other+zf)/amd64",
        ["windows/amd64", "linux/amd64", "linux/arm64", "linux(+other)/amd64"],
        ["linux(+other)/amd64", "linux/amd64", "windows/amd64", "linux/arm64"],
    ),
    (
        "linux(+f1+f2)/amd64",
        ["linux/amd64", "linux(+f2)/amd64", "linux(+f1)/amd64", "linux(+f1+f2)/amd64"],
        ["linux(+f1+f2)/amd64", "linux(+f2)/amd64", "linux(+f1)/amd64", "linux/amd64"],
    ),
    (
        # containerd: "should likely fail ... when os version is considered for linux"
        "linux(7.2+other)/amd64",
        ["linux/amd64", "linux(+other)/amd64", "linux(7.1)/amd64", "linux(7.2+other)/amd64"],
        ["linux(+other)/amd64", "linux(7.2+other)/amd64", "linux/amd64", "linux(7.1)/amd64"],
    ),
]


@pytest.mark.parametrize("kind", ["only", "only_strict", "ordered", "any_of"])
@pytest.mark.parametrize(("want", "platforms", "expected"), COMPARE_OS_FEATURES)
def test_compare_os_features(
    kind: str, want: str, platforms: list[str], expected: list[str]
) -> None:
    p = Platform.parse(want)
    m = {"only": only, "only_strict": only_strict, "ordered": ordered, "any_of": any_of}[kind](p)
    assert _sorted(m, platforms) == expected


# --- platform_windows_compat_test.go: Test_PlatformCompat -----------------------------------

LTSC2019, LTSC2022, WIN11_22H2, V23H2, LTSC2025 = 17763, 20348, 22621, 25398, 26100


@pytest.mark.parametrize(
    ("host", "ctr", "runs"),
    [
        (LTSC2019, LTSC2019, True),
        (LTSC2019, LTSC2022, False),
        (LTSC2022, LTSC2019, False),
        (LTSC2022, LTSC2022, True),
        (WIN11_22H2, LTSC2019, False),
        (WIN11_22H2, LTSC2022, True),
        (V23H2, LTSC2019, False),
        (V23H2, LTSC2022, True),
        (LTSC2025, LTSC2022, True),
        (LTSC2022, LTSC2025, False),
        (LTSC2022, WIN11_22H2, False),
        (LTSC2025, WIN11_22H2, True),
    ],
)
def test_windows_platform_compat(host: int, ctr: int, runs: bool) -> None:
    m = only_strict(Platform("windows", "amd64", os_version=f"10.0.{host}"))
    assert m.match(Platform("windows", "amd64", os_version=f"10.0.{ctr}")) is runs


# --- platform_windows_compat_test.go: Test_PlatformOrder ------------------------------------

LINUX = Platform("linux", "amd64")
WS2022 = Platform("windows", "amd64", os_version="10.0.20348.3091")
WS2025 = Platform("windows", "amd64", os_version="10.0.26100.2894")
WS2025_REV3000 = Platform("windows", "amd64", os_version="10.0.26100.3000")


@pytest.mark.parametrize(
    ("host", "platforms", "want"),
    [
        (WS2022, [LINUX, WS2022, WS2025], WS2022),
        (WS2025, [LINUX, WS2022, WS2025], WS2025),
        (WS2025, [LINUX, WS2022, WS2025_REV3000], WS2025_REV3000),
    ],
)
def test_windows_platform_order(host: Platform, platforms: list[Platform], want: Platform) -> None:
    # containerd's windowsMatchComparer (Default() on Windows); luff ranks so in only().
    assert best_match(only(host), platforms) == want
    assert best_match(only_strict(host), platforms) == want


# --- defaults_test.go: TestMatchComparerMatch_ABICheckWCOW, TestWindowsMatchComparerLess -----

WIN_NO_VERSION = Platform("windows", "amd64")
WIN_2019 = Platform("windows", "amd64", os_version="10.0.17763")
WIN_2022 = Platform("windows", "amd64", os_version="10.0.20348")
WIN_11 = Platform("windows", "amd64", os_version="10.0.22621")


@pytest.mark.parametrize(
    ("host", "platform", "match"),
    [
        (WIN_2019, WIN_2019, True),
        (WIN_2019, WIN_2022, False),
        (WIN_2022, WIN_2019, False),
        (WIN_2022, WIN_2022, True),
        (WIN_11, WIN_2019, False),
        (WIN_11, WIN_2022, True),
        (WIN_NO_VERSION, WIN_2019, True),
        (WIN_NO_VERSION, WIN_NO_VERSION, True),
        (WIN_NO_VERSION, WIN_11, True),
    ],
)
def test_abi_check_wcow(host: Platform, platform: Platform, match: bool) -> None:
    assert only_strict(host).match(platform) is match


def test_windows_match_comparer_less() -> None:
    # containerd sorts matching versions by string, highest first; luff numerically (same here).
    platforms = ["10.0.17764.1", "", "10.0.17763.1", "10.0.17763.2", "10.0.17762.1"]
    m = only_strict(Platform("windows", "amd64", os_version="10.0.17763.1"))
    got = _sorted(m, [Platform("windows", "amd64", os_version=v).to_specifier() for v in platforms])
    want = ["10.0.17763.2", "10.0.17763.1", "", "10.0.17764.1", "10.0.17762.1"]
    assert got == [Platform("windows", "amd64", os_version=v).to_specifier() for v in want]


# --- platforms_windows_test.go: TestFallbackOnOSVersion ----------------------------------------


def test_fallback_on_os_version() -> None:
    p = Platform("windows", "amd64", os_version="99.99.99.99")
    assert only_strict(p).match(Platform("windows", "amd64"))


# --- defaults_windows_test.go: TestMatchComparerMatch_WCOW / _LCOW (host build fixed) ---------

BUILD = "10.0.17763"


@pytest.mark.parametrize(
    ("platform", "wcow", "lcow"),
    [
        (Platform("windows", "amd64", os_version=BUILD), True, False),
        (Platform("windows", "amd64", os_version=BUILD + ".1"), True, False),
        (Platform("windows", "amd64", os_version=BUILD + ".2"), True, False),
        (Platform("windows", "amd64", os_version="10.0.17762.1"), False, False),
        (Platform("windows", "amd64", os_version="10.0.17764.1"), False, False),
        (Platform("windows", "amd64"), True, False),
        (Platform("linux", "amd64"), False, True),
    ],
)
def test_match_wcow_lcow(platform: Platform, wcow: bool, lcow: bool) -> None:
    assert only_strict(Platform("windows", "amd64", os_version=BUILD)).match(platform) is wcow
    assert only_strict(Platform("linux", "amd64")).match(platform) is lcow


# --- cpuinfo_linux_test.go: TestGetCPUVariantFromArch (uname -m when cpuinfo says nothing) ------


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("aarch64", "linux/arm64/v8"),
        ("Armv8", "linux/arm/v8"),
        ("armv7", "linux/arm/v7"),
        ("armv6", "linux/arm/v6"),
        ("armv5", "linux/arm/v5"),
        ("armv4", "linux/arm/v4"),
        ("armv3", "linux/arm/v3"),
        # containerd: variant "unknown" (armv9) or an error (armv); luff: no variant.
        ("armv9", "linux/arm"),
        ("armv", "linux/arm"),
        # containerd knows GOARCH is arm and fails; luff only has the name, not an ARM one.
        ("armxxxx", "linux/armxxxx"),
    ],
)
def test_cpu_variant_from_arch(machine: str, expected: str) -> None:
    assert str(detect_host_platform(machine, cpuinfo="")) == expected
