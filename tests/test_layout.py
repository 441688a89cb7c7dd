"""OCI layouts: the store, staging commands, sparse layouts, push and pull, safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from luff.context import Context
from luff.errors import DigestMismatch, InvalidDigest, InvalidManifest, NotFound, UsageError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.platform import Platform
from luff.ops import basic
from luff.ops import layout as lay
from luff.stores import open_source
from luff.stores.layout import INDEX_FILE, SPARSE_FILE, TMP_PREFIX, LayoutStore, blob_relpath
from luff.testing import random_image, random_index
from tests.registries import DistributionRegistry


def index_json(path: Path) -> dict[str, object]:
    obj: dict[str, object] = json.loads((path / INDEX_FILE).read_text())
    return obj


def ref_names(path: Path) -> list[str]:
    ms = index_json(path)["manifests"]
    assert isinstance(ms, list)
    return [m.get("annotations", {}).get(mt.REF_NAME, "") for m in ms]


def blob_files(path: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (path / "blobs" / "sha256").iterdir()}


@pytest.fixture
def src_layout(tmp_path: Path) -> Path:
    """A layout holding a 2-platform index tagged 'multi' and an image tagged 'single'."""
    p = tmp_path / "src"
    random_index(("linux/amd64", "linux/arm64"), size=512).push(f"oci:{p}:multi")
    random_image("linux/s390x", size=512).push(f"oci:{p}:single")
    return p


# --- the store --------------------------------------------------------------------------


def test_init_creates_layout(tmp_path: Path) -> None:
    p = tmp_path / "l"
    lay.init(p)
    assert json.loads((p / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert index_json(p)["manifests"] == []
    assert (p / "blobs" / "sha256").is_dir()
    lay.init(p)  # idempotent
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UsageError, match="not empty"):
        lay.init(tmp_path / "full")


def test_open_missing_layout_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        LayoutStore.open(tmp_path / "nope")
    with pytest.raises(NotFound, match="layout init"):
        lay.append(tmp_path / "nope", ["oci:x"])


def test_copy_into_layout_keeps_digest_and_tags(src_layout: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    d = basic.copy(f"oci:{src_layout}:multi", f"oci:{dst}:v1")
    assert d.digest == basic.digest(f"oci:{src_layout}:multi").digest
    assert ref_names(dst) == ["v1"]
    assert basic.digest(f"oci:{dst}:v1").digest == d.digest
    assert basic.digest(f"oci:{dst}@{d.digest}").digest == d.digest
    # copying by digest adds an entry without ref.name
    img = basic.digest(f"oci:{src_layout}:single")
    basic.copy(f"oci:{src_layout}@{img.digest}", f"oci:{dst}")
    assert ref_names(dst) == ["v1", ""]
    entry = LayoutStore.open(dst).entries()[1]
    assert entry.platform == Platform.parse("linux/s390x")


def test_empty_identifier_picks_the_only_entry(src_layout: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    basic.copy(f"oci:{src_layout}:single", f"oci:{one}:x")
    assert basic.digest(f"oci:{one}").digest == basic.digest(f"oci:{src_layout}:single").digest
    with pytest.raises(UsageError, match="holds 2 images"):
        basic.digest(f"oci:{src_layout}")


def test_path_traversal_digest_in_index_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "evil"
    lay.init(p)
    bad = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": "sha256:../../../../etc/passwd",
                "size": 10,
                "annotations": {mt.REF_NAME: "x"},
            }
        ],
    }
    (p / INDEX_FILE).write_text(json.dumps(bad))
    with pytest.raises(InvalidManifest, match="invalid digest"):
        basic.digest(f"oci:{p}:x")
    with pytest.raises(InvalidDigest):
        blob_relpath("sha256:../../etc/passwd")
    with pytest.raises(InvalidDigest):
        blob_relpath(Digest("sha256", "../../etc/passwd"))
    store = LayoutStore.open(p)
    with pytest.raises(InvalidDigest):
        store.exists(Descriptor(mt.OCI_LAYER, Digest("sha256", "../../x"), 1))


def test_corrupt_blob_is_refused_in_layout_to_layout_copy(src_layout: Path, tmp_path: Path) -> None:
    _, m = LayoutStore.open(src_layout).get_manifest("single")
    layer = src_layout / blob_relpath(m.layers[0].digest)
    data = bytearray(layer.read_bytes())
    data[-1] ^= 0xFF
    layer.write_bytes(bytes(data))
    dst = tmp_path / "dst"
    with pytest.raises(DigestMismatch):
        basic.copy(f"oci:{src_layout}:single", f"oci:{dst}:x")
    # nothing unverified landed, and the target layout is still valid and empty
    assert str(m.layers[0].digest) not in blob_files(dst)
    assert index_json(dst)["manifests"] == []
    assert not list(dst.glob(TMP_PREFIX + "*"))


def test_writes_go_through_a_temporary_name(tmp_path: Path) -> None:
    store = LayoutStore.init(tmp_path / "l")
    data = b"hello world"
    desc = Descriptor.for_bytes(mt.OCI_LAYER, data)
    seen: list[list[str]] = []

    class Spy:
        def __init__(self) -> None:
            self.sent = False

        def read(self, n: int = -1) -> bytes:
            # while the blob is being written, only a temporary file exists
            seen.append(sorted(os.listdir(store.path)))
            assert not store.blob_path(desc.digest).exists()
            if self.sent:
                return b""
            self.sent = True
            return data

    store.push_blob(desc, Spy())  # type: ignore[arg-type]
    assert any(any(n.startswith(TMP_PREFIX) for n in names) for names in seen)
    assert store.blob_path(desc.digest).read_bytes() == data
    assert not list(store.path.glob(TMP_PREFIX + "*"))
    # a wrong stream leaves neither the blob nor a temporary file
    bad = Descriptor.for_bytes(mt.OCI_LAYER, b"other")
    with pytest.raises(DigestMismatch):
        import io

        store.push_blob(bad, io.BytesIO(b"not it"))
    assert not store.exists(bad)
    assert not list(store.path.glob(TMP_PREFIX + "*"))


# --- append / list / remove / gc ------------------------------------------------------------


def test_append_flatten_tag_annotation_replace(src_layout: Path, tmp_path: Path) -> None:
    st = tmp_path / "stage"
    lay.init(st)
    added = lay.append(st, [f"oci:{src_layout}:multi"], flatten=True)
    assert [str(e.platform) for e in added] == ["linux/amd64", "linux/arm64"]
    added2 = lay.append(
        st, [f"oci:{src_layout}:single"], tag="s", annotations={"org.example": "yes"}
    )
    assert added2[0].annotations == {"org.example": "yes", mt.REF_NAME: "s"}
    assert ref_names(st) == ["", "", "s"]
    # same ref.name again: replaced, not duplicated
    lay.append(st, [f"oci:{src_layout}:multi"], tag="s", platforms=["linux/arm64"])
    assert ref_names(st) == ["", "", "s"]
    entries = lay.list_entries(st)
    assert [e.sparse for e in entries] == [False, False, False]
    last = entries[2].descriptor
    assert last.media_type == mt.OCI_INDEX
    sub = LayoutStore.open(st).fetch_manifest(last)
    assert [str(c.platform) for c in sub.manifests] == ["linux/arm64"]
    # appending the same untagged digest again does not duplicate it
    lay.append(st, [f"oci:{src_layout}:multi"], flatten=True)
    assert len(ref_names(st)) == 3
    with pytest.raises(UsageError, match="one entry"):
        lay.append(st, [f"oci:{src_layout}:multi"], flatten=True, tag="t")
    with pytest.raises(NotFound, match="no entry matches"):
        lay.append(st, [f"oci:{src_layout}:multi"], platforms=["windows/amd64"])


def test_remove_and_gc(src_layout: Path, tmp_path: Path) -> None:
    st = tmp_path / "stage"
    lay.init(st)
    lay.append(st, [f"oci:{src_layout}:multi"], flatten=True)
    lay.append(st, [f"oci:{src_layout}:single"], tag="s")
    before = blob_files(st)
    removed = lay.remove(st, platform="linux/arm64")
    assert [str(d.platform) for d in removed] == ["linux/arm64"]
    with pytest.raises(NotFound):
        lay.remove(st, tag="nope")
    with pytest.raises(UsageError):
        lay.remove(st, tag="s", platform="linux/amd64")
    dry = lay.gc(st, dry_run=True)
    assert dry.removed and blob_files(st) == before
    res = lay.gc(st)
    assert set(map(str, res.removed)) == set(map(str, dry.removed))
    assert len(res.removed) == 3  # arm64 manifest, config and layer
    after = blob_files(st)
    assert after == before - {str(d) for d in res.removed}
    # what is left is complete and still copies
    assert all(not e.sparse for e in lay.list_entries(st))
    lay.remove(st, tag="s")
    d = lay.list_entries(st)[0].descriptor
    lay.remove(st, digest=str(d.digest))
    lay.gc(st)
    assert blob_files(st) == set()


def test_concurrent_appends_from_threads_all_land(src_layout: Path, tmp_path: Path) -> None:
    st = tmp_path / "stage"
    lay.init(st)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            lay.append(st, [f"oci:{src_layout}:single"], tag=f"t{i}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(ref_names(st)) == sorted(f"t{i}" for i in range(8))


def test_concurrent_append_processes_all_land(src_layout: Path, tmp_path: Path) -> None:
    """Processes updating index.json at once (tight loops) lose no entry: the flock holds."""
    st = tmp_path / "stage"
    lay.init(st)
    (entry,) = lay.append(st, [f"oci:{src_layout}:single"])
    script = (
        "import sys\n"
        "from luff.model import mediatypes as mt\n"
        "from luff.stores.layout import LayoutStore\n"
        "from luff.model.descriptor import Descriptor\n"
        "s = LayoutStore.open(sys.argv[1])\n"
        "e = s.entries()[0]\n"
        "for i in range(60):\n"
        "    s.add_entries([e.with_(annotations={mt.REF_NAME: f'{sys.argv[2]}{i}'})])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(st), n]) for n in "abc"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    names = ref_names(st)
    assert sorted(names) == sorted(["", *(f"{n}{i}" for n in "abc" for i in range(60))])
    # and two real `layout append` runs both land
    luff = str(Path(sys.executable).parent / "luff")
    runs = [
        subprocess.Popen([luff, "layout", "append", str(st), f"oci:{src_layout}:{t}", "--tag", t])
        for t in ("multi", "single")
    ]
    assert [p.wait(timeout=120) for p in runs] == [0, 0]
    assert {"multi", "single"} <= set(ref_names(st))
    assert entry.digest in {e.digest for e in LayoutStore.open(st).entries()}


def test_cli_append_flags_and_list(src_layout: Path, tmp_path: Path) -> None:
    st = tmp_path / "stage"
    luff = [str(Path(sys.executable).parent / "luff")]
    env = {**os.environ}
    run = lambda *a: subprocess.run(  # noqa: E731
        [*luff, *a], capture_output=True, text=True, env=env
    )
    assert run("layout", "init", str(st)).returncode == 0
    r = run(
        "layout", "append", str(st), f"oci:{src_layout}:multi",
        "--flatten", "--platform", "linux/amd64", "--annotation", "k=v",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = run("layout", "append", str(st), f"oci:{src_layout}:single", "--tag", "one")
    assert r.returncode == 0, r.stderr
    r = run("layout", "list", str(st))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["REF.NAME", "DIGEST", "MEDIA", "TYPE", "PLATFORM", "STATE"]
    assert "linux/amd64" in lines[1] and "complete" in lines[1]
    assert lines[2].startswith("one ") and "linux/s390x" in lines[2]
    r = run("layout", "remove", str(st), "--tag", "missing")
    assert r.returncode == 1 and r.stderr.startswith("luff: error:")
    r = run("layout", "append", str(st), "oci:" + str(src_layout) + ":multi", "--annotation", "x")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr


# --- registries: push, pull, sparse ------------------------------------------------------------


def test_push_single_entry_and_errors(
    src_layout: Path, tmp_path: Path, registry: DistributionRegistry, ctx: Context
) -> None:
    with pytest.raises(UsageError, match="holds 2 entries") as ei:
        lay.push(str(src_layout), f"{registry.host}/lay/push:1", ctx=ctx)
    assert "multi" in str(ei.value) and "single" in str(ei.value)
    d = lay.push(f"{src_layout}:single", f"{registry.host}/lay/push:1", ctx=ctx)
    assert d.digest == basic.digest(f"oci:{src_layout}:single").digest
    assert basic.digest(f"{registry.host}/lay/push:1", ctx=ctx).digest == d.digest
    one = tmp_path / "one"
    basic.copy(f"oci:{src_layout}:multi", f"oci:{one}:m")
    d2 = lay.push(str(one), f"{registry.host}/lay/push", ctx=ctx)  # no tag: latest, as copy
    assert basic.digest(f"{registry.host}/lay/push:latest", ctx=ctx).digest == d2.digest


def test_pull_into_layout_replaces_entry(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context
) -> None:
    ref = f"{registry.host}/lay/pull:1.0"
    first = random_index(("linux/amd64", "linux/arm64", "linux/ppc64le")).push(ref, ctx)
    out = tmp_path / "pulled"
    d = lay.pull(ref, out, ctx=ctx)
    assert d.digest == first.digest
    assert ref_names(out) == ["1.0"]
    second = random_image("linux/amd64").push(ref, ctx)
    lay.pull(ref, out, ctx=ctx)
    assert ref_names(out) == ["1.0"]
    assert LayoutStore.open(out).resolve("1.0").digest == second.digest
    # --platform pulls only one image
    plat_out = tmp_path / "plat"
    lay.pull(f"{registry.host}/lay/pull@{first.digest}", plat_out, platform="linux/arm64", ctx=ctx)
    entries = LayoutStore.open(plat_out).entries()
    assert len(entries) == 1 and str(entries[0].platform) == "linux/arm64"
    assert entries[0].media_type == mt.OCI_MANIFEST


def test_pull_formats(tmp_path: Path, registry: DistributionRegistry, ctx: Context) -> None:
    ref = f"{registry.host}/lay/fmt:2"
    idx = random_index(("linux/amd64", "linux/arm64")).push(ref, ctx)
    a = tmp_path / "a.tar"
    assert lay.pull(ref, a, format="oci-archive", ctx=ctx).digest == idx.digest
    assert basic.digest(f"oci-archive:{a}:2").digest == idx.digest
    with pytest.raises(UsageError, match="--platform"):
        lay.pull(ref, tmp_path / "d.tar", format="docker-archive", ctx=ctx)
    d = lay.pull(ref, tmp_path / "d.tar", format="docker-archive", platform="linux/arm64", ctx=ctx)
    store, _ = open_source(f"docker-archive:{tmp_path / 'd.tar'}:{registry.host}/lay/fmt:2")
    got = store.resolve(f"{registry.host}/lay/fmt:2")
    cfg = json.loads(basic.config(f"docker-archive:{tmp_path / 'd.tar'}"))
    assert cfg["architecture"] == "arm64"
    assert got.media_type == mt.DOCKER_MANIFEST
    assert d.media_type == mt.OCI_MANIFEST  # what was pulled, before conversion


def test_round_trip_index_through_layout(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context
) -> None:
    """init → append --flatten (multi-platform) → append (another) → push --index."""
    multi = random_index(("linux/amd64", "linux/arm64"))
    multi.push(f"{registry.host}/rt/multi:1", ctx)
    other = random_image("windows/amd64")
    other.push(f"{registry.host}/rt/win:1", ctx)
    st = tmp_path / "stage"
    lay.init(st)
    flat = lay.append(st, [f"{registry.host}/rt/multi:1"], flatten=True, ctx=ctx)
    assert [e.digest for e in flat] == [c.digest for c in multi.children]
    lay.append(st, [f"{registry.host}/rt/win:1"], ctx=ctx)
    d = lay.push(str(st), f"{registry.host}/rt/all:1", index=True, ctx=ctx)
    _, _, m = basic.resolve(f"{registry.host}/rt/all:1", ctx=ctx)
    assert m.digest == d.digest
    assert [e.digest for e in m.manifests] == [*(c.digest for c in multi.children), other.digest]
    assert [str(e.platform) for e in m.manifests] == ["linux/amd64", "linux/arm64", "windows/amd64"]
    # and every child pulls back with the same digests
    back = tmp_path / "back"
    assert lay.pull(f"{registry.host}/rt/all:1", back, ctx=ctx).digest == d.digest


def test_sparse_append_push_mount_fill(
    tmp_path: Path,
    registry: DistributionRegistry,
    registry2: DistributionRegistry,
    ctx: Context,
) -> None:
    img = random_image("linux/arm64", layers=2, size=4096)
    img.push(f"{registry.host}/sparse/src:1", ctx)
    st = tmp_path / "stage"
    lay.init(st)
    (entry,) = lay.append(st, [f"{registry.host}/sparse/src:1"], sparse=True, tag="a", ctx=ctx)
    layers = img.manifest.layers
    files = blob_files(st)
    assert str(img.manifest.config.digest) in files and str(img.digest) in files
    assert not {str(x.digest) for x in layers} & files
    rec = json.loads((st / SPARSE_FILE).read_text())["blobs"]
    assert rec == {str(x.digest): f"{registry.host}/sparse/src" for x in layers}
    (le,) = lay.list_entries(st)
    assert le.sparse and len(le.missing) == 2 and le.recorded == 2
    assert str(entry.platform) == "linux/arm64"

    # same registry: the plan mounts the missing layers from the recorded source
    plans = []
    lay.push(str(st), f"{registry.host}/sparse/dst:1", ctx=ctx, on_plan=plans.append)
    actions = {str(b.descriptor.digest): (b.action, b.mount_from) for b in plans[0].blobs}
    for x in layers:
        assert actions[str(x.digest)] == ("mount", "sparse/src")
    assert basic.digest(f"{registry.host}/sparse/dst:1", ctx=ctx).digest == img.digest
    # the mounts really happened (a refused mount would have turned into a copy)
    assert {b.action for b in plans[0].blobs if b.descriptor in layers} == {"mount"}
    dst, _ = open_source(f"{registry.host}/sparse/dst:1", ctx)
    assert all(dst.exists(x) for x in layers)

    # another registry: streamed from the recorded source
    plans.clear()
    lay.push(str(st), f"{registry2.host}/sparse/other:1", ctx=ctx, on_plan=plans.append)
    assert {b.action for b in plans[0].blobs if b.descriptor in layers} == {"copy"}
    assert basic.digest(f"{registry2.host}/sparse/other:1", ctx=ctx).digest == img.digest

    # fill downloads the layers, verified, and drops the records
    got = lay.fill(st, ctx=ctx)
    assert {d.digest for d in got} == {x.digest for x in layers}
    assert not (st / SPARSE_FILE).exists()
    assert not lay.list_entries(st)[0].sparse


def test_sparse_read_through_and_complete_parts_copy(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context
) -> None:
    img = random_image("linux/amd64", size=2048)
    img.push(f"{registry.host}/sparse/rt:1", ctx)
    st = tmp_path / "stage"
    lay.init(st)
    lay.append(st, [f"{registry.host}/sparse/rt:1"], sparse=True, tag="x", ctx=ctx)
    # copying out of a sparse layout to another layout streams the missing layer
    out = tmp_path / "out"
    basic.copy(f"oci:{st}:x", f"oci:{out}:x", ctx=ctx)
    assert not lay.list_entries(out)[0].sparse
    lay.remove(st, tag="x")
    lay.gc(st)
    assert not (st / SPARSE_FILE).exists()  # gc dropped the now-unreferenced record


def test_fill_refuses_bytes_that_do_not_match(tmp_path: Path, ctx: Context) -> None:
    src = tmp_path / "src"
    img = random_image("linux/amd64", size=2048)
    img.push(f"oci:{src}:a")
    st = tmp_path / "stage"
    lay.init(st)
    lay.append(st, [f"oci:{src}:a"], sparse=True, tag="a", ctx=ctx)
    layer = img.manifest.layers[0]
    rec = json.loads((st / SPARSE_FILE).read_text())["blobs"]
    assert rec == {str(layer.digest): f"oci:{src.resolve()}"}
    # the recorded source now serves other bytes under that digest
    path = src / blob_relpath(layer.digest)
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    with pytest.raises(DigestMismatch):
        lay.fill(st, ctx=ctx)
    assert not LayoutStore.open(st).exists(layer)
    assert lay.list_entries(st)[0].sparse
    # a record pointing nowhere: fill reports it instead of inventing content
    (st / SPARSE_FILE).unlink()
    with pytest.raises(NotFound, match="no recorded source"):
        lay.fill(st, ctx=ctx)


def test_interrupted_append_leaves_layout_valid(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context
) -> None:
    """An append that dies mid-transfer (bad blob) leaves index.json as it was."""
    st = tmp_path / "stage"
    lay.init(st)
    good = random_image("linux/amd64")
    good.push(f"oci:{st}:good")
    before = index_json(st)
    src = tmp_path / "src"
    img = random_image("linux/arm64", layers=3, size=2048)
    img.push(f"oci:{src}:bad")
    layer = src / blob_relpath(img.manifest.layers[2].digest)
    layer.write_bytes(layer.read_bytes()[:-3] + b"xyz")
    with pytest.raises(DigestMismatch):
        lay.append(st, [f"oci:{src}:bad"], tag="bad", ctx=ctx)
    assert index_json(st) == before
    assert not list(st.glob(TMP_PREFIX + "*"))
    for e in lay.list_entries(st):
        assert not e.sparse
    assert basic.digest(f"oci:{st}:good").digest == good.digest


def test_cli_push_and_pull(tmp_path: Path, registry: DistributionRegistry, ctx: Context) -> None:
    luff = str(Path(sys.executable).parent / "luff")
    ref = f"{registry.host}/lay/cli:7"
    idx = random_index(("linux/amd64", "linux/arm64"))
    idx.push(ref, ctx)
    out = tmp_path / "pulled"
    r = subprocess.run([luff, "pull", ref, str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"oci:{out}@{idx.digest}"
    r = subprocess.run(
        [luff, "pull", ref, str(tmp_path / "a.tar"), "--format", "docker-archive"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "--platform" in r.stderr and "Traceback" not in r.stderr
    lay.append(out, [f"oci:{out}:7"], flatten=True)
    r = subprocess.run(
        [luff, "push", str(out), f"{registry.host}/lay/cli2:1"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "holds 3 entries" in r.stderr and "--index" in r.stderr
    r = subprocess.run(
        [luff, "push", f"{out}:7", f"{registry.host}/lay/cli2:1"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{registry.host}/lay/cli2@{idx.digest}"
    r = subprocess.run(
        [luff, "push", str(out), f"{registry.host}/lay/cli2:all", "--index", "--json"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["mediaType"] == mt.OCI_INDEX
    _, _, m = basic.resolve(f"{registry.host}/lay/cli2:all", ctx=ctx)
    assert [str(e.digest) for e in m.manifests] == [
        str(idx.digest),
        *(str(c.digest) for c in idx.children),
    ]
    assert all(mt.REF_NAME not in e.annotations for e in m.manifests)


def test_self_verifying_stream_is_hashed_once_and_still_refused(tmp_path: Path) -> None:
    import io

    from luff.model.digest import VerifyingReader, verified_digest

    store = LayoutStore.init(tmp_path / "l")
    good = Descriptor.for_bytes(mt.OCI_LAYER, b"payload")

    class Wrapper:
        def __init__(self, s: object) -> None:
            self.__wrapped__ = s

        def read(self, n: int = -1) -> bytes:
            return self.__wrapped__.read(n)  # type: ignore[attr-defined,no-any-return]

    ok = Wrapper(VerifyingReader(io.BytesIO(b"payload"), good.digest, good.size))
    assert verified_digest(ok) == good.digest
    assert verified_digest(io.BytesIO()) is None
    store.push_blob(good, ok)  # type: ignore[arg-type]
    assert store.blob_path(good.digest).read_bytes() == b"payload"
    # a self-verifying stream with the wrong bytes fails at EOF; nothing is committed
    bad = Descriptor.for_bytes(mt.OCI_LAYER, b"expected")
    liar = Wrapper(VerifyingReader(io.BytesIO(b"imposter"), bad.digest, bad.size))
    with pytest.raises(DigestMismatch):
        store.push_blob(bad, liar)  # type: ignore[arg-type]
    assert not store.exists(bad) and not list(store.path.glob(TMP_PREFIX + "*"))


def test_killed_append_leaves_layout_valid(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context
) -> None:
    """SIGKILL while a layer is being written: index.json is untouched, gc clears the rest.

    The layer comes from a registry through a proxy that sends half of it and
    then waits (a layout's blob may not be a FIFO: luff refuses those)."""
    import time

    from tests.holdproxy import HoldingProxy

    img = random_image("linux/amd64", size=4096)
    img.push(f"{registry.host}/lay/killed:x", ctx)
    layer = img.manifest.layers[0]
    proxy = HoldingProxy(registry.host, hold=layer.digest.hex)
    st = tmp_path / "stage"
    lay.init(st)
    random_image("linux/arm64").push(f"oci:{st}:keep")
    before = index_json(st)
    luff = str(Path(sys.executable).parent / "luff")
    proc = subprocess.Popen(
        [luff, "layout", "append", str(st), f"{proxy.host}/lay/killed:x", "--tag", "new"]
    )
    deadline = time.monotonic() + 120  # a guard against hanging, not a timing assertion
    try:
        assert proxy.reached.wait(120) and proc.poll() is None
        while not list(st.glob(TMP_PREFIX + "*")):  # the layer is being written
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.stop()
    assert index_json(st) == before
    store = LayoutStore.open(st)
    assert not store.exists(layer)
    assert [e.sparse for e in lay.list_entries(st)] == [False]
    tmps = list(st.glob(TMP_PREFIX + "*"))
    assert tmps
    # this handle checked what exists, so it counts as a writer until closed
    with pytest.raises(UsageError, match="is writing this layout"):
        lay.gc(st)
    store.close()
    res = lay.gc(st)  # no writer is left, so every temporary is stale
    assert res.temporaries == len(tmps) and not list(st.glob(TMP_PREFIX + "*"))
    assert basic.digest(f"oci:{st}:keep").digest == LayoutStore.open(st).resolve("keep").digest


def test_gc_is_refused_while_another_process_writes(
    tmp_path: Path, registry: DistributionRegistry, ctx: Context
) -> None:
    """A running `layout append` has blobs that index.json does not reach yet: gc must
    not delete them. gc is refused while it runs and works once it has finished."""
    from tests.holdproxy import HoldingProxy

    img = random_image("linux/amd64", layers=2, size=4096)
    img.push(f"{registry.host}/lay/gcwait:x", ctx)
    first, last = img.manifest.layers
    proxy = HoldingProxy(registry.host, hold=last.digest.hex)
    st = tmp_path / "stage"
    lay.init(st)
    # left by an earlier interrupted run: unreferenced, and the append counts on it
    (st / blob_relpath(first.digest)).write_bytes(img.store.blobs[first.digest])
    luff = str(Path(sys.executable).parent / "luff")
    src = f"{proxy.host}/lay/gcwait:x"
    proc = subprocess.Popen(
        [luff, "-j", "1", "layout", "append", str(st), src, "--tag", "new"],
        stderr=subprocess.PIPE,
    )
    try:
        assert proxy.reached.wait(120) and proc.poll() is None
        written = sorted((st / "blobs" / "sha256").iterdir())
        assert st / blob_relpath(first.digest) in written  # no index.json entry reaches it
        p = subprocess.run([luff, "layout", "gc", str(st)], capture_output=True, text=True)
        assert p.returncode == 2, p.stderr
        assert p.stderr.startswith("luff: error: ") and "is writing this layout" in p.stderr
        assert sorted((st / "blobs" / "sha256").iterdir()) == written
        proxy.release()
        assert proc.wait(120) == 0, proc.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        proxy.stop()
    assert lay.gc(st).removed == []
    assert basic.digest(f"oci:{st}:new").digest == img.digest
    assert subprocess.run(["umoci", "ls", "--layout", str(st)], capture_output=True).returncode == 0


def _staging_fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if ".staging-" in target or target.endswith("(deleted)"):
            out.append(target)
    return out


def test_layout_lock_is_let_go_by_every_operation(
    registry: DistributionRegistry, tmp_path: Path
) -> None:
    """gc in the same process right after init, a failed append, a read-only push, a
    listing, a removal or an archive write: none of them leaves the layout locked (and
    no descriptor of a removed staging directory stays open)."""
    import gc as collector

    collector.disable()  # a handle kept alive by a reference cycle must not matter
    try:
        src = tmp_path / "src"
        img = random_image("linux/amd64", size=2048)
        img.push(f"oci:{src}:x")
        st = tmp_path / "stage"
        lay.init(st)
        assert lay.gc(st).removed == []
        broken = tmp_path / "broken"
        random_image("linux/arm64").push(f"oci:{broken}:x")
        for layer in json.loads(basic.manifest(f"oci:{broken}:x"))["layers"]:
            (broken / blob_relpath(layer["digest"])).unlink()
        with pytest.raises(NotFound):
            lay.append(st, [f"oci:{broken}:x"])
        lay.gc(st)  # not refused: the failed append's handle let go
        lay.append(st, [f"oci:{src}:x"], tag="one")
        lay.list_entries(st)
        lay.gc(st)
        # gc while the layout is being pushed from: reading takes no lock
        refused: list[BaseException] = []

        def during(plan: object) -> None:
            try:
                lay.gc(st)
            except UsageError as e:
                refused.append(e)

        lay.push(f"{st}:one", f"{registry.host}/lock/app:1", on_plan=during)
        assert refused == []
        lay.remove(st, tag="one")
        lay.gc(st)
        before = _staging_fds()
        lay.pull(f"oci:{src}:x", tmp_path / "img.tar", format="oci-archive")
        with pytest.raises(NotFound):
            lay.pull(f"oci:{broken}:x", tmp_path / "bad.tar", format="oci-archive")
        assert _staging_fds() == before
        assert not list(tmp_path.glob(".*.staging-*"))
    finally:
        collector.enable()


def test_writers_wait_while_gc_holds_the_layout(tmp_path: Path) -> None:
    """The README's promise: a writer that starts during a gc waits for it to finish."""
    st = tmp_path / "stage"
    lay.init(st)
    img = random_image("linux/amd64", size=1024)
    gc_handle = LayoutStore.open(st)
    writer = LayoutStore.open(st)
    done = threading.Event()

    def write() -> None:
        from luff.copy import copy_graph

        copy_graph(img.store, img.descriptor, writer, manifest=img.manifest, tags=["w"])
        done.set()

    with gc_handle.exclusive():
        t = threading.Thread(target=write)
        t.start()
        assert not done.wait(0.5)  # blocked on the directory lock, not merely slow
        assert not writer.entries()
    t.join(30)
    assert done.is_set()
    writer.close()
    assert basic.digest(f"oci:{st}:w").digest == img.digest
