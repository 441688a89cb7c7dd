"""Deeply nested JSON in layouts and archives: one ``nested too deeply`` line, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from luff.errors import LimitExceeded
from luff.model import mediatypes as mt
from luff.model.digest import Digest
from luff.stores.layout import INDEX_FILE, SPARSE_FILE, LayoutStore, blob_relpath
from luff.stores.tarball import write_tar
from luff.testing import random_image

DEEP = b"[" * 100_000 + b"]" * 100_000


def luff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def nested_too_deeply(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.startswith("luff: error: "), r.stderr[-2000:]
    assert r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert "nested too deeply" in r.stderr, r.stderr


def test_the_bound() -> None:
    from luff.model import jsonutil

    ok = b"[" * 64 + b"]" * 64
    assert jsonutil.loads(ok) is not None
    with pytest.raises(LimitExceeded, match="nested too deeply"):
        jsonutil.loads(b"[" * 65 + b"]" * 65)
    with pytest.raises(LimitExceeded, match="nested too deeply"):
        jsonutil.loads(DEEP)
    # brackets inside strings do not count
    assert jsonutil.loads(json.dumps({"a": "[" * 1000}).encode()) == {"a": "[" * 1000}
    with pytest.raises(ValueError):
        jsonutil.loads(b"{")


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    p = tmp_path / "l"
    random_image("linux/amd64", size=256).push(f"oci:{p}:x")
    return p


def test_deep_index_json_in_a_layout(tmp_path: Path, layout: Path) -> None:
    (layout / INDEX_FILE).write_bytes(b'{"schemaVersion":2,"manifests":' + DEEP + b"}")
    nested_too_deeply(luff("digest", f"oci:{layout}:x"))
    nested_too_deeply(luff("layout", "list", str(layout)))
    src = tmp_path / "src"
    random_image("linux/arm64", size=256).push(f"oci:{src}:y")
    nested_too_deeply(luff("copy", f"oci:{src}:y", f"oci:{layout}:y"))


def test_deep_sparse_record_in_a_layout(layout: Path) -> None:
    (layout / SPARSE_FILE).write_bytes(b'{"version":1,"blobs":' + DEEP + b"}")
    nested_too_deeply(luff("layout", "list", str(layout)))


def _deep_manifest() -> bytes:
    head = b'{"schemaVersion":2,"mediaType":"' + mt.OCI_INDEX.encode() + b'","manifests":[],'
    return head + b'"annotations":{"x":' + DEEP + b"}}"


def test_deep_manifest_blob_in_a_layout(tmp_path: Path, layout: Path) -> None:
    data = _deep_manifest()
    d = Digest.of(data)
    (layout / blob_relpath(d)).write_bytes(data)
    entry = {"mediaType": mt.OCI_INDEX, "digest": str(d), "size": len(data)}
    entry["annotations"] = {mt.REF_NAME: "deep"}
    index = json.loads((layout / INDEX_FILE).read_text())
    index["manifests"].append(entry)
    (layout / INDEX_FILE).write_text(json.dumps(index))
    nested_too_deeply(luff("manifest", f"oci:{layout}:deep"))
    nested_too_deeply(luff("manifest", f"oci:{layout}@{d}"))
    nested_too_deeply(luff("copy", f"oci:{layout}:deep", f"oci:{tmp_path / 'out'}:deep"))
    # An index whose child is the deep manifest.
    outer = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]})
    od = Digest.of(outer.encode())
    (layout / blob_relpath(od)).write_text(outer)
    nested_too_deeply(luff("copy", f"oci:{layout}@{od}", f"oci:{tmp_path / 'out2'}:o"))


def test_deep_json_in_an_oci_archive(tmp_path: Path, layout: Path) -> None:
    members: list[tuple[str, Path | bytes]] = [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        (INDEX_FILE, b'{"schemaVersion":2,"manifests":' + DEEP + b"}"),
    ]
    write_tar(tmp_path / "a.tar", members)
    nested_too_deeply(luff("digest", f"oci-archive:{tmp_path / 'a.tar'}"))
    # index.json fine, the manifest it lists deep
    data = _deep_manifest()
    d = Digest.of(data)
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": mt.OCI_INDEX, "digest": str(d), "size": len(data)}],
    }
    members = [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        (INDEX_FILE, json.dumps(index).encode()),
        (blob_relpath(d), data),
    ]
    write_tar(tmp_path / "b.tar", members)
    nested_too_deeply(luff("manifest", f"oci-archive:{tmp_path / 'b.tar'}"))
    nested_too_deeply(luff("manifest", f"oci-archive:{tmp_path / 'b.tar'}@{d}"))


def test_deep_json_in_a_docker_archive(tmp_path: Path) -> None:
    write_tar(tmp_path / "d.tar", [("manifest.json", DEEP)])
    nested_too_deeply(luff("digest", f"docker-archive:{tmp_path / 'd.tar'}"))
    # manifest.json fine, the config deep
    cfg = b'{"rootfs":' + DEEP + b"}"
    cfg_name = f"{Digest.of(cfg).hex}.json"
    manifest_json = json.dumps([{"Config": cfg_name, "RepoTags": ["a:1"], "Layers": []}])
    write_tar(tmp_path / "e.tar", [("manifest.json", manifest_json.encode()), (cfg_name, cfg)])
    nested_too_deeply(luff("digest", f"docker-archive:{tmp_path / 'e.tar'}"))


def test_a_deep_manifest_is_refused_by_the_store_itself(layout: Path) -> None:
    data = _deep_manifest()
    d = Digest.of(data)
    (layout / blob_relpath(d)).write_bytes(data)
    store = LayoutStore.open(layout)
    with pytest.raises(LimitExceeded, match="nested too deeply"):
        store.resolve(str(d))
    from luff.model.descriptor import Descriptor

    with pytest.raises(LimitExceeded, match="nested too deeply"):
        store.fetch_manifest(Descriptor(mt.OCI_INDEX, d, len(data)))
