"""``luff mutate`` without registries: layer packing, config edits, validation, parsing.

The packed layers are read back with Python's tarfile and gzip; the edits
are the pure functions of :mod:`luff.ops.changes`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from luff.errors import InvalidManifest, UsageError
from luff.model import mediatypes as mt
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.ops.changes import (
    Append,
    Changes,
    edit_config,
    edit_index,
    edit_manifest,
    merge_env,
    parse_command,
    parse_created,
)
from luff.ops.layers import GZIP_LEVEL, Layer, LayerStore, layer_media_type
from luff.testing import random_image, random_index
from tests.images import index_with_attestation

# --- layer packing ---------------------------------------------------------------------


def tree(root: Path) -> Path:
    """A small directory: nested dirs, an executable, a hard link, a symlink."""
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ssl/certs/ca-certificates.crt").write_text("CERT\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_text("#!/bin/sh\necho hi\n")
    (root / "bin/tool").chmod(0o750)
    os.link(root / "bin/tool", root / "bin/tool2")
    (root / "etc/link").symlink_to("/etc/ssl/certs/ca-certificates.crt")
    (root / "secret").write_text("s")
    (root / "secret").chmod(0o600)
    os.chown(root / "secret", 4321, 4321)
    return root


def members(layer: Layer) -> list[tarfile.TarInfo]:
    with gzip.open(layer.path) as g:
        raw = g.read()
    assert hashlib.sha256(raw).hexdigest() == layer.diff_id.hex
    assert hashlib.sha256(layer.path.read_bytes()).hexdigest() == layer.digest.hex
    return tarfile.open(fileobj=io.BytesIO(raw)).getmembers()


@pytest.fixture
def store() -> Any:
    s = LayerStore()
    yield s
    s.close()
    assert not s.dir.exists()


def test_directory_is_packed_sorted_as_root_with_fixed_times(
    tmp_path: Path, store: LayerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    layer = store.pack(tree(tmp_path / "d"))
    ms = members(layer)
    assert [m.name for m in ms] == [
        "bin",
        "bin/tool",
        "bin/tool2",
        "etc",
        "etc/link",
        "etc/ssl",
        "etc/ssl/certs",
        "etc/ssl/certs/ca-certificates.crt",
        "secret",
    ]
    assert all((m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0) for m in ms)
    by = {m.name: m for m in ms}
    assert by["bin/tool"].mode == 0o750 and by["secret"].mode == 0o600
    assert by["bin/tool2"].islnk() and by["bin/tool2"].linkname == "bin/tool"
    assert (
        by["etc/link"].issym() and by["etc/link"].linkname == "/etc/ssl/certs/ca-certificates.crt"
    )
    assert layer.name == "d"


def test_the_same_files_elsewhere_give_the_same_digest(tmp_path: Path, store: LayerStore) -> None:
    a = tree(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b, symlinks=True)
    os.utime(b / "etc/ssl/certs/ca-certificates.crt", (1, 1))  # other mtimes do not matter
    os.unlink(b / "bin/tool2")
    os.link(b / "bin/tool", b / "bin/tool2")
    first, second = store.pack(a), LayerStore().pack(b)
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)


def test_source_date_epoch_sets_every_mtime(
    tmp_path: Path, store: LayerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    layer = store.pack(tree(tmp_path / "d"))
    assert {m.mtime for m in members(layer)} == {1700000000}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        LayerStore().pack(tmp_path / "d")


def test_gzip_is_deterministic_mtime_0_no_name(tmp_path: Path, store: LayerStore) -> None:
    layer = store.pack(tree(tmp_path / "d"))
    head = layer.path.read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] == 0  # no FNAME, no FEXTRA, no comment
    assert head[4:8] == b"\0\0\0\0"  # mtime 0
    assert GZIP_LEVEL == 6


def test_a_tar_is_kept_byte_for_byte_and_gzipped_tars_are_read(
    tmp_path: Path, store: LayerStore
) -> None:
    src = tree(tmp_path / "d")
    tar_path = tmp_path / "x.tar"
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as t:
        t.add(src / "etc", "etc")
    raw = tar_path.read_bytes()
    layer = store.pack(tar_path)
    assert layer.diff_id == Digest.of(raw)
    with gzip.open(layer.path) as g:
        assert g.read() == raw
    gz_path = tmp_path / "x.tar.gz"
    gz_path.write_bytes(gzip.compress(raw, mtime=12345))
    assert store.pack(gz_path).diff_id == layer.diff_id
    assert store.pack(tar_path) is layer  # the same path is packed once


def _tar_with(tmp_path: Path, name: str, *, link: str = "") -> Path:
    p = tmp_path / f"bad-{len(list(tmp_path.iterdir()))}.tar"
    with tarfile.open(p, "w") as t:
        info = tarfile.TarInfo(name)
        if link:
            info.type, info.linkname = tarfile.LNKTYPE, link
            t.addfile(info)
        else:
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
    return p


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _tar_with(p, "/etc/passwd"), "member '/etc/passwd' is an absolute path"),
        (lambda p: _tar_with(p, "a/../../x"), "member 'a/../../x' goes up with '..'"),
        (lambda p: _tar_with(p, "x", link="../../etc/shadow"), "hard link target"),
        (lambda p: (p / "t.txt").write_text("hello " * 200) and p / "t.txt", "not a tar file"),
        (lambda p: (p / "e").write_bytes(b"") or p / "e", "not a tar file"),
        (lambda p: (p / "z").write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 600) and p / "z", "zstd"),
        (lambda p: (p / "g").write_bytes(gzip.compress(b"no tar " * 300)) and p / "g", "not a tar"),
        (lambda p: p / "missing", "no such file or directory"),
    ],
)
def test_bad_layer_files_are_refused_in_one_line(
    tmp_path: Path, store: LayerStore, make: Any, message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(UsageError) as e:
        store.pack(path)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("--append ")
    assert list(store.dir.iterdir()) == []  # nothing left behind


def test_truncated_tar_is_refused(tmp_path: Path, store: LayerStore) -> None:
    p = tmp_path / "big.tar"
    with tarfile.open(p, "w") as t:
        info = tarfile.TarInfo("big")
        info.size = 100_000
        t.addfile(info, io.BytesIO(b"y" * 100_000))
    p.write_bytes(p.read_bytes()[:20_000])
    with pytest.raises(UsageError, match="unexpected end of data"):
        store.pack(p)


def test_layer_media_type_follows_the_image() -> None:
    assert layer_media_type(mt.OCI_MANIFEST) == mt.OCI_LAYER_GZIP
    assert layer_media_type(mt.DOCKER_MANIFEST) == mt.DOCKER_LAYER_GZIP


# --- parsing -----------------------------------------------------------------------------


def test_commands_are_json_arrays_or_shell_words() -> None:
    assert parse_command('["/bin/sh", "-c", "a b"]', "--cmd") == ["/bin/sh", "-c", "a b"]
    assert parse_command("/bin/sh -c 'echo a b'", "--cmd") == ["/bin/sh", "-c", "echo a b"]
    assert parse_command("", "--cmd") == []
    for bad in ('["a", 1]', "[oops", "'unclosed"):
        with pytest.raises(UsageError, match="--entrypoint"):
            parse_command(bad, "--entrypoint")


def test_created_is_rfc3339_normalised_to_utc() -> None:
    assert parse_created("2024-05-01T12:00:00Z") == "2024-05-01T12:00:00Z"
    assert parse_created("2024-05-01T14:00:00.5+02:00") == "2024-05-01T12:00:00.5Z"
    assert parse_created("now").endswith("Z")
    for bad in ("yesterday", "2024-13-01T00:00:00Z", "2024-05-01", "1714560000"):
        with pytest.raises(UsageError, match="RFC 3339"):
            parse_created(bad)


def test_append_takes_an_optional_platform(tmp_path: Path) -> None:
    assert Append.parse("linux/arm64=./certs") == Append("./certs", Platform("linux", "arm64"))
    assert Append.parse("./certs") == Append("./certs")
    odd = tmp_path / "a=b"
    odd.mkdir()
    assert Append.parse(str(odd)) == Append(str(odd))  # an existing path is never split


# --- config edits ----------------------------------------------------------------------


def config(**extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin", "LANG=C"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "x"}],
    }
    cfg.update(extra)
    return cfg


def edited(cfg: dict[str, Any], changes: Changes, layers: list[Layer] | None = None) -> Any:
    out = edit_config(json.dumps(cfg).encode(), changes, layers or [], where="img")
    return None if out is None else json.loads(out)


LAYER = Layer(Path("/nowhere"), Digest("sha256", "a" * 64), 10, Digest("sha256", "b" * 64), "certs")


def test_config_edits_keep_order_and_places() -> None:
    new = edited(
        config(),
        Changes(
            labels={"org.example": "1"},
            env={"LANG": "C.UTF-8", "SSL_CERT_FILE": "/etc/ssl/cert.pem"},
            entrypoint=["/bin/tini", "--"],
            cmd=[],
            workdir="/srv",
            user="1000:1000",
        ),
    )
    c = new["config"]
    assert c["Env"] == ["PATH=/bin", "LANG=C.UTF-8", "SSL_CERT_FILE=/etc/ssl/cert.pem"]
    assert c["Labels"] == {"org.example": "1"}
    assert c["Entrypoint"] == ["/bin/tini", "--"] and "Cmd" not in c  # an empty cmd removes it
    assert (c["WorkingDir"], c["User"]) == ("/srv", "1000:1000")
    assert list(new) == list(config())  # key order kept
    assert merge_env(["A=1", "B=2"], {"A": "3", "C": "4"}) == ["A=3", "B=2", "C=4"]


def test_appended_layers_extend_diff_ids_and_history() -> None:
    new = edited(config(), Changes(created="2030-01-01T00:00:00Z"), [LAYER])
    assert new["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64, str(LAYER.diff_id)]
    assert new["created"] == "2030-01-01T00:00:00Z"
    assert new["history"][-1] == {
        "created": "2030-01-01T00:00:00Z",
        "created_by": "luff mutate --append certs",
    }
    kept = edited(config(), Changes(), [LAYER])
    assert kept["created"] == "2026-01-01T00:00:00Z"  # without --created: unchanged
    assert kept["history"][-1]["created"] == "2026-01-01T00:00:00Z"
    no_history = edited(config(history=None), Changes(), [LAYER])
    assert no_history["history"] is None  # not invented (it would not match the layers)


def test_an_edit_that_changes_nothing_keeps_the_bytes() -> None:
    cfg = config()
    cfg["config"]["Labels"] = {"a": "b"}
    assert edited(cfg, Changes(labels={"a": "b"})) is None
    assert edited(cfg, Changes(config_edits=['.config.Labels.a = "b"'])) is None


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("del(.rootfs)", "'rootfs' is missing"),
        ('.rootfs.diff_ids += ["sha256:' + "2" * 64 + '"]', "no longer match the image's layers"),
        (".rootfs.diff_ids = []", "no longer match"),
        ('.rootfs.diff_ids = ["nope"]', "list of digests"),
        ('.rootfs.type = "other"', "rootfs.type"),
        ('.config.Env = "A=1"', "config.Env must be a list of strings"),
        (".config.Labels = {a: 1}", "config.Labels must be an object of strings"),
        (".config.Cmd = [1]", "config.Cmd must be a list of strings"),
        (".config = []", "'config' must be an object"),
        ('.architecture = "arm64"', "platform changed from linux/amd64 to linux/arm64"),
        (".os = null", "'os' must be a non-empty string"),
        (".created = 5", "'created' must be an RFC 3339 time"),
        ('.history[0].created = "soon"', "history 'created'"),
        (".history = {}", "'history' must be a list"),
    ],
)
def test_config_set_that_breaks_the_config_is_refused(program: str, message: str) -> None:
    with pytest.raises(InvalidManifest) as e:
        edited(config(), Changes(config_edits=[program]))
    assert message in str(e.value) and str(e.value).startswith("img: ")


def test_config_set_runs_after_the_flags_and_jq_errors_name_the_flag() -> None:
    new = edited(
        config(),
        Changes(labels={"a": "1"}, config_edits=['.config.Labels.a += "2"', ".config.Tty = true"]),
    )
    assert new["config"]["Labels"] == {"a": "12"} and new["config"]["Tty"] is True
    with pytest.raises(UsageError, match=r"--config-set #1 '\.config\.\|\|'"):
        edited(config(), Changes(config_edits=[".config.||"]))
    with pytest.raises(UsageError, match="not an image config object"):
        edited(config(), Changes(config_edits=["1"]))


def test_windows_images_get_no_layers() -> None:
    with pytest.raises(UsageError, match="cannot --append to a Windows image"):
        edited(config(os="windows", **{"os.version": "10.0.17763.1"}), Changes(), [LAYER])
    assert edited(config(os="windows"), Changes(labels={"a": "b"})) is not None


# --- manifests and indexes -----------------------------------------------------------------


def test_manifest_points_at_the_new_config_and_layers() -> None:
    img = random_image("linux/amd64", annotations={"a": "1"})
    cfg = img.store.add_blob(b"{}", mt.OCI_CONFIG)
    new = edit_manifest(
        img.manifest, config=cfg, layers=[LAYER.descriptor()], annotations={"b": "2"}
    )
    assert new.config.digest == cfg.digest and new.layers[-1].digest == LAYER.digest
    assert new.layers[:-1] == img.manifest.layers
    assert new.annotations == {"a": "1", "b": "2"}
    assert edit_manifest(img.manifest, annotations={"a": "1"}) is img.manifest
    docker = random_image("linux/amd64", media="docker")
    with pytest.raises(UsageError, match="a Docker image manifest has no annotations"):
        edit_manifest(docker.manifest, annotations={"b": "2"})


def test_index_entries_change_in_place() -> None:
    idx = random_index(("linux/amd64", "linux/arm64", "linux/s390x"))
    doc = idx.manifest.json
    doc["manifests"][1]["annotations"] = {"keep": "me"}
    doc["annotations"] = {"top": "1"}
    index = Manifest.from_dict(doc)
    arm = index.manifests[1]
    new_arm = random_image("linux/arm64").manifest.descriptor()
    out, notes = edit_index(index, {arm.digest: new_arm}, annotations={"more": "2"})
    entries = out.json["manifests"]
    assert [e["platform"] for e in entries] == [e["platform"] for e in doc["manifests"]]
    assert entries[1] == {
        **doc["manifests"][1],
        "digest": str(new_arm.digest),
        "size": new_arm.size,
    }
    assert entries[0] == doc["manifests"][0] and entries[2] == doc["manifests"][2]
    assert out.json["annotations"] == {"top": "1", "more": "2"} and notes == []
    assert edit_index(index, {})[0] is index


def test_attestations_of_changed_images_are_dropped_or_repointed() -> None:
    idx = index_with_attestation("linux/amd64")
    img, att = idx.children
    new = random_image("linux/amd64").manifest.descriptor()
    dropped, notes = edit_index(idx.manifest, {img.digest: new})
    assert [e["digest"] for e in dropped.json["manifests"]] == [str(new.digest)]
    assert [(n.digest, n.subject, n.kept) for n in notes] == [(att.digest, img.digest, False)]
    kept, notes = edit_index(idx.manifest, {img.digest: new}, keep_attestations=True)
    entry = kept.json["manifests"][1]
    assert entry["digest"] == str(att.digest)
    assert entry["annotations"][mt.REFERENCE_DIGEST] == str(new.digest)
    assert notes[0].kept


def test_docker_list_takes_no_index_annotations() -> None:
    idx = random_index(media="docker")
    with pytest.raises(UsageError, match="a Docker manifest list has no annotations"):
        edit_index(idx.manifest, {}, annotations={"a": "b"})
