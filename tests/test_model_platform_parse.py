"""Platforms: parsing as written, single-word selectors, normalisation, the host."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from luff.errors import InvalidPlatform
from luff.model.platform import (
    KNOWN_ARCH,
    KNOWN_OS,
    Platform,
    detect_host_platform,
    host_platform,
)

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")  # as containerd's DefaultSpec has it
ARMV7 = Platform("linux", "arm", "v7")
ARMV6 = Platform("linux", "arm", "v6")


# --- as written ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("linux/arm64/v8", ("linux", "arm64", "v8", "")),
        ("linux/aarch64", ("linux", "aarch64", "", "")),
        ("Linux/X86_64", ("Linux", "X86_64", "", "")),
        ("linux/arm", ("linux", "arm", "", "")),
        ("linux/armhf/v6", ("linux", "armhf", "v6", "")),
        ("windows/amd64:10.0.17763.1", ("windows", "amd64", "", "10.0.17763.1")),
        ("windows(10.0.17763.1)/amd64", ("windows", "amd64", "", "10.0.17763.1")),
    ],
)
def test_parse_keeps_what_was_written(text: str, fields: tuple[str, str, str, str]) -> None:
    p = Platform.parse(text)
    assert (p.os, p.architecture, p.variant, p.os_version) == fields


def test_as_written_serialises_as_written() -> None:
    p = Platform.parse("linux/arm64/v8")
    assert str(p) == "linux/arm64/v8"
    assert p.to_dict() == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert str(p.normalized()) == "linux/arm64"
    assert p.same(Platform.parse("linux/aarch64"))


def test_json_is_kept_as_written() -> None:
    obj = {"os": "linux", "architecture": "aarch64", "variant": "8", "os.features": ["b", "a", "b"]}
    p = Platform.parse(json.dumps(obj))
    assert p == Platform("linux", "aarch64", "8", "", ("b", "a", "b"))
    assert p.to_dict() == {
        "architecture": "aarch64",
        "os": "linux",
        "variant": "8",
        "os.features": ["b", "a", "b"],
    }
    assert p == Platform.from_dict(obj)
    assert Platform.from_dict(obj, normalize=True) == Platform("linux", "arm64", "", "", ("a", "b"))


def test_os_options_form() -> None:
    p = Platform.parse("windows(10.0.17763+win32k)/amd64")
    assert p == Platform("windows", "amd64", "", "10.0.17763", ("win32k",))
    assert str(p) == "windows/amd64:10.0.17763"
    p = Platform.parse("linux(+unsorted+erofs)/arm64/v8")
    assert p.os_features == ("unsorted", "erofs")  # as written; normalized() sorts
    assert p.normalized().os_features == ("erofs", "unsorted")
    assert Platform.parse("windows()/amd64") == Platform("windows", "amd64")
    assert Platform.parse("windows(10.0%2Bb.1)/amd64").os_version == "10.0+b.1"
    # os(...) with only features combines with ':os.version'.
    p = Platform.parse("windows(+win32k)/amd64:10.0.20348.1")
    assert (p.os_version, p.os_features) == ("10.0.20348.1", ("win32k",))


# --- single words ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "expected"),
    [
        # A known architecture: the host's OS (luff: linux), the architecture as written.
        ("arm64", AMD64, Platform("linux", "arm64")),
        ("x86_64", ARM64, Platform("linux", "x86_64")),
        ("Aarch64", AMD64, Platform("linux", "Aarch64")),
        ("armhf", AMD64, Platform("linux", "armhf")),
        ("armel", AMD64, Platform("linux", "armel")),
        ("i386", AMD64, Platform("linux", "i386")),
        ("s390x", AMD64, Platform("linux", "s390x")),
        ("riscv64", AMD64, Platform("linux", "riscv64")),
        ("arm", ARMV6, Platform("linux", "arm")),
        ("386", AMD64, Platform("linux", "386")),
        # A known OS: the host's architecture and variant (default variants left out).
        ("linux", AMD64, Platform("linux", "amd64")),
        ("linux", ARM64, Platform("linux", "arm64")),
        ("linux", ARMV7, Platform("linux", "arm")),
        ("linux", ARMV6, Platform("linux", "arm", "v6")),
        ("windows", AMD64, Platform("windows", "amd64")),
        ("windows", ARMV6, Platform("windows", "arm", "v6")),
        ("darwin", ARM64, Platform("darwin", "arm64")),
        ("macOS", AMD64, Platform("macOS", "amd64")),
        ("freebsd", Platform("linux", "amd64", "v3"), Platform("freebsd", "amd64", "v3")),
        ("windows:10.0.20348.1", AMD64, Platform("windows", "amd64", "", "10.0.20348.1")),
        (
            "windows(10.0.17763+win32k)",
            AMD64,
            Platform("windows", "amd64", "", "10.0.17763", ("win32k",)),
        ),
        ("linux(+gpu)", ARM64, Platform("linux", "arm64", "", "", ("gpu",))),
        ("arm64(+gpu)", AMD64, Platform("linux", "arm64", "", "", ("gpu",))),
    ],
)
def test_single_word(text: str, host: Platform, expected: Platform) -> None:
    assert Platform.parse(text, host=host) == expected


def test_single_word_defaults_to_this_host() -> None:
    h = host_platform()
    assert Platform.parse("s390x") == Platform(h.os, "s390x")
    assert Platform.parse("linux").normalized().architecture == h.normalized().architecture


@pytest.mark.parametrize("word", ["foo", "i686", "x86", "amd", "gnu", "v7"])
def test_unknown_single_word(word: str) -> None:
    with pytest.raises(InvalidPlatform) as e:
        Platform.parse(word, host=AMD64)
    assert f"{word!r} is neither a known OS nor a known architecture" in str(e.value)


@given(st.sampled_from(sorted(KNOWN_ARCH | {"x86_64", "x86-64", "aarch64", "armhf", "armel"})))
def test_every_known_architecture_is_a_selector(word: str) -> None:
    p = Platform.parse(word, host=ARM64)
    assert (p.os, p.architecture) == ("linux", word)


@given(st.sampled_from(sorted(KNOWN_OS | {"macos"})))
def test_every_known_os_is_a_selector(word: str) -> None:
    assert Platform.parse(word, host=ARMV6) == Platform(word, "arm", "v6")


# --- normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "variant", "expected"),
    [
        # containerd's normalizeArch, case by case.
        ("i386", "", ("386", "")),
        ("i386", "v2", ("386", "")),  # i386 drops any variant
        ("386", "v2", ("386", "v2")),  # 386 keeps it
        ("I386", "", ("386", "")),
        ("x86_64", "", ("amd64", "")),
        ("x86-64", "v1", ("amd64", "")),
        ("x86_64", "v3", ("amd64", "v3")),
        ("amd64", "v1", ("amd64", "")),
        ("amd64", "V1", ("amd64", "")),
        ("amd64", "v2", ("amd64", "v2")),
        ("AMD64", "", ("amd64", "")),
        ("aarch64", "", ("arm64", "")),
        ("aarch64", "v8", ("arm64", "")),
        ("arm64", "8", ("arm64", "")),
        ("arm64", "v8", ("arm64", "")),
        ("arm64", "v8.0", ("arm64", "")),
        ("arm64", "v8.1", ("arm64", "v8.1")),
        ("arm64", "8.1", ("arm64", "8.1")),  # only 8, v8, v8.0 and 9, 9.0, v9.0 are rewritten
        ("arm64", "9", ("arm64", "v9")),
        ("arm64", "9.0", ("arm64", "v9")),
        ("arm64", "v9.0", ("arm64", "v9")),
        ("arm64", "V9.0", ("arm64", "v9")),
        ("arm64", "v9", ("arm64", "v9")),
        ("arm64", "v9.2", ("arm64", "v9.2")),
        ("armhf", "", ("arm", "v7")),
        ("armhf", "v6", ("arm", "v7")),  # armhf is v7 whatever the variant says
        ("armel", "", ("arm", "v6")),
        ("armel", "v7", ("arm", "v6")),
        ("arm", "", ("arm", "v7")),
        ("arm", "7", ("arm", "v7")),
        ("arm", "5", ("arm", "v5")),
        ("arm", "6", ("arm", "v6")),
        ("arm", "8", ("arm", "v8")),
        ("arm", "4", ("arm", "4")),
        ("arm", "v4", ("arm", "v4")),
        ("arm", "V6", ("arm", "v6")),
        ("i686", "", ("i686", "")),  # not a containerd alias
        ("ppc64le", "", ("ppc64le", "")),
        ("riscv64", "rva22", ("riscv64", "rva22")),
    ],
)
def test_normalize_arch(arch: str, variant: str, expected: tuple[str, str]) -> None:
    n = Platform("linux", arch, variant).normalized()
    assert (n.architecture, n.variant) == expected
    assert n.normalized() == n


@pytest.mark.parametrize(
    ("os_", "expected"), [("macos", "darwin"), ("MacOS", "darwin"), ("Linux", "linux")]
)
def test_normalize_os(os_: str, expected: str) -> None:
    assert Platform(os_, "amd64").normalized().os == expected


def test_normalize_keeps_version_and_sorts_os_features() -> None:
    p = Platform("Windows", "AMD64", "", "10.0.17763.1", ("win32k", "b", "win32k"), ("sse4",))
    assert p.normalized() == Platform(
        "windows", "amd64", "", "10.0.17763.1", ("b", "win32k"), ("sse4",)
    )


# --- containerd's specifier form --------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        (Platform("linux", "amd64"), "linux/amd64"),
        (Platform("linux", "arm", "v7"), "linux/arm/v7"),
        (Platform("windows", "amd64", "", "10.0.17763"), "windows(10.0.17763)/amd64"),
        (Platform("linux", "amd64", "", "", ("simd", "gpu", "gpu", "")), "linux(+gpu+simd)/amd64"),
        (Platform("linux", "amd64", "", "", ("",)), "linux/amd64"),
    ],
)
def test_to_specifier(platform: Platform, expected: str) -> None:
    assert platform.to_specifier() == expected


_name = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,7}", fullmatch=True)
_comp = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,7}", fullmatch=True)


@given(
    _name,
    _comp,
    st.one_of(st.just(""), _comp),
    st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9._+%()/-]{1,12}", fullmatch=True)),
    st.lists(st.from_regex(r"[A-Za-z0-9._+%()/-]{1,8}", fullmatch=True), max_size=3),
)
def test_specifier_roundtrip(
    os_: str, arch: str, variant: str, version: str, feats: list[str]
) -> None:
    p = Platform(os_, arch, variant, version, tuple(feats))
    back = Platform.parse(p.to_specifier())
    assert back == Platform(os_, arch, variant, version, tuple(sorted(set(feats))))


# --- the host ---------------------------------------------------------------------------

_PI_ZERO = """processor\t: 0
model name\t: ARMv6-compatible processor rev 7 (v6l)
BogoMIPS\t: 697.95
Features\t: half thumb fastmult vfp edsp java tls
CPU implementer\t: 0x41
CPU architecture: 7
CPU variant\t: 0x0
"""
_PI_3_32BIT = """processor\t: 0
model name\t: ARMv7 Processor rev 4 (v7l)
CPU architecture: 7
"""
_ARM64_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
"""


@pytest.mark.parametrize(
    ("machine", "system", "cpuinfo", "bits", "expected"),
    [
        ("x86_64", "Linux", None, 64, "linux/amd64"),  # amd64 levels are not detected
        ("AMD64", "Windows", None, 64, "linux/amd64"),
        ("x86_64", "Darwin", None, 64, "linux/amd64"),
        ("x86_64", "Linux", None, 32, "linux/386"),
        ("i686", "Linux", None, 32, "linux/386"),
        ("aarch64", "Linux", _ARM64_CPUINFO, 64, "linux/arm64/v8"),
        ("aarch64", "Linux", "", 64, "linux/arm64/v8"),  # from uname when cpuinfo says nothing
        ("aarch64", "Linux", _ARM64_CPUINFO, 32, "linux/arm/v8"),  # 32-bit userland
        ("armv7l", "Linux", _PI_3_32BIT, 32, "linux/arm/v7"),
        ("armv6l", "Linux", _PI_ZERO, 32, "linux/arm/v6"),  # says 7, is an ARMv6
        (
            "armv7l",
            "Linux",
            "cpu architecture : 7\nmodel name: ARMv6-compatible",
            32,
            "linux/arm/v6",
        ),
        ("armv6l", "Linux", "", 32, "linux/arm/v6"),
        ("armv5tel", "Linux", "CPU architecture: 5TEJ\n", 32, "linux/arm/v5"),
        ("armv7l", "Linux", "CPU architecture: ?(12)\n", 32, "linux/arm/v7"),
        ("armv7l", "Linux", "CPU architecture: 7M\n", 32, "linux/arm/v7"),
        ("armv4tl", "Linux", "CPU architecture: 4T\n", 32, "linux/arm/v4"),
        ("armv8l", "Linux", "CPU architecture: 8\n", 32, "linux/arm/v8"),
        ("armv9l", "Linux", "", 32, "linux/arm"),  # containerd: "unknown"; luff: no variant
        ("aarch64", "Linux", "CPU architecture: 10\n", 64, "linux/arm64"),
        ("arm64", "Darwin", None, 64, "linux/arm64/v8"),
        ("ARM64", "Windows", None, 64, "linux/arm64/v8"),
        ("arm64", "FreeBSD", None, 64, "linux/arm64/v8"),
        ("ppc64le", "Linux", None, 64, "linux/ppc64le"),
        ("s390x", "Linux", None, 64, "linux/s390x"),
        ("riscv64", "Linux", None, 64, "linux/riscv64"),
        ("", "Linux", None, 64, "linux/amd64"),
    ],
)
def test_detect_host_platform(
    machine: str, system: str, cpuinfo: str | None, bits: int, expected: str
) -> None:
    p = detect_host_platform(machine, system=system, cpuinfo=cpuinfo, pointer_bits=bits)
    assert str(p) == expected


def test_host_platform() -> None:
    p = host_platform()
    assert p.os == "linux"
    assert p.normalized().architecture in KNOWN_ARCH
    assert host_platform() is p  # detected once
