"""Hostile layouts and files: symlinked blob directories, FIFOs and devices.

Every refusal is one ``luff: error:`` line and a non-zero exit code, nothing
outside the layout is written or deleted, and nothing hangs (each command
runs in a subprocess whose wait is bounded: a guard, not a timing test).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from luff.model.digest import Digest
from luff.stores.layout import INDEX_FILE, LAYOUT_FILE, SPARSE_FILE, blob_relpath
from luff.testing import random_image

#: A bound on each command's wait, so that a hang fails the test instead of blocking it.
WAIT = 60


def luff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )


def one_error_line(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode != 0, r.stdout
    assert r.stderr.startswith("luff: error: "), r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "src"
    random_image("linux/amd64", layers=2, size=2048).push(f"oci:{p}:x")
    return p


# --- 1. the layout boundary ------------------------------------------------------------


def _linked_layout(tmp_path: Path, src: Path, part: str) -> tuple[Path, Path, Path]:
    """A layout whose *part* (``blobs`` or ``blobs/sha256``) is a symlink to a directory
    outside it; that directory holds a victim file named like a digest (and, through the
    link, the layout's own blobs). Returns (layout, outside directory, victim)."""
    st = tmp_path / "stage"
    luff("copy", f"oci:{src}:x", f"oci:{st}:old")
    outside = tmp_path / "outside"
    shutil.move(str(st / part), str(outside))
    os.symlink(outside, st / part)
    victim_dir = outside / "sha256" if part == "blobs" else outside
    victim = victim_dir / Digest.of(b"precious").hex
    victim.write_bytes(b"not luff's to delete")
    return st, outside, victim


@pytest.mark.parametrize("part", ["blobs", "blobs/sha256"])
def test_append_and_copy_do_not_write_through_a_symlinked_blob_directory(
    tmp_path: Path, src: Path, part: str
) -> None:
    other = tmp_path / "other"
    random_image("linux/arm64", size=2048).push(f"oci:{other}:y")
    st, outside, _ = _linked_layout(tmp_path, src, part)
    before = snapshot(outside)
    index_before = (st / INDEX_FILE).read_bytes()
    r = luff("layout", "append", str(st), f"oci:{other}:y", "--tag", "y")
    one_error_line(r, "symbolic link")
    r = luff("copy", f"oci:{other}:y", f"oci:{st}:y")
    one_error_line(r, "symbolic link")
    assert snapshot(outside) == before
    assert (st / INDEX_FILE).read_bytes() == index_before


@pytest.mark.parametrize("part", ["blobs", "blobs/sha256"])
def test_gc_deletes_nothing_through_a_symlinked_blob_directory(
    tmp_path: Path, src: Path, part: str
) -> None:
    st, outside, victim = _linked_layout(tmp_path, src, part)
    (st / INDEX_FILE).write_text('{"schemaVersion":2,"manifests":[]}')  # nothing reachable
    before = snapshot(outside)
    r = luff("layout", "gc", str(st))
    one_error_line(r, "symbolic link")
    assert snapshot(outside) == before
    assert victim.read_bytes() == b"not luff's to delete"


def _layer(layout: Path, i: int = 0) -> str:
    img_digest = json.loads((layout / INDEX_FILE).read_text())["manifests"][0]["digest"]
    manifest = json.loads((layout / blob_relpath(img_digest)).read_text())
    return str(manifest["layers"][i]["digest"])


def test_a_blob_that_is_a_symlink_is_refused_when_read(tmp_path: Path, src: Path) -> None:
    layer = _layer(src)
    outside = tmp_path / "outside-blob"
    shutil.move(str(src / blob_relpath(layer)), outside)
    os.symlink(outside, src / blob_relpath(layer))
    one_error_line(luff("copy", f"oci:{src}:x", f"oci:{tmp_path / 'dst'}:x"), "symbolic link")


def test_a_blob_that_is_a_symlink_in_a_target_is_replaced_not_trusted(
    tmp_path: Path, src: Path
) -> None:
    dst = tmp_path / "dst"
    shutil.copytree(src, dst)
    layer = _layer(dst)
    data = (dst / blob_relpath(layer)).read_bytes()
    victim = tmp_path / "victim"
    victim.write_bytes(b"x" * len(data))  # the layer's size, other content
    (dst / blob_relpath(layer)).unlink()
    os.symlink(victim, dst / blob_relpath(layer))
    r = luff("copy", f"oci:{src}:x", f"oci:{dst}:x")
    assert r.returncode == 0, r.stderr
    assert not (dst / blob_relpath(layer)).is_symlink()
    assert (dst / blob_relpath(layer)).read_bytes() == data
    assert victim.read_bytes() == b"x" * len(data)


# --- 2. FIFOs and devices ----------------------------------------------------------------


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize("name", [INDEX_FILE, LAYOUT_FILE])
def test_a_fifo_for_a_layout_file_is_one_error(tmp_path: Path, src: Path, name: str) -> None:
    _fifo(src / name)
    one_error_line(luff("digest", f"oci:{src}:x"), name, "FIFO")
    one_error_line(luff("ls", f"oci:{src}"), name, "FIFO")


def test_a_fifo_for_index_json_of_a_target_is_one_error(tmp_path: Path, src: Path) -> None:
    dst = tmp_path / "dst"
    random_image("linux/arm64", size=512).push(f"oci:{dst}:old")
    _fifo(dst / INDEX_FILE)
    one_error_line(luff("copy", f"oci:{src}:x", f"oci:{dst}:new"), INDEX_FILE, "FIFO")
    one_error_line(
        luff("layout", "append", str(dst), f"oci:{src}:x", "--tag", "new"), INDEX_FILE, "FIFO"
    )


def test_a_fifo_for_the_sparse_record_is_one_error(tmp_path: Path, src: Path) -> None:
    (src / SPARSE_FILE).write_text('{"version":1,"blobs":{}}')
    _fifo(src / SPARSE_FILE)
    one_error_line(luff("layout", "list", str(src)), SPARSE_FILE, "FIFO")
    other = tmp_path / "other"
    random_image("linux/arm64", size=512).push(f"oci:{other}:y")
    one_error_line(
        luff("layout", "append", str(src), f"oci:{other}:y", "--sparse"), SPARSE_FILE, "FIFO"
    )


def test_a_fifo_for_a_blob_is_one_error(tmp_path: Path, src: Path) -> None:
    img_digest = json.loads((src / INDEX_FILE).read_text())["manifests"][0]["digest"]
    layer = _layer(src, 1)
    _fifo(src / blob_relpath(layer))
    dst = tmp_path / "dst"
    one_error_line(luff("copy", f"oci:{src}:x", f"oci:{dst}:x"), "FIFO")
    one_error_line(luff("blob", f"oci:{src}@{layer}"), "FIFO")
    # The manifest blob itself, read by digest.
    _fifo(src / blob_relpath(img_digest))
    one_error_line(luff("manifest", f"oci:{src}@{img_digest}"), "FIFO")
    one_error_line(luff("manifest", f"oci:{src}:x"), "FIFO")


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_a_fifo_or_device_given_as_an_archive_is_one_error(tmp_path: Path, transport: str) -> None:
    fifo = tmp_path / "a.tar"
    os.mkfifo(fifo)
    one_error_line(luff("digest", f"{transport}:{fifo}"), "FIFO")
    one_error_line(luff("copy", f"{transport}:{fifo}", f"oci:{tmp_path / 'o'}:x"), "FIFO")
    one_error_line(luff("digest", f"{transport}:/dev/zero"), "character device")
    assert not (tmp_path / "o").exists()


def test_a_fifo_given_to_push_is_one_error(tmp_path: Path) -> None:
    fifo = tmp_path / "a.tar"
    os.mkfifo(fifo)
    one_error_line(luff("push", str(fifo), "127.0.0.1:1/x:y"))


# --- compressed archives: corrupt, cut short, or inflating a thousandfold ----------------------


def _corrupt(data: bytes) -> bytes:
    return data[:20] + b"\x00" * 50 + data[70:]


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
@pytest.mark.parametrize("kind", ["gz", "gz-cut", "bz2", "xz"])
def test_a_corrupt_or_cut_compressed_archive_is_one_error(
    tmp_path: Path, transport: str, kind: str
) -> None:
    import bz2
    import gzip
    import lzma

    img = random_image("linux/amd64", size=20_000)
    img.push(f"{transport}:{tmp_path}/a.tar:1" if transport == "oci-archive" else
             f"{transport}:{tmp_path}/a.tar:app:1")  # fmt: skip
    plain = (tmp_path / "a.tar").read_bytes()
    packed = {
        "gz": _corrupt(gzip.compress(plain)),
        "gz-cut": gzip.compress(plain)[: len(plain) // 4],
        "bz2": _corrupt(bz2.compress(plain)),
        "xz": _corrupt(lzma.compress(plain)),
    }[kind]
    bad = tmp_path / f"a.tar.{kind.split('-')[0]}"
    bad.write_bytes(packed)
    one_error_line(
        luff("copy", f"{transport}:{bad}", f"oci:{tmp_path}/out:1"), str(bad), "compressed archive"
    )
    assert not (tmp_path / "out").exists()


def test_a_gzip_bomb_layer_in_a_docker_archive_is_inflated_in_bounded_pieces(
    tmp_path: Path,
) -> None:
    """256 MiB of zeros gzip to 256 kB: one read of the layer. luff hashes it to check the
    diff_id in pieces; the peak of Python's allocations stays far below the layer."""
    import gzip
    import hashlib
    import tarfile
    import tracemalloc

    from luff.context import Context
    from luff.ops import basic

    size = 256 << 20
    z = gzip.compress(b"\0" * size, compresslevel=1, mtime=0)
    diff_id = "sha256:" + hashlib.sha256(b"\0" * size).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "config": {},
        }
    ).encode()
    manifest = json.dumps(
        [{"Config": "config.json", "RepoTags": ["bomb:1"], "Layers": ["layer.tar.gz"]}]
    ).encode()
    tar = tmp_path / "bomb.tar"
    with tarfile.open(tar, "w") as t:
        for name, data in (
            ("manifest.json", manifest),
            ("config.json", config),
            ("layer.tar.gz", z),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    del z
    tracemalloc.start()
    try:
        basic.copy(f"docker-archive:{tar}", f"oci:{tmp_path}/out:1", ctx=Context())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"peak {peak >> 20} MiB for a {size >> 20} MiB layer"
