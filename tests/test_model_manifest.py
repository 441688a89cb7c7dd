"""Descriptors, media types, manifests and indexes (no I/O)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from luff.errors import InvalidManifest
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import MAX_MANIFEST, Manifest, sniff_media_type
from luff.model.matching import only_strict
from luff.model.platform import Platform

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha512:" + "3" * 128

FULL: dict[str, Any] = {
    "mediaType": mt.OCI_MANIFEST,
    "digest": D1,
    "size": 1234,
    "urls": ["https://example.com/a", "https://mirror.example.com/a"],
    "annotations": {"org.opencontainers.image.ref.name": "v1", "x": ""},
    "data": base64.b64encode(b"\x00\x01payload").decode(),
    "artifactType": "application/vnd.example.sbom+json",
    "platform": {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.1234",
        "os.features": ["win32k"],
        "variant": "v3",
        "features": ["sse4"],
    },
}


# --- descriptors -----------------------------------------------------------------


def test_descriptor_every_field() -> None:
    d = Descriptor.from_dict(FULL)
    assert d.media_type == mt.OCI_MANIFEST
    assert d.digest == Digest.parse(D1)
    assert d.size == 1234
    assert d.urls == ("https://example.com/a", "https://mirror.example.com/a")
    assert d.annotations == {"org.opencontainers.image.ref.name": "v1", "x": ""}
    assert d.data == b"\x00\x01payload"
    assert d.artifact_type == "application/vnd.example.sbom+json"
    assert d.platform == Platform(
        "windows", "amd64", "v3", "10.0.17763.1234", ("win32k",), ("sse4",)
    )
    assert d.to_dict() == FULL
    assert Descriptor.from_dict(d.to_dict()) == d


def test_descriptor_minimal() -> None:
    obj = {"mediaType": mt.OCI_LAYER_GZIP, "digest": D3, "size": 0}
    d = Descriptor.from_dict(obj)
    assert (d.urls, dict(d.annotations), d.data, d.artifact_type, d.platform) == (
        (),
        {},
        None,
        "",
        None,
    )
    assert d.to_dict() == obj
    assert list(d.to_dict()) == ["mediaType", "digest", "size"]


def test_descriptor_empty_data_is_kept() -> None:
    obj = {"mediaType": mt.OCI_EMPTY, "digest": D1, "size": 2, "data": ""}
    d = Descriptor.from_dict(obj)
    assert d.data == b""
    assert d.to_dict() == obj


@pytest.mark.parametrize(
    "platform",
    [
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
        {"architecture": "aarch64", "os": "linux"},
        {"architecture": "arm", "os": "linux"},
        {"architecture": "amd64", "os": "Linux"},
        {"architecture": "unknown", "os": "unknown"},
    ],
)
def test_descriptor_platform_kept_as_written(platform: dict[str, str]) -> None:
    # Re-serialising an index entry must not rewrite it (that would change the index digest).
    obj = {"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 1, "platform": platform}
    d = Descriptor.from_dict(obj)
    assert d.to_dict() == obj
    assert d.platform is not None
    # ... while matching still normalises.
    assert d.platform.same(d.platform.normalized())


def test_descriptor_platform_matches_after_normalisation() -> None:
    obj = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": D1,
        "size": 1,
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    }
    plat = Descriptor.from_dict(obj).platform
    assert plat is not None
    assert only_strict("linux/arm64").match(plat)
    assert Platform.parse("linux/aarch64").same(plat)


def test_for_bytes() -> None:
    d = Descriptor.for_bytes(mt.OCI_CONFIG, b"{}", annotations={"a": "b"})
    assert d.digest == Digest.of(b"{}")
    assert d.size == 2
    assert d.annotations == {"a": "b"}


def test_with_() -> None:
    d = Descriptor.from_dict(FULL)
    e = d.with_(annotations={}, platform=None)
    assert e.digest == d.digest and not e.annotations and e.platform is None
    assert d.annotations  # original unchanged


def test_descriptor_equality_and_hash() -> None:
    a = Descriptor.from_dict(FULL)
    b = Descriptor.from_dict(json.loads(json.dumps(FULL)))
    assert a == b and hash(a) == hash(b)
    c = a.with_(annotations={})
    assert a != c
    assert len({a, b, c}) == 2
    assert a != "not a descriptor"


@pytest.mark.parametrize(
    ("obj", "part"),
    [
        ([], "must be an object"),
        ({"digest": D1, "size": 1}, "no mediaType"),
        ({"mediaType": "", "digest": D1, "size": 1}, "no mediaType"),
        ({"mediaType": 5, "digest": D1, "size": 1}, "no mediaType"),
        ({"mediaType": "x", "size": 1}, "no digest"),
        ({"mediaType": "x", "digest": 1, "size": 1}, "no digest"),
        ({"mediaType": "x", "digest": D1}, "no valid size"),
        ({"mediaType": "x", "digest": D1, "size": -1}, "no valid size"),
        ({"mediaType": "x", "digest": D1, "size": "1"}, "no valid size"),
        ({"mediaType": "x", "digest": D1, "size": 1.0}, "no valid size"),
        ({"mediaType": "x", "digest": D1, "size": True}, "no valid size"),
        ({"mediaType": "x", "digest": "sha256:abc", "size": 1}, "sha256 needs 64"),
        ({"mediaType": "x", "digest": "sha256:../../etc/passwd", "size": 1}, "invalid digest"),
        ({"mediaType": "x", "digest": "md5:" + "0" * 32, "size": 1}, "unsupported"),
        ({"mediaType": "x", "digest": D1, "size": 1, "urls": "u"}, "urls must be a list"),
        ({"mediaType": "x", "digest": D1, "size": 1, "urls": [1]}, "urls must be a list"),
        ({"mediaType": "x", "digest": D1, "size": 1, "annotations": ["a"]}, "annotations must"),
        ({"mediaType": "x", "digest": D1, "size": 1, "annotations": {"a": 1}}, "annotations"),
        ({"mediaType": "x", "digest": D1, "size": 1, "data": "!!"}, "data is not base64"),
        ({"mediaType": "x", "digest": D1, "size": 1, "data": 5}, "data is not base64"),
        ({"mediaType": "x", "digest": D1, "size": 1, "platform": "linux/amd64"}, "platform must"),
    ],
)
def test_descriptor_invalid(obj: Any, part: str) -> None:
    with pytest.raises(InvalidManifest) as e:
        Descriptor.from_dict(obj)
    assert part in str(e.value), str(e.value)


def test_descriptor_invalid_platform() -> None:
    obj = {"mediaType": "x", "digest": D1, "size": 1, "platform": {"os": "linux"}}
    with pytest.raises(Exception, match="'os' and 'architecture'"):
        Descriptor.from_dict(obj)


# --- media types -------------------------------------------------------------------


def test_media_type_constants() -> None:
    assert mt.OCI_MANIFEST == "application/vnd.oci.image.manifest.v1+json"
    assert mt.OCI_INDEX == "application/vnd.oci.image.index.v1+json"
    assert mt.DOCKER_MANIFEST == "application/vnd.docker.distribution.manifest.v2+json"
    assert mt.DOCKER_LIST == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert mt.DOCKER_SCHEMA1 == "application/vnd.docker.distribution.manifest.v1+json"
    assert mt.DOCKER_SCHEMA1_SIGNED == "application/vnd.docker.distribution.manifest.v1+prettyjws"


def test_media_type_predicates() -> None:
    for m in (mt.OCI_INDEX, mt.DOCKER_LIST):
        assert mt.is_index(m) and mt.is_manifest(m) and not mt.is_image_manifest(m)
    for m in (mt.OCI_MANIFEST, mt.DOCKER_MANIFEST):
        assert not mt.is_index(m) and mt.is_manifest(m) and mt.is_image_manifest(m)
    for m in (mt.OCI_CONFIG, mt.OCI_LAYER_GZIP, mt.DOCKER_SCHEMA1, "application/json"):
        assert not mt.is_manifest(m)


def test_accept_lists_all_four() -> None:
    accepted = {s.strip() for s in mt.ACCEPT.split(",")}
    assert accepted == {mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_LIST, mt.DOCKER_MANIFEST}


def test_check_supported() -> None:
    for m in mt.MANIFESTS:
        mt.check_supported(m)
    for m in mt.SCHEMA1:
        with pytest.raises(InvalidManifest, match="schema 1"):
            mt.check_supported(m)
    with pytest.raises(InvalidManifest, match="unsupported manifest media type 'text/html'"):
        mt.check_supported("text/html")


# --- manifests ---------------------------------------------------------------------

CONFIG = {"mediaType": mt.OCI_CONFIG, "digest": D1, "size": 100}
LAYER = {"mediaType": mt.OCI_LAYER_GZIP, "digest": D2, "size": 2000}


def image(media_type: str = mt.OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    obj["config"] = dict(CONFIG, mediaType=mt.DOCKER_CONFIG) if "docker" in media_type else CONFIG
    obj["layers"] = [LAYER, dict(LAYER, digest=D3, size=3000)]
    obj.update(extra)
    return obj


def index(media_type: str = mt.OCI_INDEX, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": D1,
                "size": 500,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": D2,
                "size": 501,
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            },
        ],
    }
    obj.update(extra)
    return obj


@pytest.mark.parametrize("media_type", [mt.OCI_MANIFEST, mt.DOCKER_MANIFEST])
def test_image_manifest(media_type: str) -> None:
    data = json.dumps(image(media_type)).encode()
    m = Manifest.parse(data)
    assert m.media_type == media_type
    assert not m.is_index
    assert m.config.digest == Digest.parse(D1)
    assert [d.size for d in m.layers] == [2000, 3000]
    assert [d.digest for d in m.children()] == [Digest.parse(x) for x in (D1, D2, D3)]
    assert m.blobs() == [m.config, *m.layers]
    assert m.manifests == []
    assert m.subject is None


@pytest.mark.parametrize("media_type", [mt.OCI_INDEX, mt.DOCKER_LIST])
def test_index(media_type: str) -> None:
    m = Manifest.parse(json.dumps(index(media_type)).encode())
    assert m.media_type == media_type
    assert m.is_index
    assert [str(d.platform) for d in m.manifests] == ["linux/amd64", "linux/arm64/v8"]
    assert list(m.children()) == m.manifests
    assert m.layers == [] and m.blobs() == []
    with pytest.raises(InvalidManifest, match="an index has no config"):
        _ = m.config


def test_exact_bytes_and_digest_over_bytes() -> None:
    # Odd whitespace, key order and escapes: re-serialising would change the digest.
    obj = image()
    data = (
        b'{\n\t"layers" :[ '
        + json.dumps(obj["layers"]).encode()[1:-1]
        + b' ],   "schemaVersion":2,\r\n "config":'
        + json.dumps(obj["config"]).encode()
        + b', "annotations": {"k": "\\u00e9"},"mediaType":"'
        + mt.OCI_MANIFEST.encode()
        + b'"}\n\n'
    )
    m = Manifest.parse(data)
    assert m.data is data or m.data == data
    assert m.digest == Digest("sha256", hashlib.sha256(data).hexdigest())
    assert m.size == len(data)
    assert m.digest != Digest.of(json.dumps(m.json).encode())
    d = m.descriptor()
    assert (d.media_type, d.digest, d.size) == (mt.OCI_MANIFEST, m.digest, len(data))
    assert m.annotations == {"k": "é"}
    assert m.descriptor(platform=Platform.parse("linux/amd64")).platform is not None


def test_same_json_different_bytes_different_digest() -> None:
    obj = image()
    a = Manifest.parse(json.dumps(obj).encode())
    b = Manifest.parse(json.dumps(obj, indent=3).encode())
    assert a.json == b.json
    assert a.digest != b.digest


def test_from_dict() -> None:
    m = Manifest.from_dict(index())
    assert m.media_type == mt.OCI_INDEX
    assert json.loads(m.data) == index()
    assert m.digest == Digest.of(m.data)


@pytest.mark.parametrize(
    ("obj", "hint", "expected"),
    [
        (image(), "", mt.OCI_MANIFEST),
        (image(mt.DOCKER_MANIFEST), mt.OCI_MANIFEST, mt.DOCKER_MANIFEST),  # the body wins
        ({k: v for k, v in image().items() if k != "mediaType"}, "", mt.OCI_MANIFEST),
        ({k: v for k, v in index().items() if k != "mediaType"}, "", mt.OCI_INDEX),
        (
            {k: v for k, v in image().items() if k != "mediaType"},
            mt.DOCKER_MANIFEST,
            mt.DOCKER_MANIFEST,
        ),
        (
            {k: v for k, v in image().items() if k != "mediaType"},
            "application/json",
            mt.OCI_MANIFEST,
        ),
        ({"schemaVersion": 1, "name": "x", "fsLayers": []}, "", mt.DOCKER_SCHEMA1),
    ],
)
def test_sniff(obj: dict[str, Any], hint: str, expected: str) -> None:
    assert sniff_media_type(json.dumps(obj).encode(), hint) == expected


@pytest.mark.parametrize(
    "data",
    [
        json.dumps({"schemaVersion": 1, "name": "library/x", "tag": "1", "fsLayers": []}),
        json.dumps({"schemaVersion": 1, "mediaType": mt.DOCKER_SCHEMA1, "fsLayers": []}),
        json.dumps({"schemaVersion": 1, "signatures": [], "fsLayers": []}),
    ],
)
def test_schema1_refused(data: str) -> None:
    with pytest.raises(InvalidManifest) as e:
        Manifest.parse(data.encode())
    msg = str(e.value)
    assert "schema 1" in msg and "not supported" in msg


def test_schema1_refused_by_content_type() -> None:
    body = json.dumps({"schemaVersion": 1, "fsLayers": []}).encode()
    with pytest.raises(InvalidManifest, match="schema 1"):
        Manifest.parse(body, mt.DOCKER_SCHEMA1_SIGNED)


@pytest.mark.parametrize(
    ("data", "part"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'"x"', "not a JSON object"),
        (b"{}", "cannot tell the manifest's media type"),
        (json.dumps({"mediaType": mt.OCI_CONFIG}).encode(), "unsupported manifest media type"),
        (json.dumps({"mediaType": "text/html"}).encode(), "unsupported manifest media type"),
        (json.dumps(image(schemaVersion=3)).encode(), "schemaVersion must be 2"),
        (json.dumps(image(schemaVersion="2")).encode(), "schemaVersion must be 2"),
        (json.dumps(index(schemaVersion=None)).encode(), "schemaVersion must be 2"),
        (json.dumps(index(manifests={})).encode(), "index has no 'manifests' list"),
        (json.dumps(index(manifests=[{"mediaType": "x"}])).encode(), "no digest"),
        (json.dumps(image(config=None)).encode(), "no 'config' descriptor"),
        (json.dumps(image(config=[])).encode(), "no 'config' descriptor"),
        (json.dumps(image(layers=None)).encode(), "no 'layers' list"),
        (json.dumps(image(layers=[{"digest": D1}])).encode(), "no mediaType"),
        (json.dumps(image(config={"mediaType": "x", "digest": D1})).encode(), "no valid size"),
        (json.dumps(image(subject={"mediaType": "x", "size": 1})).encode(), "no digest"),
        (json.dumps(image(mt.OCI_INDEX)).encode(), "index has no 'manifests' list"),
    ],
)
def test_invalid_manifest(data: bytes, part: str) -> None:
    with pytest.raises(InvalidManifest) as e:
        Manifest.parse(data)
    assert part in str(e.value), str(e.value)


def test_too_large() -> None:
    body = image(annotations={"pad": "x" * MAX_MANIFEST})
    with pytest.raises(InvalidManifest, match="larger than"):
        Manifest.parse(json.dumps(body).encode())


def test_subject_and_artifact_type() -> None:
    subj = {"mediaType": mt.OCI_MANIFEST, "digest": D2, "size": 10}
    m = Manifest.parse(
        json.dumps(image(subject=subj, artifactType="application/vnd.example+json")).encode()
    )
    assert m.subject is not None and m.subject.to_dict() == subj
    assert m.subject not in list(m.children())  # may be absent: not a child


# --- properties ----------------------------------------------------------------------

_hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_text = st.text(max_size=12)
_platforms = st.builds(
    Platform,
    st.sampled_from(["linux", "windows", "Linux", "unknown"]),
    st.sampled_from(["amd64", "arm64", "arm", "aarch64", "x86_64", "unknown"]),
    st.sampled_from(["", "v7", "v8", "v3"]),
    st.sampled_from(["", "10.0.17763.1234"]),
    st.lists(_text, max_size=2).map(tuple),
    st.lists(_text, max_size=2).map(tuple),
)
descriptors = st.builds(
    Descriptor,
    media_type=st.sampled_from(
        [mt.OCI_MANIFEST, mt.OCI_INDEX, mt.OCI_LAYER_GZIP, mt.DOCKER_MANIFEST, "x/y"]
    ),
    digest=_hex64.map(lambda h: Digest("sha256", h)),
    size=st.integers(0, 2**53),
    urls=st.lists(_text, max_size=2).map(tuple),
    annotations=st.dictionaries(_text, _text, max_size=3),
    data=st.one_of(st.none(), st.binary(max_size=40)),
    artifact_type=st.one_of(st.just(""), _text),
    platform=st.one_of(st.none(), _platforms),
)


@given(descriptors)
def test_descriptor_roundtrip(d: Descriptor) -> None:
    assert Descriptor.from_dict(d.to_dict()) == d
    # ... and through JSON text, as in a manifest.
    assert Descriptor.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    assert Descriptor.from_dict(d.to_dict()).to_dict() == d.to_dict()


@given(st.lists(descriptors, max_size=4))
def test_index_of_descriptors(entries: list[Descriptor]) -> None:
    obj = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [e.to_dict() for e in entries],
    }
    m = Manifest.parse(json.dumps(obj, separators=(",", ":")).encode())
    assert m.manifests == entries
