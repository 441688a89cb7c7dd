"""References and transport addresses (pure parsing, no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from luff.errors import InvalidReference, UsageError
from luff.model.address import parse_address
from luff.model.reference import Reference, valid_tag

D256 = "sha256:" + "a" * 64
D512 = "sha512:" + "b" * 128


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("ubuntu", "docker.io", "library/ubuntu", "latest", ""),
        ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", ""),
        ("docker://ubuntu", "docker.io", "library/ubuntu", "latest", ""),
        ("library/ubuntu", "docker.io", "library/ubuntu", "latest", ""),
        ("acme/app", "docker.io", "acme/app", "latest", ""),
        ("docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", ""),
        ("docker.io/acme/app:1", "docker.io", "acme/app", "1", ""),
        ("index.docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", ""),
        ("index.docker.io/library/ubuntu:1", "docker.io", "library/ubuntu", "1", ""),
        ("registry-1.docker.io/acme/app", "docker.io", "acme/app", "latest", ""),
        ("localhost/app", "localhost", "app", "latest", ""),
        ("localhost:5000/app", "localhost:5000", "app", "latest", ""),
        ("localhost:5000/a/b/c:v1", "localhost:5000", "a/b/c", "v1", ""),
        ("127.0.0.1:5000/app:v1", "127.0.0.1:5000", "app", "v1", ""),
        ("10.1.2.3/team/app", "10.1.2.3", "team/app", "latest", ""),
        ("[::1]:5000/app:v1", "[::1]:5000", "app", "v1", ""),
        ("[::1]/app", "[::1]", "app", "latest", ""),
        ("[2001:db8::1]:443/x/y", "[2001:db8::1]:443", "x/y", "latest", ""),
        ("ghcr.io/acme/app:1.4", "ghcr.io", "acme/app", "1.4", ""),
        ("my-registry.example.com:8443/a/b", "my-registry.example.com:8443", "a/b", "latest", ""),
        ("Example.COM/app", "Example.COM", "app", "latest", ""),
        ("UPPER/app", "UPPER", "app", "latest", ""),  # uppercase first part: a host
        ("r.io/a.b/c_d/e__f/g-h/i---j", "r.io", "a.b/c_d/e__f/g-h/i---j", "latest", ""),
        ("r.io/0/9a/a9", "r.io", "0/9a/a9", "latest", ""),
        (f"r.io/app@{D256}", "r.io", "app", "", D256),
        (f"r.io/app@{D512}", "r.io", "app", "", D512),
        (f"r.io/app:v1@{D256}", "r.io", "app", "v1", D256),
        (f"localhost:5000/app:v1@{D256}", "localhost:5000", "app", "v1", D256),
        (f"docker://localhost:5000/app@{D256}", "localhost:5000", "app", "", D256),
        ("r.io/app:_under", "r.io", "app", "_under", ""),
        ("r.io/app:A.b-C_9", "r.io", "app", "A.b-C_9", ""),
        ("r.io/app:" + "t" * 128, "r.io", "app", "t" * 128, ""),
        # "localhost" alone is a Docker Hub image, and ":5000" its tag (as Docker does).
        ("localhost:5000", "docker.io", "library/localhost", "5000", ""),
    ],
)
def test_valid(text: str, registry: str, repository: str, tag: str, digest: str) -> None:
    r = Reference.parse(text)
    assert (r.registry, r.repository, r.tag, r.digest) == (registry, repository, tag, digest)
    # The canonical form parses back to the same reference.
    assert Reference.parse(str(r)) == r


def test_docker_hub_defaults() -> None:
    r = Reference.parse("ubuntu")
    assert str(r) == "docker.io/library/ubuntu:latest"
    assert r.name == "docker.io/library/ubuntu"
    assert r.api_host == "registry-1.docker.io"
    assert r.identifier == "latest"
    assert Reference.parse("index.docker.io/ubuntu") == r
    assert Reference.parse("docker://docker.io/library/ubuntu:latest") == r


def test_api_host_other_registries() -> None:
    assert Reference.parse("localhost:5000/a").api_host == "localhost:5000"
    assert Reference.parse("ghcr.io/a/b").api_host == "ghcr.io"


def test_no_default_tag() -> None:
    r = Reference.parse("r.io/app", default_tag=False)
    assert (r.tag, r.digest, r.identifier) == ("", "", "")
    assert str(r) == "r.io/app"


def test_identifier_prefers_digest() -> None:
    assert Reference.parse(f"r.io/app:v1@{D256}").identifier == D256


def test_with_tag_and_digest() -> None:
    r = Reference.parse(f"r.io/app:v1@{D256}")
    assert str(r.with_tag("v2")) == "r.io/app:v2"
    assert str(r.with_digest(D512)) == f"r.io/app@{D512}"
    with pytest.raises(InvalidReference, match="invalid tag"):
        r.with_tag("-bad")
    with pytest.raises(InvalidReference):
        r.with_tag("v1\n")


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("", "empty"),
        ("docker://", "empty"),
        ("Ubuntu", "'Ubuntu' (must be lowercase)"),
        ("r.io/Acme/app", "'Acme' (must be lowercase)"),
        ("r.io/acme/App:v1", "'App' (must be lowercase)"),
        ("r.io/a//b", "empty path component"),
        ("r.io/app/", "empty path component"),
        ("/app", "empty path component"),
        ("r.io/-app", "bad repository component '-app'"),
        ("r.io/app-", "bad repository component 'app-'"),
        ("r.io/a..b", "bad repository component 'a..b'"),
        ("r.io/a___b", "bad repository component 'a___b'"),
        ("r.io/a._b", "bad repository component 'a._b'"),
        ("r.io/_a", "bad repository component '_a'"),
        ("r.io/a$b", "bad repository component 'a$b'"),
        ("r.io/app:", "bad tag ''"),
        ("r.io/app:-v1", "bad tag '-v1'"),
        ("r.io/app:.v1", "bad tag '.v1'"),
        ("r.io/app:v/1", "bad repository component"),  # ':' before a '/' is not a tag
        ("r.io/app:v+1", "bad tag 'v+1'"),
        ("r.io/app:" + "t" * 129, "bad tag"),
        ("r.io/app:tägé", "bad tag 'tägé'"),
        ("r.io/app:\u0661", "bad tag"),  # ARABIC-INDIC DIGIT ONE is not [0-9]
        ("r.io/app@", "invalid digest ''"),
        ("r.io/app@sha256:abc", "sha256 needs 64 lowercase hex"),
        ("r.io/app@sha256:" + "A" * 64, "sha256 needs 64 lowercase hex"),
        ("r.io/app@md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("r.io/app@sha256:../../etc/passwd", "invalid digest"),
        ("r.io/app:v1@", "invalid digest"),
        ("r.io/ app", "white space"),
        ("r.io/app:v1 ", "white space"),
        ("r.io/app\n", "white space"),
        ("r.io:/app", "bad registry host 'r.io:'"),
        ("r.io:port/app", "bad registry host 'r.io:port'"),
        ("-r.io/app", "bad registry host '-r.io'"),
        ("r_x.io/app", "bad registry host 'r_x.io'"),
        ("[zz::1]:5000/app", "bad registry host"),
        ("[1::2::3]/app", "bad IPv6 address in '[1::2::3]'"),
        ("::1/app", "bad registry host '::1'"),
        ("a:b:c", "bad repository component 'a:b'"),
        ("r.io/" + "a" * 260, "longer than 255"),
        ("r.io/" + "/".join(["abcdefghi"] * 30), "longer than 255"),
    ],
)
def test_invalid_names_the_part(text: str, part: str) -> None:
    with pytest.raises(InvalidReference) as e:
        Reference.parse(text)
    msg = str(e.value)
    assert part in msg, msg
    assert "\n" not in msg.replace("\\n", "")  # one line
    assert isinstance(e.value, UsageError)  # exit code 2 in the CLI


def test_name_length_limit_is_255() -> None:
    ok = "r.io/" + "a" * 250  # 255 characters exactly
    assert Reference.parse(ok).repository == "a" * 250
    with pytest.raises(InvalidReference, match="255"):
        Reference.parse(ok + "a")


@pytest.mark.parametrize("tag", ["latest", "v1.0", "_", "A", "a-b.c_d", "9" * 128])
def test_valid_tag(tag: str) -> None:
    assert valid_tag(tag)


@pytest.mark.parametrize("tag", ["", "-a", ".a", "a b", "a/b", "a:b", "a\n", "é", "9" * 129])
def test_invalid_tag(tag: str) -> None:
    assert not valid_tag(tag)


# --- addresses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "transport", "path", "tag", "digest"),
    [
        ("oci:./out", "oci", "./out", "", ""),
        ("oci:./out:v1", "oci", "./out", "v1", ""),
        ("oci:/abs/dir:1.0/extra", "oci", "/abs/dir", "1.0/extra", ""),  # ref.name allows '/'
        (f"oci:/abs/dir@{D256}", "oci", "/abs/dir", "", D256),
        (f"oci:/abs/dir:v1@{D256}", "oci", "/abs/dir", "v1", D256),
        ("oci-archive:img.tar", "oci-archive", "img.tar", "", ""),
        ("oci-archive:img.tar:v1", "oci-archive", "img.tar", "v1", ""),
        ("docker-archive:app.tar", "docker-archive", "app.tar", "", ""),
        ("docker-archive:app.tar:repo:tag", "docker-archive", "app.tar", "repo:tag", ""),
        ("docker-archive:app.tar:repo", "docker-archive", "app.tar", "repo:latest", ""),
        (
            "docker-archive:app.tar:localhost:5000/r:t",
            "docker-archive",
            "app.tar",
            "localhost:5000/r:t",
            "",
        ),
    ],
)
def test_file_addresses(text: str, transport: str, path: str, tag: str, digest: str) -> None:
    a = parse_address(text)
    assert (a.transport, a.path, a.tag, a.digest) == (transport, path, tag, digest)
    assert a.reference is None
    assert not a.is_registry
    assert a.identifier == (digest or tag)
    assert parse_address(str(a)) == a


def test_address_str() -> None:
    assert str(parse_address(f"oci:./x:v1@{D256}")) == f"oci:./x:v1@{D256}"
    assert str(parse_address("docker-archive:a.tar:repo")) == "docker-archive:a.tar:repo:latest"
    assert str(parse_address("oci-archive:a.tar")) == "oci-archive:a.tar"


@pytest.mark.parametrize(
    ("text", "ref", "given"),
    [
        ("ubuntu", "docker.io/library/ubuntu:latest", "docker.io/library/ubuntu"),
        ("docker://ubuntu:22.04", "docker.io/library/ubuntu:22.04", None),
        ("localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app"),
        ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1", None),
        ("[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app"),
        (f"ghcr.io/acme/app@{D256}", f"ghcr.io/acme/app@{D256}", None),
    ],
)
def test_registry_addresses(text: str, ref: str, given: str | None) -> None:
    a = parse_address(text)
    assert a.is_registry
    assert a.transport == "docker"
    assert str(a.reference) == ref  # what is resolved: latest when nothing is named
    assert str(a) == (given or ref)  # what was given: the address knows no tag was
    assert a.has_tag == (given is None and "@" not in text)
    assert a.identifier == Reference.parse(ref).identifier


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("oci:", "no path"),
        ("oci::v1", "no path"),
        ("oci:x:", "empty tag after ':'"),
        ("oci:x@sha256:zz", "sha256 needs 64"),
        ("oci:x@", "invalid digest"),
        ("oci:x:-bad", "bad tag '-bad'"),
        ("oci-archive:", "no path"),
        ("oci-archive:f.tar:a/b", "bad tag 'a/b'"),
        ("docker-archive:", "no path"),
        ("docker-archive:f.tar:Repo", "must be lowercase"),
        ("dir:/tmp/x", "unknown transport 'dir'"),
        ("foo:./bar", "unknown transport 'foo'"),
        ("docker-daemon:app:latest", "unknown transport 'docker-daemon'"),
        ("containers-storage:app", "unknown transport 'containers-storage'"),
        ("ostree:/repo/app", "unknown transport 'ostree'"),
        ("r.io/App", "must be lowercase"),
    ],
)
def test_invalid_addresses(text: str, part: str) -> None:
    with pytest.raises(InvalidReference) as e:
        parse_address(text)
    assert part in str(e.value), str(e.value)


def test_unknown_transport_lists_the_known_ones() -> None:
    with pytest.raises(InvalidReference, match="docker://, oci:, oci-archive: or docker-archive:"):
        parse_address("dir:/tmp/x")


# --- properties ----------------------------------------------------------------

_alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_sep = st.sampled_from([".", "_", "__", "-", "--", "---"])
_component = st.builds(
    lambda first, rest: first + "".join(s + a for s, a in rest),
    _alnum,
    st.lists(st.tuples(_sep, _alnum), max_size=3),
)
_host_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_domain = st.one_of(
    st.builds(lambda a, b: f"{a}.{b}", _host_label, _host_label),
    st.just("localhost"),
    st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", *[st.integers(0, 255)] * 4),
    st.sampled_from(["[::1]", "[2001:db8::1]", "[fe80::1:2]"]),
)
_registry = st.one_of(
    _domain,
    st.builds(lambda d, p: f"{d}:{p}", _domain, st.integers(1, 65535)),
)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h),
    st.text(alphabet="0123456789abcdef", min_size=128, max_size=128).map(lambda h: "sha512:" + h),
)


@st.composite
def references(draw: st.DrawFn) -> Reference:
    registry = draw(_registry)
    repo = "/".join(draw(st.lists(_component, min_size=1, max_size=4)))
    tag = draw(st.one_of(st.just(""), _tag))
    digest = draw(st.one_of(st.just(""), _digest))
    if not tag and not digest:
        tag = "latest"
    return Reference(registry, repo, tag, digest)


@given(references())
def test_roundtrip(ref: Reference) -> None:
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse("docker://" + str(ref)) == ref
    assert parse_address(str(ref)).reference == ref


@given(st.lists(_component, min_size=1, max_size=3), st.one_of(st.just(""), _tag))
def test_hub_short_names(parts: list[str], tag: str) -> None:
    # A first component without '.', ':' or uppercase (and not localhost) is a path.
    assume(len(parts) == 1 or ("." not in parts[0] and parts[0] != "localhost"))
    text = "/".join(parts) + (f":{tag}" if tag else "")
    r = Reference.parse(text)
    assert r.registry == "docker.io"
    expected = "/".join(parts) if len(parts) > 1 else f"library/{parts[0]}"
    assert r.repository == expected
    assert r.tag == (tag or "latest")
    assert r.api_host == "registry-1.docker.io"
    assert Reference.parse(str(r)) == r


@given(st.text(max_size=40))
def test_parse_never_crashes(text: str) -> None:
    # Anything either parses to a reference that round-trips or raises InvalidReference.
    try:
        r = Reference.parse(text)
    except InvalidReference:
        return
    assert Reference.parse(str(r)) == r
