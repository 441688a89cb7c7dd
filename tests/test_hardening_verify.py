"""``luff verify`` and :func:`luff.ops.verify.verify`: every blob and child re-read, once.

Problems go to stdout, one line each (``KIND DIGEST (ROLE of PARENT): MESSAGE``),
then a summary line; any problem makes the exit code 1 with one
``luff: error:`` line on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from luff.context import Context
from luff.stores.layout import INDEX_FILE, LAYOUT_FILE, blob_relpath
from luff.stores.tarball import write_tar
from luff.testing import Image, random_index
from tests.registries import DistributionRegistry
from tests.test_hardening_graphs import CountingStore, diamond, manifests_below


def luff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def totals(idx: Image) -> tuple[int, int, int]:
    """(manifests, blobs, bytes) of an index of images."""
    manifests = 1 + len(idx.children)
    blobs = [b for c in idx.children for b in c.manifest.blobs()]
    size = idx.manifest.size + sum(c.manifest.size for c in idx.children)
    return manifests, len(blobs), size + sum(b.size for b in blobs)


def summary_counts(line: str) -> tuple[int, int, int]:
    # "<where>@<digest>: N manifests, M blobs, B bytes verified; no problems"
    body = line.split(": ", 1)[1]
    parts = body.split(";")[0].split(", ")
    return int(parts[0].split()[0]), int(parts[1].split()[0]), int(parts[2].split()[0])


@pytest.fixture
def idx() -> Image:
    return random_index(("linux/amd64", "linux/arm64"), layers=2, size=3000)


def test_a_good_layout(tmp_path: Path, idx: Image) -> None:
    idx.push(f"oci:{tmp_path / 'l'}:v1")
    r = luff("verify", f"oci:{tmp_path / 'l'}:v1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].endswith("no problems"), r.stdout
    assert summary_counts(lines[0]) == totals(idx)
    assert str(idx.digest) in lines[0]


def test_a_layout_with_a_corrupt_layer_and_a_missing_blob(tmp_path: Path, idx: Image) -> None:
    lay = tmp_path / "l"
    idx.push(f"oci:{lay}:v1")
    amd, arm = idx.children
    layer = amd.manifest.layers[1].digest
    path = lay / blob_relpath(layer)
    path.write_bytes(bytes(b ^ 1 for b in path.read_bytes()))  # same size
    config = arm.manifest.config.digest
    (lay / blob_relpath(config)).unlink()
    r = luff("verify", f"oci:{lay}:v1")
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith("luff: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "2 missing, corrupt or invalid items" in r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3, r.stdout
    assert lines[0].startswith(f"corrupt {layer} (layer of {amd.digest}): ")
    assert lines[1].startswith(f"missing {config} (config of {arm.digest}): ")
    assert lines[2].endswith("2 problems")
    m, b, _ = summary_counts(lines[2])
    assert (m, b) == (3, totals(idx)[1] - 2)
    # The library gives the same, as values.
    from luff.ops.verify import CORRUPT, MISSING, verify

    report = verify(f"oci:{lay}:v1")
    assert not report.ok
    assert [(p.kind, p.digest) for p in report.problems] == [(CORRUPT, layer), (MISSING, config)]
    # --json
    r = luff("verify", "--json", f"oci:{lay}:v1")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert [p["kind"] for p in doc["problems"]] == ["corrupt", "missing"]


def test_a_missing_child_manifest(tmp_path: Path, idx: Image) -> None:
    lay = tmp_path / "l"
    idx.push(f"oci:{lay}:v1")
    gone = idx.children[0].digest
    (lay / blob_relpath(gone)).unlink()
    r = luff("verify", f"oci:{lay}:v1")
    assert r.returncode == 1
    assert r.stdout.splitlines()[0].startswith(f"missing {gone} (manifest of {idx.digest})")


def test_each_digest_is_read_once(ctx: Context) -> None:
    from luff.ops.verify import verify_store

    store = CountingStore()
    root, _ = diamond(store, depth=30)
    report = verify_store(store, root.descriptor(), ctx=ctx)
    assert report.ok
    distinct = manifests_below(store, root)
    assert report.manifests == len(distinct)
    assert report.blobs == len(store.blobs)
    assert max(store.opens.values()) == 1
    assert set(store.opens) == distinct | set(store.blobs)


def test_a_good_image_in_a_registry(
    registry: DistributionRegistry, ctx: Context, idx: Image
) -> None:
    ref = f"{registry.host}/verify/good:1"
    idx.push(ref, ctx)
    r = luff("verify", ref)
    assert r.returncode == 0, r.stderr
    assert summary_counts(r.stdout.splitlines()[-1]) == totals(idx)
    r = luff("verify", f"{registry.host}/verify/good@{idx.children[1].digest}")
    assert r.returncode == 0, r.stderr
    r = luff("verify", f"{registry.host}/verify/none:1")
    assert r.returncode == 1 and r.stderr.startswith("luff: error: ") and not r.stdout


def test_archives(tmp_path: Path, idx: Image) -> None:
    lay = tmp_path / "l"
    idx.push(f"oci:{lay}:v1")
    oa, da = tmp_path / "a.tar", tmp_path / "d.tar"
    assert luff("copy", f"oci:{lay}:v1", f"oci-archive:{oa}").returncode == 0
    r = luff("copy", "--platform", "linux/arm64", f"oci:{lay}:v1", f"docker-archive:{da}")
    assert r.returncode == 0, r.stderr
    r = luff("verify", f"oci-archive:{oa}")
    assert r.returncode == 0, r.stderr
    assert summary_counts(r.stdout.splitlines()[-1]) == totals(idx)
    r = luff("verify", f"docker-archive:{da}")
    assert r.returncode == 0, r.stderr
    assert summary_counts(r.stdout.splitlines()[-1])[:2] == (1, 3)
    # An OCI archive with a corrupt layer (the same size).
    amd = idx.children[0]
    layer = amd.manifest.layers[0].digest
    members: list[tuple[str, Path | bytes]] = [
        (LAYOUT_FILE, lay / LAYOUT_FILE),
        (INDEX_FILE, lay / INDEX_FILE),
    ]
    for f in sorted((lay / "blobs" / "sha256").iterdir()):
        data = f.read_bytes()
        if f.name == layer.hex:
            data = bytes(b ^ 1 for b in data)
        members.append((f"blobs/sha256/{f.name}", data))
    write_tar(tmp_path / "bad.tar", members)
    r = luff("verify", f"oci-archive:{tmp_path / 'bad.tar'}:v1")
    assert r.returncode == 1
    assert r.stdout.splitlines()[0].startswith(f"corrupt {layer} (layer of {amd.digest})")


def test_a_sparse_layout_is_verified_through_its_sources(tmp_path: Path, idx: Image) -> None:
    src, sparse = tmp_path / "src", tmp_path / "sparse"
    idx.push(f"oci:{src}:v1")
    assert luff("layout", "init", str(sparse)).returncode == 0
    r = luff("layout", "append", str(sparse), f"oci:{src}:v1", "--sparse", "--tag", "v1")
    assert r.returncode == 0, r.stderr
    r = luff("verify", f"oci:{sparse}:v1")
    assert r.returncode == 0, r.stderr
    # A recorded source that lost the blob: reported missing.
    layer = idx.children[1].manifest.layers[0].digest
    os.unlink(src / blob_relpath(layer))
    r = luff("verify", f"oci:{sparse}:v1")
    assert r.returncode == 1
    assert any(line.startswith(f"missing {layer}") for line in r.stdout.splitlines())


def test_verify_writes_nothing(tmp_path: Path, idx: Image) -> None:
    lay = tmp_path / "l"
    idx.push(f"oci:{lay}:v1")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in lay.rglob("*"))
    assert luff("verify", f"oci:{lay}:v1").returncode == 0
    assert sorted((p.name, p.stat().st_mtime_ns) for p in lay.rglob("*")) == before
