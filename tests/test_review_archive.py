"""Review regressions: docker-archive layers are checked against their names and diff_ids."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from luff.errors import DigestMismatch
from luff.model.digest import Digest
from luff.stores.archive import open_archive


def _archive(path: Path, tar_bytes: bytes, gz: bytes, diff_id: str, name: str = "") -> None:
    """A Docker 25+-style archive with one gzip layer stored under ``blobs/sha256/``."""
    cfg = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    cfg_member = f"blobs/sha256/{Digest.of(cfg).hex}"
    layer_member = name or f"blobs/sha256/{Digest.of(gz).hex}"
    manifest = [{"Config": cfg_member, "RepoTags": ["app:1"], "Layers": [layer_member]}]
    with tarfile.open(path, "w") as tf:
        for member, data in (
            (cfg_member, cfg),
            (layer_member, gz),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _layer(text: bytes) -> tuple[bytes, bytes]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size = len(text)
        tf.addfile(info, io.BytesIO(text))
    return raw.getvalue(), gzip.compress(raw.getvalue(), mtime=0)


def test_gzip_layer_is_read_when_it_matches(tmp_path: Path) -> None:
    plain, gz = _layer(b"hello")
    _archive(tmp_path / "a.tar", plain, gz, str(Digest.of(plain)))
    store = open_archive(tmp_path / "a.tar")
    _, m = store.get_manifest("app:1")
    with store.fetch(m.layers[0]) as f:
        assert f.read() == gz


def test_gzip_layer_not_matching_its_diff_id_is_refused(tmp_path: Path) -> None:
    plain, gz = _layer(b"hello")
    other, _ = _layer(b"other")
    _archive(tmp_path / "a.tar", plain, gz, str(Digest.of(other)))
    store = open_archive(tmp_path / "a.tar")
    with pytest.raises(DigestMismatch, match="diff_id"):
        store.get_manifest("app:1")


def test_gzip_layer_not_matching_its_name_is_refused(tmp_path: Path) -> None:
    plain, gz = _layer(b"hello")
    wrong = f"blobs/sha256/{Digest.of(b'something else').hex}"
    _archive(tmp_path / "a.tar", plain, gz, str(Digest.of(plain)), name=wrong)
    store = open_archive(tmp_path / "a.tar")
    with pytest.raises(DigestMismatch, match="does not match its name"):
        store.get_manifest("app:1")
