"""Index assembly in memory: source overrides, merging, edits, validation, spec files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import luff
from luff.errors import InvalidManifest, InvalidPlatform, NotFound, UsageError
from luff.index import (
    BuiltIndex,
    Source,
    apply_edits,
    build,
    build_append,
    build_filter,
    destinations,
    load_spec,
    parse_spec,
)
from luff.model import mediatypes as mt
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.stores.memory import MemoryStore
from luff.testing import Image, random_image
from tests.images import index_with_attestation


def src(img: Image, **kw: object) -> Source:
    return Source.from_store(img.store, str(img.digest), **kw)


def with_attestation(platform: str = "linux/amd64") -> tuple[Image, str, str]:
    """An index holding one image and a BuildKit-style attestation for it."""
    idx = index_with_attestation(platform)
    img, att = idx.children
    return idx, str(img.digest), str(att.digest)


# --- Source.parse ---------------------------------------------------------


def test_plain_address() -> None:
    s = Source.parse("localhost:5000/app:1")
    assert s.address == "localhost:5000/app:1" and not s.overrides_platform


def test_key_value_form_is_order_independent() -> None:
    a = Source.parse("ref=r/app:1,platform=linux/arm/v7,annotation.org.x=y")
    b = Source.parse("annotation.org.x=y,platform=linux/arm/v7,ref=r/app:1")
    c = Source.parse("r/app:1,annotation.org.x=y,platform=linux/arm")
    assert a == b
    assert a.platform == Platform("linux", "arm", "v7")
    # The platform is kept as written; linux/arm is linux/arm/v7 once normalised.
    assert c.platform == Platform("linux", "arm") and c.platform.same(a.platform)
    assert dataclasses.replace(c, platform=a.platform) == a
    assert a.annotations == {"org.x": "y"}


def test_json_platform_and_fields() -> None:
    s = Source.parse(
        'ref=oci:./out:1,platform={"os":"windows","architecture":"amd64",'
        '"os.version":"10.0.17763.1234","os.features":["win32k"]},annotation.a=b'
    )
    assert s.address == "oci:./out:1"
    assert s.platform is not None
    assert s.platform.os_version == "10.0.17763.1234"
    assert s.platform.os_features == ("win32k",)
    assert s.annotations == {"a": "b"}
    s2 = Source.parse("src=r/a,os.version=10.0.1,os.features=win32k,os.features=x,variant=v6")
    assert (s2.os_version, s2.os_features, s2.variant) == ("10.0.1", ("win32k", "x"), "v6")


def test_only_is_repeatable_and_not_an_override() -> None:
    s = Source.parse("r/a,only=linux/arm64,only=linux/amd64")
    assert s.only == (Platform("linux", "arm64"), Platform("linux", "amd64"))
    assert not s.overrides_platform
    assert Source.parse("r/a").only == ()


def test_quoted_values_keep_commas() -> None:
    s = Source.parse('ref=r/a,"annotation.desc=one, two",annotation.q="a,b"')
    assert s.annotations == {"desc": "one, two", "q": "a,b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("platform=linux/amd64", "no address"),
        ("ref=r/a,ref=r/b", "given twice"),
        ("ref=r/a,colour=blue", "unknown key 'colour'"),
        ("ref=r/a,platform=lunix", "expected os/arch"),
        ("ref=r/a,only=", "only:"),
        ('ref=r/a,annotation.x="open', "unbalanced"),
    ],
)
def test_bad_sources(text: str, message: str) -> None:
    with pytest.raises((UsageError, InvalidPlatform), match=message):
        Source.parse(text)


# --- building ---------------------------------------------------------------


def test_build_reads_platforms_from_configs() -> None:
    a = random_image("linux/amd64")
    b = random_image("linux/arm/v7")
    w = random_image(Platform("windows", "amd64", "", "10.0.17763.1234", ("win32k",)))
    built = build([src(a), src(b), src(w)])
    assert isinstance(built, BuiltIndex)
    assert [str(e.platform) for e in built.entries] == [
        "linux/amd64",
        "linux/arm/v7",
        "windows/amd64:10.0.17763.1234",
    ]
    doc = built.document
    assert doc["mediaType"] == mt.OCI_INDEX
    assert doc["manifests"][2]["platform"]["os.features"] == ["win32k"]
    assert built.manifest.digest == built.descriptor.digest
    assert built.descriptor.size == len(built.manifest.data)


def test_build_is_deterministic() -> None:
    a, b = random_image("linux/amd64"), random_image("linux/arm64")
    assert build([src(a), src(b)]).digest == build([src(a), src(b)]).digest


def test_overrides_replace_detected_platform() -> None:
    a = random_image("linux/arm64")
    b = random_image("windows/amd64")
    built = build(
        [
            src(a, platform=Platform.parse("linux/arm/v6")),
            src(b, os_version="10.0.20348.1", os_features=("win32k",), annotations={"k": "v"}),
        ]
    )
    assert str(built.entries[0].platform) == "linux/arm/v6"
    p = built.entries[1].platform
    assert p is not None and (p.os, p.os_version, p.os_features) == (
        "windows",
        "10.0.20348.1",
        ("win32k",),
    )
    assert built.entries[1].descriptor.annotations == {"k": "v"}


def test_same_digest_is_merged() -> None:
    a = random_image("linux/amd64")
    built = build([src(a), src(a, annotations={"x": "1"})])
    assert len(built.entries) == 1
    assert built.entries[0].descriptor.annotations == {"x": "1"}


def test_duplicate_platform_names_both_sources() -> None:
    a, b = random_image("linux/amd64"), random_image("linux/amd64")
    with pytest.raises(UsageError, match="duplicate platform linux/amd64") as e:
        build([src(a), src(b)])
    assert str(a.digest) in str(e.value) and str(b.digest) in str(e.value)
    built = build([src(a), src(b)], allow_duplicate_platforms=True)
    assert len(built.entries) == 2


def test_duplicate_matches_normalised_platforms() -> None:
    a, b = random_image("linux/arm64"), random_image("linux/arm64/v8")
    with pytest.raises(UsageError, match="duplicate platform"):
        build([src(a), src(b)])


def test_edit_can_resolve_a_duplicate() -> None:
    a, b = random_image("linux/arm/v7"), random_image("linux/arm/v7")
    built = build([src(a), src(b)], edits=['.manifests[1].platform.variant = "v6"'])
    assert [str(e.platform) for e in built.entries] == ["linux/arm/v7", "linux/arm/v6"]


def test_index_source_is_flattened_with_attestations() -> None:
    idx, img, att = with_attestation("linux/amd64")
    other = random_image("linux/arm64")
    built = build([src(idx), src(other)])
    assert [str(e.digest) for e in built.entries] == [img, att, str(other.digest)]
    assert built.entries[1].is_attestation and str(built.entries[1].subject) == img
    nested = build([src(idx), src(other)], flatten=False)
    assert nested.entries[0].descriptor.media_type == mt.OCI_INDEX


def test_attestations_are_exempt_from_duplicates() -> None:
    i1, _, _ = with_attestation("linux/amd64")
    i2, _, _ = with_attestation("linux/arm64")
    built = build([src(i1), src(i2)])
    assert sum(e.is_attestation for e in built.entries) == 2


def test_platform_override_on_multi_image_index_is_refused() -> None:
    from luff.testing import random_index

    idx = random_index(["linux/amd64", "linux/arm64"])
    with pytest.raises(UsageError, match="single image"):
        build([src(idx, platform=Platform.parse("linux/s390x"))])


def test_unknown_source() -> None:
    store = MemoryStore("empty")
    with pytest.raises(NotFound, match="unknown source"):
        build([Source.from_store(store, "nope")])


# --- jq edits and validation ---------------------------------------------------


def test_jq_syntax_error_has_position() -> None:
    with pytest.raises(UsageError, match=r"line 1, column \d+"):
        apply_edits({"a": 1}, [".a |||"])


def test_jq_runtime_error_and_result_count() -> None:
    with pytest.raises(UsageError, match="failed"):
        apply_edits({"a": "x"}, [".a |= tonumber"])
    with pytest.raises(UsageError, match="gave 0 results"):
        apply_edits({"a": 1}, ["empty"])
    with pytest.raises(UsageError, match="not an index object"):
        apply_edits({"a": 1}, [".a"])


def test_edits_run_in_order() -> None:
    out = apply_edits({"n": 1}, [".n += 1", ".n *= 10"])
    assert out == {"n": 20}


def test_edit_to_unknown_digest_is_refused() -> None:
    a = random_image("linux/amd64")
    bogus = "sha256:" + "0" * 64
    with pytest.raises(InvalidManifest, match="no source provides"):
        build([src(a)], edits=[f'.manifests[0].digest = "{bogus}"'])


def test_edit_to_wrong_size_or_type_is_refused() -> None:
    a = random_image("linux/amd64")
    with pytest.raises(InvalidManifest, match="says size"):
        build([src(a)], edits=[".manifests[0].size += 1"])
    with pytest.raises(InvalidManifest, match="says mediaType"):
        build([src(a)], edits=[f'.manifests[0].mediaType = "{mt.DOCKER_MANIFEST}"'])


def test_edit_that_breaks_the_index_is_refused() -> None:
    a = random_image("linux/amd64")
    with pytest.raises(InvalidManifest, match="not valid"):
        build([src(a)], edits=["del(.manifests[0].digest)"])
    with pytest.raises(InvalidManifest, match="not valid"):
        build([src(a)], edits=[".schemaVersion = 1"])
    with pytest.raises(InvalidManifest, match="not an index"):
        build([src(a)], edits=[f'.mediaType = "{mt.OCI_MANIFEST}"'])


def test_edit_may_drop_entries() -> None:
    a, b = random_image("linux/amd64"), random_image("linux/arm64")
    built = build([src(a), src(b)], edits=["del(.manifests[0])"])
    assert [e.digest for e in built.entries] == [b.digest]
    plan = built.plan(MemoryStore("t"))
    assert {m.descriptor.digest for m in plan.manifests} == {b.digest, built.digest}


# --- docker format -------------------------------------------------------------


def test_docker_list_of_docker_images() -> None:
    a = random_image("linux/amd64", media="docker")
    b = random_image("linux/arm64", media="docker")
    built = build([src(a), src(b)], format="docker")
    assert built.manifest.media_type == mt.DOCKER_LIST


def test_docker_list_refuses_oci_images_and_annotations() -> None:
    d = random_image("linux/amd64", media="docker")
    o = random_image("linux/arm64")
    with pytest.raises(UsageError, match="only Docker v2 manifests"):
        build([src(d), src(o)], format="docker")
    with pytest.raises(UsageError, match="no annotations"):
        build([src(d)], format="docker", annotations={"a": "b"})
    with pytest.raises(UsageError, match="no annotations"):
        build([src(d, annotations={"a": "b"})], format="docker")
    with pytest.raises(UsageError, match="unknown index format"):
        build([src(d)], format="zip")


# --- filter, push to memory -------------------------------------------------------


def test_filter_and_push_in_memory() -> None:
    store = MemoryStore("m")
    a = random_image("linux/amd64", store=store)
    b = random_image("linux/arm64/v8", store=store)
    built = build([src(a), src(b)])
    built.push(store, ["multi"])
    multi = Source.from_store(store, "multi")
    kept = build_filter(multi, platforms=["linux/arm64"])
    assert [e.digest for e in kept.entries] == [b.digest]
    dropped = build_filter(multi, exclude=["linux/arm64"])
    assert [e.digest for e in dropped.entries] == [a.digest]
    with pytest.raises(UsageError, match="no entries would remain"):
        build_filter(multi, platforms=["linux/s390x"])


def test_build_filter_needs_a_choice() -> None:
    with pytest.raises(UsageError, match="either"):
        build_filter("localhost:1/x:1")


# --- destinations ----------------------------------------------------------------


def test_destinations_group_tags_by_repository() -> None:
    d = destinations("r.example/app:1", ["latest", "r.example/app:2", "other.example/app:1"])
    assert [(str(x.address), x.tags) for x in d] == [
        ("r.example/app", ["1", "latest", "2"]),
        ("other.example/app", ["1"]),
    ]
    assert [str(x) for x in d] == ["r.example/app:1 (and tags latest, 2)", "other.example/app:1"]
    # A registry target without a tag means :latest, as crane and skopeo take it.
    assert [x.tags for x in destinations("r.example/app")] == [["latest"]]
    with pytest.raises(UsageError, match="not a digest"):
        destinations("r.example/app@sha256:" + "a" * 64)


# --- spec files --------------------------------------------------------------------


def test_spec_file(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        """
target: r.example/app:1
tags: [latest, 1.0.0]
format: oci
annotations: {org.opencontainers.image.source: "https://example.com"}
set: ['.annotations.x = "y"']
allow-duplicate-platforms: true
sources:
  - r.example/app-amd64:1
  - ref: oci:out/win:1
    platform: {os: windows, architecture: amd64, os.version: "10.0.17763.1234"}
    os.features: [win32k]
    annotations: {flavour: servercore, n: 3}
  - ref: r.example/app-arm:1
    platform: linux/arm
"""
    )
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.target == "r.example/app:1"
    assert spec.tags == ["latest", "1.0.0"]
    assert spec.allow_duplicate_platforms and spec.flatten
    assert spec.edits == ['.annotations.x = "y"']
    win = spec.sources[1]
    assert win.address == f"oci:{tmp_path}/out/win:1"
    assert win.platform is not None and win.platform.os_version == "10.0.17763.1234"
    assert win.os_features == ("win32k",)
    assert win.annotations == {"flavour": "servercore", "n": "3"}
    assert str(spec.sources[2].platform) == "linux/arm"  # as written; it is arm/v7


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "mapping"),
        ({"sources": [{"platform": "linux/amd64"}]}, "'ref'"),
        ({"sources": ["a"], "colour": 1}, "unknown key"),
        ({"sources": [{"ref": "a", "platform": "lunix"}]}, "sources\\[0\\]"),
        ({"sources": ["a"], "format": "zip"}, "format"),
    ],
)
def test_bad_specs(obj: object, message: str) -> None:
    with pytest.raises((UsageError, InvalidPlatform), match=message):
        parse_spec(obj)


def test_bad_yaml_has_position(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("sources: [a, b\ntags: x\n")
    with pytest.raises(UsageError, match="line"):
        load_spec(tmp_path / "s.yaml")


def test_luff_index_is_an_attribute() -> None:
    assert callable(luff.index.create) and callable(luff.index.list)
    assert json.loads(build([src(random_image())]).to_json())["schemaVersion"] == 2


# --- append in memory ----------------------------------------------------------------


def test_append_amends_replaces_and_creates() -> None:
    store = MemoryStore("m")
    a = random_image("linux/amd64", store=store)
    b = random_image("linux/arm64", store=store)
    build([src(a), src(b)]).push(store, ["multi"])
    base = Source.from_store(store, "multi")
    # The same image again, relabelled: the entry is amended in place.
    amended = build_append(
        base, [src(a, platform=Platform.parse("linux/amd64/v3"), annotations={"k": "v"})]
    )
    assert [str(e.platform) for e in amended.entries] == ["linux/amd64/v3", "linux/arm64"]
    assert amended.entries[0].descriptor.annotations == {"k": "v"}
    assert amended.replaced == []
    # Another image of an existing platform replaces that entry, in its place.
    c = random_image("linux/amd64")
    replaced = build_append(base, [src(c)])
    assert [e.digest for e in replaced.entries] == [c.digest, b.digest]
    assert [(o.digest, n.digest) for o, n in replaced.replaced] == [(a.digest, c.digest)]
    # A missing base: append is create.
    fresh = build_append(Source.from_store(store, "nope"), [src(c)])
    assert [e.digest for e in fresh.entries] == [c.digest]
    assert fresh.manifest.media_type == mt.OCI_INDEX


def test_unknown_source_message_names_it_once() -> None:
    store = MemoryStore("empty")
    with pytest.raises(NotFound) as e:
        build([Source.from_store(store, "nope")])
    assert str(e.value).count("empty:nope") == 1


def test_nested_indexes_are_flattened_recursively() -> None:
    from luff.testing import random_index

    inner = random_index(["linux/amd64", "linux/arm64"])
    outer = Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [inner.descriptor.to_dict()],
        }
    )
    inner.store.push_manifest(outer, "outer")
    built = build([Source.from_store(inner.store, "outer")])
    assert [e.digest for e in built.entries] == [c.digest for c in inner.children]
    nested = build([Source.from_store(inner.store, "outer")], flatten=False)
    assert [e.digest for e in nested.entries] == [outer.digest]
    plan = nested.plan(MemoryStore("t"))
    assert {m.descriptor.digest for m in plan.manifests} >= {
        inner.digest,
        *(c.digest for c in inner.children),
    }
