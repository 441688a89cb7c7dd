"""Platforms: parsing, containerd normalisation, formatting and matching (no I/O)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from luff.errors import InvalidPlatform, UsageError
from luff.model.matching import only_strict
from luff.model.platform import Platform


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/arm64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64"),
        ("linux/arm64/v8.0", "linux/arm64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/aarch64/v8", "linux/arm64"),
        ("linux/arm64/v9", "linux/arm64/v9"),
        ("linux/arm64/9", "linux/arm64/v9"),
        ("linux/arm64/v9.0", "linux/arm64/v9"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/arm/5", "linux/arm/v5"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        # containerd has no i686 alias (i686 is uname's name, not a GOARCH).
        ("linux/i686", "linux/i686"),
        ("linux/386", "linux/386"),
        ("linux/s390x", "linux/s390x"),
        ("linux/ppc64le", "linux/ppc64le"),
        ("linux/riscv64", "linux/riscv64"),
        ("Linux/AMD64", "linux/amd64"),
        ("macos/arm64", "darwin/arm64"),
        ("  linux/amd64  ", "linux/amd64"),
        ("windows/amd64:10.0.17763.1234", "windows/amd64:10.0.17763.1234"),
        ("windows/x86_64:10.0.20348.2113", "windows/amd64:10.0.20348.2113"),
        ("linux/arm64/v8:5.10", "linux/arm64:5.10"),
        ("unknown/unknown", "unknown/unknown"),
    ],
)
def test_short_form(text: str, expected: str) -> None:
    # parse keeps the platform as written; normalized() gives containerd's form.
    p = Platform.parse(text)
    assert str(p) == text.strip()
    assert Platform.parse(str(p)) == p
    assert str(p.normalized()) == expected
    assert p.normalized().normalized() == p.normalized()
    assert p.same(p.normalized())


def test_fields() -> None:
    p = Platform.parse("windows/amd64:10.0.17763.1234")
    assert (p.os, p.architecture, p.variant, p.os_version) == (
        "windows",
        "amd64",
        "",
        "10.0.17763.1234",
    )
    p = Platform.parse("linux/arm/v6")
    assert (p.os, p.architecture, p.variant, p.os_version) == ("linux", "arm", "v6", "")


def test_json() -> None:
    text = json.dumps(
        {
            "os": "windows",
            "architecture": "amd64",
            "os.version": "10.0.17763.1234",
            "os.features": ["win32k"],
        }
    )
    p = Platform.parse(text)
    assert p == Platform("windows", "amd64", "", "10.0.17763.1234", ("win32k",))
    assert str(p) == "windows/amd64:10.0.17763.1234"
    assert p.to_dict() == {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.1234",
        "os.features": ["win32k"],
    }


def test_json_variant_and_features() -> None:
    obj = {"os": "linux", "architecture": "arm", "variant": "v6", "features": ["sse4"]}
    p = Platform.parse("  " + json.dumps(obj) + "\n")
    assert (p.variant, p.features) == ("v6", ("sse4",))
    assert Platform.from_dict(p.to_dict()) == p
    assert p.to_dict() == {
        "architecture": "arm",
        "os": "linux",
        "variant": "v6",
        "features": ["sse4"],
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"os": "linux", "architecture": "aarch64"}, "linux/arm64"),
        ({"os": "linux", "architecture": "arm64", "variant": "v8"}, "linux/arm64"),
        ({"os": "linux", "architecture": "armhf"}, "linux/arm/v7"),
        ({"os": "linux", "architecture": "arm"}, "linux/arm/v7"),
        ({"os": "linux", "architecture": "x86_64"}, "linux/amd64"),
        ({"os": "linux", "architecture": "amd64", "variant": None}, "linux/amd64"),
        ({"os": "linux", "architecture": "amd64", "os.features": None}, "linux/amd64"),
    ],
)
def test_json_normalised(obj: dict[str, object], expected: str) -> None:
    # parse and from_dict keep the JSON as written; normalize=True or normalized() normalise.
    written = Platform.parse(json.dumps(obj))
    assert written == Platform.from_dict(obj)
    assert (written.os, written.architecture, written.variant) == (
        obj["os"],
        obj["architecture"],
        obj.get("variant") or "",
    )
    assert str(written.normalized()) == expected
    assert str(Platform.from_dict(obj, normalize=True)) == expected


def test_to_dict_omits_empty_fields() -> None:
    assert Platform.parse("linux/amd64").to_dict() == {"architecture": "amd64", "os": "linux"}


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("", "expected os/arch"),
        ("lunix", "expected os/arch"),
        ("lunix", "'lunix' is neither a known OS nor a known architecture"),
        ("i686", "neither a known OS nor a known architecture"),
        ("linux/", "expected os/arch"),
        ("/amd64", "expected os/arch"),
        ("linux//v7", "expected os/arch"),
        ("linux/amd64/", "expected os/arch"),
        ("linux/amd64/v2/x", "expected os/arch"),
        ("linux/amd64:", "empty os.version"),
        ("linux/am d64", "bad character in 'am d64'"),
        ("linux/amd64/v$", "bad character in 'v$'"),
        ("lin?ux/amd64", "bad character in 'lin?ux'"),
        ("lin.ux/amd64", "bad character in 'lin.ux' (an OS is"),
        ("linux/*", "wildcards are not supported"),
        ("windows(10.0/amd64", "'(' after 'windows' is not closed"),
        ("windows(10.0)x/amd64", "unexpected 'x/amd64' after 'windows(10.0)'"),
        ("linux(+)/amd64", "empty os.feature"),
        ("linux(+a++b)/amd64", "empty os.feature"),
        ("windows(10 0)/amd64", "bad character in os.version '10 0'"),
        ("linux(+g:pu)/amd64", "bad character in os.feature 'g:pu'"),
        ("windows(%zz)/amd64", "bad %-escape in os.version '%zz'"),
        ("windows(%ff)/amd64", "is not UTF-8"),
        ("windows(10.0.1)/amd64:10.0.2", "os.version given twice"),
        ("{bad", "invalid platform JSON"),
        ("{}", "needs 'os' and 'architecture'"),
        ('{"os": "linux"}', "needs 'os' and 'architecture'"),
        ('{"os": "", "architecture": "amd64"}', "needs 'os' and 'architecture'"),
        ('{"os": "linux", "architecture": 5}', "needs 'os' and 'architecture'"),
        ('{"os": "linux", "architecture": "arm", "variant": 7}', "must be strings"),
        ('{"os": "linux", "architecture": "amd64", "os.version": 10}', "must be strings"),
        ('{"os": "windows", "architecture": "amd64", "os.features": "win32k"}', "os.features"),
        ('{"os": "linux", "architecture": "amd64", "features": [1]}', "features"),
    ],
)
def test_invalid(text: str, part: str) -> None:
    with pytest.raises(InvalidPlatform) as e:
        Platform.parse(text)
    assert part in str(e.value), str(e.value)
    assert isinstance(e.value, UsageError)


def test_json_array_is_refused() -> None:
    with pytest.raises(InvalidPlatform):
        Platform.parse("[1]")


@pytest.mark.parametrize(
    ("selector", "candidate", "expected"),
    [
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/aarch64", "linux/arm64", True),
        ("linux/x86_64", "linux/amd64", True),
        ("linux/armhf", "linux/arm/v7", True),
        ("linux/arm", "linux/arm/v7", True),
        # Plain arm means v7 (as in containerd), so it does not select v6 strictly.
        ("linux/arm", "linux/arm/v6", False),
        ("linux/arm/v6", "linux/arm/v7", False),
        # A selector without a variant means the default variant only.
        ("linux/amd64", "linux/amd64/v3", False),
        ("linux/arm64", "linux/arm64/v9", False),
        ("linux/amd64/v3", "linux/amd64", False),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
    ],
)
def test_strict_selection(selector: str, candidate: str, expected: bool) -> None:
    """What index filter, only= and layout append --platform keep."""
    assert only_strict(selector).match(Platform.parse(candidate)) is expected


def test_strict_selection_normalises_unnormalised_platforms() -> None:
    # Platforms built directly (e.g. from a descriptor) are compared after normalisation.
    assert only_strict(Platform("linux", "arm64")).match(Platform("linux", "aarch64", "v8"))
    assert only_strict(Platform("Linux", "x86_64")).match(Platform("linux", "amd64"))
    assert not only_strict(Platform("linux", "arm")).match(Platform("linux", "arm", "v6"))


def test_same() -> None:
    assert Platform.parse("linux/arm64").same(Platform("linux", "aarch64", "v8"))
    assert not Platform.parse("linux/amd64").same(Platform.parse("linux/amd64/v3"))
    assert not Platform.parse("windows/amd64:1").same(Platform.parse("windows/amd64:2"))


def test_is_unknown() -> None:
    assert Platform.parse("unknown/unknown").is_unknown
    assert not Platform.parse("linux/amd64").is_unknown


# --- properties ----------------------------------------------------------------

_word = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,9}", fullmatch=True)
_os_word = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,9}", fullmatch=True)  # no dots in an OS
_arch = st.one_of(
    st.sampled_from(["amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le"]),
    _word,
)
_version = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True)


@st.composite
def platforms(draw: st.DrawFn) -> Platform:
    return Platform(
        draw(st.one_of(st.sampled_from(["linux", "windows", "darwin", "freebsd"]), _os_word)),
        draw(_arch),
        draw(st.one_of(st.just(""), st.sampled_from(["v5", "v6", "v7", "v8", "v2", "v3"]), _word)),
        draw(st.one_of(st.just(""), _version)),
    ).normalized()


@given(platforms())
def test_roundtrip_short_form(p: Platform) -> None:
    assert Platform.parse(str(p)) == p


@given(
    platforms(),
    st.lists(_word, max_size=3).map(tuple),
    st.lists(_word, max_size=3).map(tuple),
)
def test_roundtrip_json(p: Platform, os_features: tuple[str, ...], feats: tuple[str, ...]) -> None:
    full = Platform(p.os, p.architecture, p.variant, p.os_version, os_features, feats)
    assert Platform.parse(json.dumps(full.to_dict())) == full
    assert Platform.from_dict(full.to_dict()) == full


@given(platforms())
def test_normalisation_is_idempotent(p: Platform) -> None:
    assert p.normalized() == p
    assert only_strict(p).match(p)
    assert p.same(p)


@given(st.text(max_size=30))
def test_parse_never_crashes(text: str) -> None:
    try:
        p = Platform.parse(text)
    except InvalidPlatform:
        return
    assert p.normalized().normalized() == p.normalized()
