"""oci-archive and docker-archive: reading, writing, safety, and registries as peers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from luff.context import Context
from luff.errors import DigestMismatch, NotFound, UsageError
from luff.model import mediatypes as mt
from luff.model.digest import Digest
from luff.ops import basic
from luff.ops import layout as lay
from luff.ops.common import get_root
from luff.stores import open_source
from luff.stores.archive import (
    DockerArchiveStore,
    OciArchiveStore,
    SafeTar,
    UnsafeArchive,
    open_archive,
)
from luff.stores.layout import LayoutStore
from luff.testing import random_image, random_index
from tests.registries import DistributionRegistry


def make_tar(path: Path, members: list[tuple[str, bytes | tarfile.TarInfo]]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, content in members:
            if isinstance(content, tarfile.TarInfo):
                tf.addfile(content)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    return path


def layer_tar(text: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        data = text.encode()
        info = tarfile.TarInfo(f"etc/{text[:8]}")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_for(layers: list[bytes], arch: str = "amd64") -> bytes:
    return json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha(x)}" for x in layers]},
        }
    ).encode()


def classic_docker_save(path: Path, repo_tags: list[str], arch: str = "amd64") -> list[bytes]:
    """The pre-25 `docker save` format: HEX.json, ID/layer.tar, manifest.json, repositories."""
    layers = [layer_tar("first layer " + arch), layer_tar("second layer " + arch)]
    cfg = config_for(layers, arch)
    members: list[tuple[str, bytes | tarfile.TarInfo]] = [(f"{sha(cfg)}.json", cfg)]
    names = []
    for i, x in enumerate(layers):
        lid = sha(x + bytes([i]))
        members += [(f"{lid}/VERSION", b"1.0"), (f"{lid}/json", b"{}"), (f"{lid}/layer.tar", x)]
        names.append(f"{lid}/layer.tar")
    manifest = [{"Config": f"{sha(cfg)}.json", "RepoTags": repo_tags, "Layers": names}]
    members.append(("manifest.json", json.dumps(manifest).encode()))
    members.append(("repositories", b"{}"))
    make_tar(path, members)
    return layers


def docker25_save(path: Path, repo_tag: str) -> list[bytes]:
    """The Docker 25+ format: blobs/sha256/*, index.json, oci-layout and manifest.json."""
    layers = [layer_tar("docker 25 layer")]
    cfg = config_for(layers, "arm64")
    oci = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_CONFIG,
                "digest": f"sha256:{sha(cfg)}",
                "size": len(cfg),
            },
            "layers": [
                {"mediaType": mt.OCI_LAYER, "digest": f"sha256:{sha(x)}", "size": len(x)}
                for x in layers
            ],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": f"sha256:{sha(oci)}",
                "size": len(oci),
                "annotations": {"io.containerd.image.name": repo_tag},
            }
        ],
    }
    manifest = [
        {
            "Config": f"blobs/sha256/{sha(cfg)}",
            "RepoTags": [repo_tag],
            "Layers": [f"blobs/sha256/{sha(x)}" for x in layers],
        }
    ]
    make_tar(
        path,
        [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", json.dumps(index).encode()),
            ("manifest.json", json.dumps(manifest).encode()),
            (f"blobs/sha256/{sha(cfg)}", cfg),
            (f"blobs/sha256/{sha(oci)}", oci),
            *[(f"blobs/sha256/{sha(x)}", x) for x in layers],
        ],
    )
    return layers


# --- safety -------------------------------------------------------------------------------


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    "member",
    [
        ("/etc/passwd", b"x"),
        ("../escape", b"x"),
        ("blobs/../../escape", b"x"),
        ("blobs/sha256/abs", _link("blobs/sha256/abs", "/etc/passwd")),
        ("blobs/sha256/up", _link("blobs/sha256/up", "../../../etc/passwd")),
        ("hard", _link("hard", "../outside", tarfile.LNKTYPE)),
        ("dev", _link("dev", "", tarfile.CHRTYPE)),
    ],
)
def test_unsafe_members_are_refused(
    tmp_path: Path, member: tuple[str, bytes | tarfile.TarInfo]
) -> None:
    p = make_tar(
        tmp_path / "evil.tar",
        [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", b"{}"), member],
    )
    with pytest.raises(UnsafeArchive):
        SafeTar(p)
    with pytest.raises(UnsafeArchive):
        basic.digest(f"oci-archive:{p}")


def test_links_inside_the_archive_are_followed(tmp_path: Path) -> None:
    p = make_tar(
        tmp_path / "ok.tar",
        [("data/real", b"content"), ("data/alias", _link("data/alias", "real"))],
    )
    t = SafeTar(p)
    assert t.read("data/alias") == b"content"


def test_compressed_archive_is_read(tmp_path: Path) -> None:
    img = random_image("linux/amd64")
    img.push(f"oci-archive:{tmp_path / 'a.tar'}:v")
    (tmp_path / "a.tar.gz").write_bytes(gzip.compress((tmp_path / "a.tar").read_bytes()))
    assert basic.digest(f"oci-archive:{tmp_path / 'a.tar.gz'}:v").digest == img.digest


# --- oci-archive --------------------------------------------------------------------------


def test_oci_archive_round_trip(tmp_path: Path) -> None:
    idx = random_index(("linux/amd64", "linux/arm64"))
    a = tmp_path / "out" / "img.tar"
    idx.push(f"oci-archive:{a}:1.0")
    assert not [p for p in a.parent.iterdir() if p.name != "img.tar"]  # staging removed
    with tarfile.open(a) as tf:
        names = tf.getnames()
        assert all(m.mtime == 0 and m.uid == 0 for m in tf.getmembers())
    assert names[:2] == ["oci-layout", "index.json"]
    store = OciArchiveStore.open(a)
    assert [e.annotations[mt.REF_NAME] for e in store.entries()] == ["1.0"]
    assert basic.digest(f"oci-archive:{a}").digest == idx.digest
    # archive → layout → archive keeps every digest; writing again replaces the file
    basic.copy(f"oci-archive:{a}:1.0", f"oci:{tmp_path / 'lay'}:1.0")
    basic.copy(f"oci:{tmp_path / 'lay'}:1.0", f"oci-archive:{a}:2.0")
    assert OciArchiveStore.open(a).tags() == ["2.0"]
    assert basic.digest(f"oci-archive:{a}:2.0").digest == idx.digest


def test_failed_archive_write_leaves_nothing(tmp_path: Path) -> None:
    a = tmp_path / "x.tar"
    store = OciArchiveStore.open(a, write=True)
    random_image().push(f"oci:{tmp_path / 'l'}:v")
    with pytest.raises(RuntimeError), store:
        store.push_manifest(LayoutStore.open(tmp_path / "l").get_manifest("v")[1], "v")
        raise RuntimeError("boom")
    assert not a.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l"]


def test_corrupt_blob_in_archive_is_refused(tmp_path: Path) -> None:
    img = random_image("linux/amd64", size=4096)
    a = tmp_path / "a.tar"
    img.push(f"oci-archive:{a}:v")
    data = bytearray(a.read_bytes())
    layer = img.store.blobs[img.manifest.layers[0].digest]
    at = bytes(data).find(layer[-64:])
    data[at + 10] ^= 0xFF
    a.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch):
        basic.copy(f"oci-archive:{a}:v", f"oci:{tmp_path / 'l'}:v")


# --- docker-archive: reading -----------------------------------------------------------------


def test_classic_docker_save_is_read(tmp_path: Path) -> None:
    p = tmp_path / "classic.tar"
    layers = classic_docker_save(p, ["app:1.0"])
    store, _ = open_source(f"docker-archive:{p}")
    desc, m = get_root(store, "")
    assert m.media_type == mt.DOCKER_MANIFEST
    assert [x.media_type for x in m.layers] == [mt.DOCKER_LAYER_GZIP] * 2
    cfg = json.loads(store.fetch_bytes(m.config))
    for x, want, diff in zip(m.layers, layers, cfg["rootfs"]["diff_ids"], strict=True):
        with store.fetch(x) as f:
            plain = gzip.decompress(f.read())
        assert plain == want and f"sha256:{sha(plain)}" == diff
    # stable digests (deterministic gzip); names resolve normalised
    again, _ = open_source(f"docker-archive:{p}")
    assert get_root(again, "")[0].digest == desc.digest
    for name in ("app:1.0", "docker.io/library/app:1.0"):
        assert store.resolve(name).digest == desc.digest
    assert basic.digest(f"docker-archive:{p}:app:1.0").digest == desc.digest
    with pytest.raises(NotFound):
        store.resolve("app:2.0")
    assert str(desc.platform) == "linux/amd64"


def test_docker25_save_is_read(tmp_path: Path) -> None:
    p = tmp_path / "d25.tar"
    layers = docker25_save(p, "docker.io/library/app:25")
    assert isinstance(open_archive(p), DockerArchiveStore)
    _, _, m = basic.resolve(f"docker-archive:{p}:app:25")
    assert m.media_type == mt.DOCKER_MANIFEST
    store, _ = open_source(f"docker-archive:{p}")
    with store.fetch(m.layers[0]) as f:
        assert gzip.decompress(f.read()) == layers[0]
    assert json.loads(basic.config(f"docker-archive:{p}"))["architecture"] == "arm64"


def test_docker_archive_with_several_images(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    classic_docker_save(a, ["one:1"])
    classic_docker_save(b, ["two:1"], arch="arm64")
    # merge the two manifests into one archive
    with tarfile.open(a) as ta, tarfile.open(b) as tb:
        items = json.loads(ta.extractfile("manifest.json").read())  # type: ignore[union-attr]
        items += json.loads(tb.extractfile("manifest.json").read())  # type: ignore[union-attr]
        members: list[tuple[str, bytes | tarfile.TarInfo]] = []
        for t in (ta, tb):
            for m in t.getmembers():
                if m.isfile() and m.name not in ("manifest.json", "repositories"):
                    members.append((m.name, t.extractfile(m).read()))  # type: ignore[union-attr]
    both = make_tar(
        tmp_path / "both.tar", [*members, ("manifest.json", json.dumps(items).encode())]
    )
    with pytest.raises(UsageError, match="one:1, two:1"):
        basic.digest(f"docker-archive:{both}")
    arm = json.loads(basic.config(f"docker-archive:{both}:two:1"))
    assert arm["architecture"] == "arm64"


def test_docker_archive_diff_id_mismatch_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "bad.tar"
    layers = [layer_tar("real")]
    cfg = config_for([layer_tar("something else")])
    make_tar(
        p,
        [
            (f"{sha(cfg)}.json", cfg),
            ("l/layer.tar", layers[0]),
            (
                "manifest.json",
                json.dumps(
                    [{"Config": f"{sha(cfg)}.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
                ).encode(),
            ),
        ],
    )
    with pytest.raises(DigestMismatch, match="diff_id"):
        basic.digest(f"docker-archive:{p}")
    # a config whose bytes do not match its name
    cfg2 = config_for(layers)
    make_tar(
        p,
        [
            (f"{sha(b'other')}.json", cfg2),
            ("l/layer.tar", layers[0]),
            (
                "manifest.json",
                json.dumps(
                    [{"Config": f"{sha(b'other')}.json", "RepoTags": [], "Layers": ["l/layer.tar"]}]
                ).encode(),
            ),
        ],
    )
    with pytest.raises(DigestMismatch):
        basic.digest(f"docker-archive:{p}")


# --- docker-archive: to and from registries -----------------------------------------------------


def test_docker_archive_to_registry_compresses_with_correct_diff_ids(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context
) -> None:
    p = tmp_path / "classic.tar"
    layers = classic_docker_save(p, ["app:1.0"])
    local = basic.digest(f"docker-archive:{p}")
    d = basic.copy(f"docker-archive:{p}", f"{registry.host}/darc/app:1.0", ctx=ctx)
    assert d.digest == local.digest
    store, desc, m = basic.resolve(f"{registry.host}/darc/app:1.0", ctx=ctx)
    cfg = json.loads(store.fetch_bytes(m.config))
    for x, want, diff in zip(m.layers, layers, cfg["rootfs"]["diff_ids"], strict=True):
        assert x.media_type == mt.DOCKER_LAYER_GZIP
        with store.fetch(x) as f:
            plain = gzip.decompress(f.read())
        assert plain == want and Digest.of(plain) == Digest.parse(diff)
    # pushing again is a no-op with the same digest; FILE:REPO:TAG names the image
    assert lay.push(str(p), f"{registry.host}/darc/app:1.0", ctx=ctx).digest == desc.digest
    assert lay.push(f"{p}:app:1.0", f"{registry.host}/darc/app:1.1", ctx=ctx).digest == desc.digest
    with pytest.raises(NotFound):
        lay.push(f"{p}:app:9", f"{registry.host}/darc/app:1.1", ctx=ctx)


def test_write_docker_archive_from_registry(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context
) -> None:
    img = random_image("linux/ppc64le", layers=2, media="docker")
    img.push(f"{registry.host}/darc/w:3", ctx)
    out = tmp_path / "w.tar"
    lay.pull(f"{registry.host}/darc/w:3", out, format="docker-archive", ctx=ctx)
    with tarfile.open(out) as tf:
        (entry,) = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert entry["RepoTags"] == [f"{registry.host}/darc/w:3"]
        cfg = json.loads(tf.extractfile(entry["Config"]).read())  # type: ignore[union-attr]
        for name, diff in zip(entry["Layers"], cfg["rootfs"]["diff_ids"], strict=True):
            data = tf.extractfile(name).read()  # type: ignore[union-attr]
            assert data[:2] != b"\x1f\x8b" and f"sha256:{sha(data)}" == diff
        assert tf.extractfile("oci-layout") is not None
    # read back: same config, and the layers are the same bytes once decompressed
    assert basic.config(f"docker-archive:{out}") == img.store.blobs[img.manifest.config.digest]
    # an index cannot go into a docker archive
    idx = random_index()
    with pytest.raises(UsageError, match="--platform"):
        idx.push(f"docker-archive:{tmp_path / 'i.tar'}:x/y:1")
    assert not (tmp_path / "i.tar").exists()


def test_index_create_from_disk_sources(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context
) -> None:
    """Layouts and both archive kinds are sources of `index create`, and a layout a target."""
    from luff.ops import index

    multi = random_index(("linux/amd64", "linux/arm64"))
    multi.push(f"oci:{tmp_path / 'l'}:1")
    s390 = random_image("linux/s390x", media="docker")
    s390.push(f"docker-archive:{tmp_path / 's.tar'}:acme/app:1")
    ppc = random_image("linux/ppc64le")
    ppc.push(f"oci-archive:{tmp_path / 'p.tar'}:1")
    sources = [
        f"oci:{tmp_path / 'l'}:1",
        f"docker-archive:{tmp_path / 's.tar'}:acme/app:1",
        f"oci-archive:{tmp_path / 'p.tar'}",
    ]
    d = index.create(f"{registry.host}/disk/idx:1", sources, ctx=ctx)
    _, _, m = basic.resolve(f"{registry.host}/disk/idx:1", ctx=ctx)
    assert m.digest == d.digest
    plats = [str(e.platform) for e in m.manifests]
    assert plats == ["linux/amd64", "linux/arm64", "linux/s390x", "linux/ppc64le"]
    assert m.manifests[0].digest == multi.children[0].digest
    assert m.manifests[3].digest == ppc.digest
    synthesized = basic.digest(f"docker-archive:{tmp_path / 's.tar'}").digest
    assert m.manifests[2].digest == synthesized
    # into a layout
    d2 = index.create(f"oci:{tmp_path / 'out'}:v", sources, ctx=ctx)
    (entry,) = lay.list_entries(tmp_path / "out")
    assert entry.descriptor.digest == d2.digest and not entry.sparse
