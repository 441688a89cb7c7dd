"""Blobs already in a target layout are verified before luff counts on them.

A same-size corrupt blob used to be taken as present: the copy exited 0
with ``index.json`` pointing at corrupt content. Now it is hashed, replaced
with a warning, and what was verified is remembered (``luff-verified.json``,
keyed by device, inode, size, mtime and ctime) so a re-run hashes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from luff.context import Context
from luff.copy import copy_graph
from luff.model.digest import Digest
from luff.stores.layout import INDEX_FILE, TMP_PREFIX, LayoutStore, blob_relpath
from luff.testing import Image, random_image

VERIFIED = "luff-verified.json"


def luff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def corrupt(path: Path, keep_times: bool = False) -> None:
    """Overwrite *path* in place with garbage of the same size (same inode)."""
    st = path.stat()
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(bytes(b ^ 0xFF for b in data))
    assert path.stat().st_size == st.st_size and path.stat().st_ino == st.st_ino
    if keep_times:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def blobs_of(img: Image) -> list[Digest]:
    return [img.digest, img.manifest.config.digest, *(x.digest for x in img.manifest.layers)]


@pytest.fixture
def img() -> Image:
    return random_image("linux/amd64", layers=3, size=4096)


def test_a_corrupt_blob_in_the_target_is_replaced_with_a_warning(
    tmp_path: Path, img: Image
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    img.push(f"oci:{src}:x")
    r = luff("copy", f"oci:{src}:x", f"oci:{dst}:x")
    assert r.returncode == 0, r.stderr
    layer = img.manifest.layers[1].digest
    corrupt(dst / blob_relpath(layer))
    corrupt(dst / blob_relpath(img.digest))  # the manifest too
    r = luff("copy", f"oci:{src}:x", f"oci:{dst}:x")
    assert r.returncode == 0, r.stderr
    for d in blobs_of(img):
        data = (dst / blob_relpath(d)).read_bytes()
        assert Digest.of(data) == d
    warnings = [line for line in r.stderr.splitlines() if line.startswith("luff: warning: ")]
    assert len(warnings) == 2, r.stderr
    assert any(str(layer) in w and "corrupt" in w for w in warnings)
    assert any(str(img.digest) in w and "corrupt" in w for w in warnings)
    assert json.loads((dst / INDEX_FILE).read_text())["manifests"][0]["digest"] == str(img.digest)
    assert not list(dst.glob(TMP_PREFIX + "*"))
    # Now everything is right: no warning, and the layout verifies with skopeo's reader.
    r = luff("copy", f"oci:{src}:x", f"oci:{dst}:x")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert (
        subprocess.run(["umoci", "ls", "--layout", str(dst)], capture_output=True).returncode == 0
    )


def test_the_record_names_each_verified_file(tmp_path: Path, img: Image) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    img.push(f"oci:{src}:x")
    assert luff("copy", f"oci:{src}:x", f"oci:{dst}:x").returncode == 0
    record = json.loads((dst / VERIFIED).read_text())
    assert record["version"] == 1
    assert set(record["blobs"]) == {str(d) for d in blobs_of(img)}
    for d in blobs_of(img):
        st = os.lstat(dst / blob_relpath(d))
        want = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        assert record["blobs"][str(d)] == want


def _copy_into(img: Image, dst: Path, ctx: Context) -> list[Digest]:
    """Copy *img* into the layout *dst* with a handle of its own; the blobs it hashed."""
    store = LayoutStore.open(dst, create=True, ctx=ctx)
    with store:
        copy_graph(img.store, img.descriptor, store, manifest=img.manifest, tags=["x"], ctx=ctx)
    return list(store.rehashed)


def test_a_rerun_hashes_nothing_and_a_changed_file_is_hashed_again(
    tmp_path: Path, img: Image
) -> None:
    said: list[str] = []
    ctx = Context(log=said.append)
    dst = tmp_path / "dst"
    assert _copy_into(img, dst, ctx) == []  # all written here: nothing to hash
    assert _copy_into(img, dst, ctx) == []  # all remembered
    assert _copy_into(img, dst, ctx) == []
    # A blob corrupted in place with its modification time put back: the change time
    # still tells, so it is hashed, found corrupt and replaced.
    layer = img.manifest.layers[0].digest
    corrupt(dst / blob_relpath(layer), keep_times=True)
    assert _copy_into(img, dst, ctx) == [layer]
    assert Digest.of((dst / blob_relpath(layer)).read_bytes()) == layer
    assert [m for m in said if "corrupt" in m and str(layer) in m]
    assert _copy_into(img, dst, ctx) == []
    # A layout copied elsewhere (new inodes) is hashed once, then trusted.
    import shutil

    shutil.copytree(dst, tmp_path / "moved")
    assert sorted(_copy_into(img, tmp_path / "moved", ctx)) == sorted(blobs_of(img))
    assert _copy_into(img, tmp_path / "moved", ctx) == []


def test_a_blob_left_by_an_earlier_run_is_hashed_once(tmp_path: Path, img: Image) -> None:
    """A blob no record names (another tool wrote it) is hashed, and then remembered."""
    dst = tmp_path / "dst"
    LayoutStore.init(dst)
    layer = img.manifest.layers[2]
    (dst / blob_relpath(layer.digest)).write_bytes(img.store.blobs[layer.digest])
    ctx = Context()
    assert _copy_into(img, dst, ctx) == [layer.digest]
    assert _copy_into(img, dst, ctx) == []


def test_the_record_is_bounded(tmp_path: Path, img: Image, monkeypatch: pytest.MonkeyPatch) -> None:
    import luff.stores.layout_verified as verified_module

    monkeypatch.setattr(verified_module, "MAX_VERIFIED", 3)
    dst = tmp_path / "dst"
    _copy_into(img, dst, Context())
    record = json.loads((dst / VERIFIED).read_text())
    assert len(record["blobs"]) == 3
    # An unreadable record is only a cache: it is ignored (and rewritten).
    (dst / VERIFIED).write_text("{not json")
    assert sorted(_copy_into(img, dst, Context())) == sorted(blobs_of(img))
    assert len(json.loads((dst / VERIFIED).read_text())["blobs"]) == 3
