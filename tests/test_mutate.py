"""``luff mutate`` against real registries and layouts, checked with skopeo, umoci and buildah.

Sources are a 3-platform OCI index and a single image, in a registry and in
an OCI layout. Each platform of a result is unpacked with umoci (files,
modes, owners; the runtime config) and inspected with skopeo; buildah builds
on one. Request counts come from the embedded registry's access log.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import luff
from luff.context import Context
from luff.copy import COPY, EXISTS, MOUNT
from luff.index import Source
from luff.model import mediatypes as mt
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.ops import basic
from luff.registry.auth import ANONYMOUS
from luff.stores.memory import MemoryStore
from luff.testing import Image, Registry, random_image, random_index
from tests.images import index_with_attestation
from tests.registries import DistributionRegistry

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")
CERT = "-----BEGIN CERTIFICATE-----\nluff test CA\n-----END CERTIFICATE-----\n"
WIN = Platform("windows", "amd64", "", "10.0.17763.1234")


def luff_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def ok(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p.stdout


def error_line(p: subprocess.CompletedProcess[str], code: int) -> str:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("luff: error: "), p.stderr
    return lines[0]


def run(*cmd: str, env: dict[str, str] | None = None) -> str:
    p = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}"
    return p.stdout


def transport(ref: str) -> str:
    return ref if ref.startswith(("oci:", "oci-archive:")) else f"docker://{ref}"


def override(platform: str) -> list[str]:
    p = Platform.parse(platform)
    out = ["--override-os", p.os, "--override-arch", p.architecture]
    return out + (["--override-variant", p.variant] if p.variant else [])


def skopeo_config(ref: str, platform: str) -> dict[str, Any]:
    out = run(
        "skopeo", *override(platform), "inspect", "--tls-verify=false", "--config", transport(ref)
    )
    cfg: dict[str, Any] = json.loads(out)
    return cfg


def unpack(ref: str, platform: str, work: Path) -> tuple[Path, dict[str, Any]]:
    """skopeo copies *platform*'s image of *ref* into a layout; umoci unpacks it (as root)."""
    name = platform.replace("/", "-")
    run(
        "skopeo",
        *override(platform),
        "copy",
        "--src-tls-verify=false",
        transport(ref),
        f"oci:{work}/u:{name}",
    )
    bundle = work / f"bundle-{name}"
    run("umoci", "unpack", "--image", f"{work}/u:{name}", str(bundle))
    return bundle / "rootfs", json.loads((bundle / "config.json").read_text())


@dataclass
class Files:
    certs: Path  # a directory: etc/ssl/certs/ca-certificates.crt, usr/local/bin/hello
    arm_tar: Path  # a tar: opt/arm/only.txt, mode 0640, owner 1234:5678


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    base = tmp_path_factory.mktemp("files")
    certs = base / "ca-certs"
    (certs / "etc/ssl/certs").mkdir(parents=True)
    (certs / "etc/ssl/certs/ca-certificates.crt").write_text(CERT)
    (certs / "usr/local/bin").mkdir(parents=True)
    hello = certs / "usr/local/bin/hello"
    hello.write_text("#!/bin/sh\necho hello\n")
    hello.chmod(0o755)
    os.chown(hello, 4321, 4321)  # packed as root all the same
    arm_tar = base / "arm.tar"
    with tarfile.open(arm_tar, "w") as t:
        info = tarfile.TarInfo("opt/arm/only.txt")
        data = b"arm only\n"
        info.size, info.mode, info.uid, info.gid = len(data), 0o640, 1234, 5678
        t.addfile(info, io.BytesIO(data))
    return Files(certs, arm_tar)


@dataclass
class Sources:
    host: str
    layout: Path
    index: Image
    image: Image

    def ref(self, kind: str, where: str) -> str:
        return f"{self.host}/mut/{kind}:1" if where == "registry" else f"oci:{self.layout}:{kind}"


@pytest.fixture(scope="module")
def actx() -> Iterator[Context]:
    c = Context(credentials=lambda host: ANONYMOUS, backoff=0.01)
    yield c
    c.close()


@pytest.fixture(scope="module")
def srcs(
    registry: DistributionRegistry, tmp_path_factory: pytest.TempPathFactory, actx: Context
) -> Sources:
    layout = tmp_path_factory.mktemp("layout") / "lay"
    s = Sources(registry.host, layout, random_index(PLATFORMS, size=3000), random_image(size=3000))
    for kind in ("index", "image"):
        img = getattr(s, kind)
        img.push(s.ref(kind, "registry"), actx)
        img.push(s.ref(kind, "layout"), actx)
    return s


def every_option(ref: str, files: Files, kind: str, tag: str) -> list[str]:
    args = [
        "mutate", ref, "-t", tag,
        "--label", "org.example.team=infra",
        "--env", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        "--entrypoint", "/usr/local/bin/hello --greet",
        "--cmd", '["serve", "--port", "8080"]',
        "--workdir", "/srv",
        "--user", "1000:1000",
        "--config-set", '.config.Labels["org.example.set"] = "by jq"',
        "--annotation", "org.example.image=mutated",
        "--append", str(files.certs),
        "--created", "2030-01-02T03:04:05Z",
    ]  # fmt: skip
    if kind == "index":
        args += ["--append", f"linux/arm64={files.arm_tar}"]
        args += ["--index-annotation", "org.example.index=mutated"]
    return args


# --- every option, every platform, read by skopeo and umoci ---------------------------------


@pytest.mark.parametrize("where", ["registry", "layout"])
@pytest.mark.parametrize("kind", ["index", "image"])
def test_every_option_on_every_platform(
    srcs: Sources, files: Files, tmp_path: Path, kind: str, where: str
) -> None:
    ref = srcs.ref(kind, where)
    tag = f"every-{kind}"
    pinned = ok(luff_cli(*every_option(ref, files, kind, tag))).strip()
    target = f"{srcs.host}/mut/{kind}:{tag}" if where == "registry" else f"oci:{srcs.layout}:{tag}"
    repo = target.rsplit(":", 1)[0]
    assert re.fullmatch(re.escape(repo) + r"@sha256:[0-9a-f]{64}", pinned), pinned
    data = basic.manifest(target)
    assert pinned.endswith(str(Digest.of(data)))
    doc = json.loads(data)
    if kind == "index":
        assert doc["mediaType"] == mt.OCI_INDEX
        assert doc["annotations"] == {"org.example.index": "mutated"}
        assert [e["platform"] for e in doc["manifests"]] == [
            e["platform"] for e in srcs.index.manifest.json["manifests"]
        ]
        run(
            "skopeo",
            "copy",
            "--all",
            "--src-tls-verify=false",
            transport(target),
            f"oci:{tmp_path}/all:x",
        )
    platforms = PLATFORMS if kind == "index" else ("linux/amd64",)
    for plat in platforms:
        cfg = skopeo_config(target, plat)
        c = cfg["config"]
        assert c["Labels"] == {"org.example.team": "infra", "org.example.set": "by jq"}
        assert c["Env"][-1] == "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
        assert c["Entrypoint"] == ["/usr/local/bin/hello", "--greet"]
        assert c["Cmd"] == ["serve", "--port", "8080"]
        assert (c["WorkingDir"], c["User"]) == ("/srv", "1000:1000")
        assert cfg["created"] == "2030-01-02T03:04:05Z"
        extra = 2 if plat == "linux/arm64" else 1
        assert len(cfg["rootfs"]["diff_ids"]) == 1 + extra
        names = [h["created_by"] for h in cfg["history"][-extra:]]
        assert names == ["luff mutate --append ca-certs", "luff mutate --append arm.tar"][:extra]
        assert cfg["history"][-1]["created"] == "2030-01-02T03:04:05Z"

        rootfs, spec = unpack(target, plat, tmp_path)
        crt = rootfs / "etc/ssl/certs/ca-certificates.crt"
        assert crt.read_text() == CERT
        st = crt.stat()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o644, 0, 0)
        st = (rootfs / "usr/local/bin/hello").stat()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o755, 0, 0)
        arm = rootfs / "opt/arm/only.txt"
        if plat == "linux/arm64":
            assert arm.read_text() == "arm only\n"
            st = arm.stat()
            assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1234, 5678)
        else:
            assert not arm.exists()
        assert (rootfs / "data").is_dir()  # the original layer is still there
        proc = spec["process"]
        assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in proc["env"]
        assert proc["args"] == ["/usr/local/bin/hello", "--greet", "serve", "--port", "8080"]
        assert proc["cwd"] == "/srv" and proc["user"]["uid"] == 1000
        assert spec["annotations"]["org.example.team"] == "infra"
        raw = json.loads(basic.manifest(target, platform=plat))
        assert raw["annotations"] == {"org.example.image": "mutated"}
        assert raw["layers"][-1]["mediaType"] == mt.OCI_LAYER_GZIP


def test_buildah_builds_on_the_result(srcs: Sources, files: Files, tmp_path: Path) -> None:
    """buildah pulls the host's image of a mutated index, sees the files and config, and
    commits and pushes an image on top of it."""
    if shutil.which("buildah") is None:
        pytest.fail("buildah is not installed; run the README's test command, which installs it")
    ok(luff_cli(*every_option(srcs.ref("index", "registry"), files, "index", "for-buildah")))
    cfg = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('{"auths": {}}')  # buildah insists that the (isolated) file exists
    root = tmp_path / "buildah"
    b = ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run")]
    b += ["--storage-driver", "vfs"]
    env = {"STORAGE_DRIVER": "vfs"}
    try:
        c = run(
            *b, "from", "--tls-verify=false", f"docker://{srcs.host}/mut/index:for-buildah", env=env
        )
        c = c.strip().splitlines()[-1]
        mnt = Path(run(*b, "mount", c, env=env).strip())
        assert (mnt / "etc/ssl/certs/ca-certificates.crt").read_text() == CERT
        assert not (mnt / "opt/arm/only.txt").exists()  # the amd64 image
        info = json.loads(run(*b, "inspect", c, env=env))
        assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in info["OCIv1"]["config"]["Env"]
        assert info["OCIv1"]["config"]["Labels"]["org.example.team"] == "infra"
        (tmp_path / "app.txt").write_text("app\n")
        run(*b, "copy", c, str(tmp_path / "app.txt"), "/app.txt", env=env)
        run(*b, "config", "--label", "org.example.app=1", c, env=env)
        run(*b, "commit", "-q", c, "derived", env=env)
        run(
            *b,
            "push",
            "--tls-verify=false",
            "derived",
            f"docker://{srcs.host}/mut/derived:1",
            env=env,
        )
    finally:
        subprocess.run([*b, "rm", "--all"], capture_output=True, env={**os.environ, **env})
        subprocess.run(
            [*b, "rmi", "--all", "--force"], capture_output=True, env={**os.environ, **env}
        )
    base = skopeo_config(f"{srcs.host}/mut/index:for-buildah", "linux/amd64")
    derived = skopeo_config(f"{srcs.host}/mut/derived:1", "linux/amd64")
    ids = base["rootfs"]["diff_ids"]
    assert derived["rootfs"]["diff_ids"][: len(ids)] == ids
    assert derived["config"]["Labels"]["org.example.app"] == "1"


# --- reproducible, Docker stays Docker, nothing more than needed is pushed -----------------


def test_source_date_epoch_gives_the_same_digests_run_after_run(
    srcs: Sources, files: Files, tmp_path: Path
) -> None:
    ref = srcs.ref("index", "registry")
    other = tmp_path / "copy" / "ca-certs"
    shutil.copytree(files.certs, other)  # the same files elsewhere, other mtimes
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    args = ["--label", "a=b", "--env", "X=1"]
    first = ok(luff_cli("mutate", ref, "--append", str(files.certs), *args, "-t", "sde1", env=env))
    second = ok(luff_cli("mutate", ref, "--append", str(other), *args, "-t", "sde2", env=env))
    assert first.strip() == second.strip()
    cfg = skopeo_config(f"{srcs.host}/mut/index:sde1", "linux/arm64")
    assert cfg["created"] == "2023-11-14T22:13:20Z"
    assert cfg["history"][-1] == {
        "created": "2023-11-14T22:13:20Z",
        "created_by": "luff mutate --append ca-certs",
    }
    later = ok(
        luff_cli(
            "mutate",
            ref,
            "--append",
            str(other),
            *args,
            "-t",
            "sde3",
            env={"SOURCE_DATE_EPOCH": "1700000001"},
        )
    )
    assert later.strip() != first.strip()


def test_docker_list_stays_docker(
    registry: DistributionRegistry, files: Files, actx: Context
) -> None:
    idx = random_index(("linux/amd64", "linux/arm64"), media="docker")
    ref = f"{registry.host}/mut/docker:1"
    idx.push(ref, actx)
    ok(luff_cli("mutate", ref, "--append", str(files.certs), "--label", "a=b", "-t", "2"))
    new = f"{registry.host}/mut/docker:2"
    doc = json.loads(basic.manifest(new, ctx=actx))
    assert doc["mediaType"] == mt.DOCKER_LIST
    for e, plat in zip(doc["manifests"], ("linux/amd64", "linux/arm64"), strict=True):
        assert e["mediaType"] == mt.DOCKER_MANIFEST
        m = json.loads(basic.manifest(new, platform=plat, ctx=actx))
        assert m["mediaType"] == mt.DOCKER_MANIFEST
        assert m["config"]["mediaType"] == mt.DOCKER_CONFIG
        assert {x["mediaType"] for x in m["layers"]} == {mt.DOCKER_LAYER_GZIP}
        assert skopeo_config(new, plat)["config"]["Labels"] == {"a": "b"}
    for flag in ("--annotation", "--index-annotation"):
        line = error_line(luff_cli("mutate", ref, flag, "a=b", "-t", "3"), 2)
        assert "Docker" in line and "has no annotations" in line
    assert luff_cli("digest", f"{registry.host}/mut/docker:3").returncode != 0


# --- what goes over the wire: the embedded registry's access log ----------------------------

_LINE = re.compile(r'"(\w+) (\S+) HTTP/[\d.]+" (\d+)')


class Logged:
    """An embedded registry whose access log the test reads."""

    def __init__(self) -> None:
        self.log = io.StringIO()
        self.reg = Registry(log=self.log).start()
        self.host = self.reg.host

    def requests(self) -> list[tuple[str, str, int]]:
        """``(method, path with query, status)`` of every request so far."""
        out = []
        for line in self.log.getvalue().splitlines():
            m = _LINE.search(line)
            if m and m[2].startswith("/v2/"):
                out.append((m[1], m[2], int(m[3])))
        return out

    def writes(self) -> list[tuple[str, str, int]]:
        return [r for r in self.requests() if r[0] in ("POST", "PUT", "PATCH", "DELETE")]

    def clear(self) -> None:
        self.log.seek(0)
        self.log.truncate()

    def push(self, image: Image, ref: str) -> None:
        """Push *image* to *ref* (``REPO:TAG`` here), then start a fresh log.

        The registry logs a request after answering it: wait for the tag's PUT.
        """
        image.push(f"{self.host}/{ref}")
        self.wait_for_tag(ref)
        self.clear()

    def wait_for_tag(self, ref: str) -> None:
        """Wait until the PUT of tag ``REPO:TAG`` is logged (a request is logged after its
        answer, so a client may be done before its last request is)."""
        repo, _, tag = ref.rpartition(":")
        deadline = time.monotonic() + 10
        while ("PUT", f"/v2/{repo}/manifests/{tag}", 201) not in self.requests():
            assert time.monotonic() < deadline, f"the registry never logged the PUT of {ref}"
            time.sleep(0.01)


@pytest.fixture
def logged() -> Iterator[Logged]:
    reg = Logged()
    yield reg
    reg.reg.stop()


def test_only_new_blobs_are_uploaded_and_a_rerun_uploads_nothing(
    logged: Logged, files: Files
) -> None:
    idx = random_index(PLATFORMS, layers=2, size=5000)
    logged.push(idx, "src/app:1")
    args = ["mutate", f"{logged.host}/src/app:1", "--platform", "linux/amd64"]
    args += ["--platform", "linux/arm/v7", "--append", str(files.certs), "--label", "a=b"]
    pinned = ok(luff_cli(*args, "-t", "2")).strip()
    logged.wait_for_tag("src/app:2")
    writes = logged.writes()
    uploads = [p for m, p, _ in writes if m == "POST"]
    assert len(uploads) == 3  # the new layer and two configs; no old layer moves
    puts = sorted(p.rsplit("/", 1)[1] for m, p, _ in writes if m == "PUT" and "/manifests/" in p)
    new = json.loads(basic.manifest(f"{logged.host}/src/app:2"))
    changed = [new["manifests"][0]["digest"], new["manifests"][2]["digest"]]
    assert puts == sorted([*changed, "2"])  # the changed images, then the index by tag
    old = idx.manifest.json["manifests"]
    assert new["manifests"][1] == old[1]  # linux/arm64 keeps its digest, byte for byte
    assert changed[0] != old[0]["digest"] and changed[1] != old[2]["digest"]
    layers = {str(b.digest) for c in idx.children for b in c.manifest.layers}
    assert not [p for m, p, _ in logged.requests() if m == "GET" and p.split("/")[-1] in layers]
    assert pinned.endswith(str(Digest.of(basic.manifest(f"{logged.host}/src/app:2"))))

    logged.clear()
    assert ok(luff_cli(*args, "-t", "2")).strip() == pinned
    assert logged.writes() == []  # the same mutate again: nothing is uploaded


def test_another_repository_mounts_the_old_layers(logged: Logged, files: Files) -> None:
    idx = random_index(PLATFORMS[:2], size=2000)
    logged.push(idx, "src/app:1")
    args = ["mutate", f"{logged.host}/src/app:1", "--append", str(files.certs)]
    p = luff_cli(*args, "-t", f"{logged.host}/rel/app:1", "--dry-run", "--json")
    plan = json.loads(ok(p))["plans"][0]
    actions = {b["digest"]: b["action"] for b in plan["blobs"]}
    old = {str(b.digest) for c in idx.children for b in c.manifest.blobs()}
    for c in idx.children:
        assert actions[str(c.manifest.layers[0].digest)] == MOUNT
    assert sorted(a for d, a in actions.items() if d not in old) == [COPY] * 3  # layer, 2 configs
    assert plan["target"] == f"{logged.host}/rel/app:1"
    assert logged.writes() == []
    ok(luff_cli(*args, "-t", f"{logged.host}/rel/app:1"))
    logged.wait_for_tag("rel/app:1")
    posts = [p for m, p, _ in logged.writes() if m == "POST"]
    assert len([p for p in posts if "mount=" in p]) == 2  # the two old layers
    assert len([p for p in posts if "mount=" not in p]) == 3


def test_dry_run_prints_digests_and_plan_and_pushes_nothing(logged: Logged, files: Files) -> None:
    idx = random_index(PLATFORMS, size=1000)
    logged.push(idx, "src/app:1")
    p = luff_cli(
        "mutate", f"{logged.host}/src/app:1", "--platform", "linux/arm64",
        "--append", str(files.certs), "-t", "2", "--dry-run", "-j", "2",
    )  # fmt: skip
    lines = ok(p).strip().splitlines()
    old = [str(c.digest) for c in idx.children]
    assert lines[0] == f"linux/amd64      {old[0]} (unchanged)"
    assert re.fullmatch(rf"linux/arm64      {old[1]} -> sha256:[0-9a-f]{{64}}", lines[1])
    assert lines[2] == f"linux/arm/v7     {old[2]} (unchanged)"
    assert lines[3].startswith(f"result           {idx.digest} -> sha256:")
    assert f"plan for {logged.host}/src/app:2:" in p.stderr
    assert re.search(rf"blob +exists +{idx.children[1].manifest.layers[0].digest}", p.stderr)
    assert re.search(r"blob +copy ", p.stderr) and "manifest tag" in p.stderr
    assert logged.writes() == []
    assert luff_cli("digest", f"{logged.host}/src/app:2").returncode != 0


# --- refusals: nothing is pushed -------------------------------------------------------------


def test_bad_input_fails_in_one_line_and_pushes_nothing(
    logged: Logged, files: Files, tmp_path: Path
) -> None:
    idx = random_index(("linux/amd64", "linux/arm64"), size=1000)
    logged.push(idx, "src/app:1")
    text = tmp_path / "notes.txt"
    text.write_text("not a tar\n" * 100)
    absolute = tmp_path / "abs.tar"
    with tarfile.open(absolute, "w") as t:
        info = tarfile.TarInfo("/etc/passwd")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    dotdot = tmp_path / "up.tar.gz"
    with tarfile.open(dotdot, "w:gz") as t:
        info = tarfile.TarInfo("etc/../../escape")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    ref = f"{logged.host}/src/app:1"
    good = ["--append", str(files.certs), "--label", "a=b", "-t", "2"]
    cases: list[tuple[list[str], int, str]] = [
        (["--append", str(text)], 2, "not a tar file"),
        (["--append", str(absolute)], 2, "is an absolute path"),
        (["--append", str(dotdot)], 2, "goes up with '..'"),
        (["--config-set", "del(.rootfs)"], 1, "'rootfs' is missing"),
        (["--config-set", ".rootfs.diff_ids |= .[1:]"], 1, "no longer match the image's layers"),
        (["--config-set", '.config.Env = "PATH=/bin"'], 1, "config.Env must be a list"),
        (["--config-set", ".config |||"], 2, "invalid jq program --config-set #1"),
        (["--platform", "linux/s390x"], 2, "no image is linux/s390x (it has: linux/amd64, linux/arm64)"),
        (["--append", f"linux/s390x={files.certs}"], 2, "no selected image is linux/s390x"),
        (["--index-annotation", "a"], 2, "--index-annotation 'a': expected KEY=VALUE"),
        (["--created", "yesterday"], 2, "not an RFC 3339 time"),
        (["--entrypoint", '["a", 1]'], 2, "must hold strings only"),
    ]  # fmt: skip
    for extra, code, message in cases:
        line = error_line(luff_cli("mutate", ref, *good, *extra), code)
        assert message in line, (extra, line)
    assert logged.writes() == []
    assert error_line(luff_cli("mutate", ref, "-t", "2"), 2).endswith(
        "nothing to change: give a config, annotation or layer change"
    )
    assert "names a digest" in error_line(
        luff_cli("mutate", f"{logged.host}/src/app@{idx.digest}", "--label", "a=b"), 2
    )
    assert logged.writes() == []


def test_a_change_refused_by_several_images_names_the_first_in_index_order(
    logged: Logged,
) -> None:
    plats = ("linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x", "linux/riscv64")
    idx = random_index(plats, size=200)
    logged.push(idx, "src/many:1")
    first = idx.manifest.manifests[0]
    for _ in range(5):  # the images are edited side by side: a race would show in a few runs
        line = error_line(
            luff_cli(
                "mutate", f"{logged.host}/src/many:1", "--config-set", ".config.User = 1", "-t", "2"
            ),
            1,
        )
        assert f"{first.digest} (linux/amd64)" in line, line
    assert logged.writes() == []


def test_append_to_windows_is_refused_other_changes_work(logged: Logged, files: Files) -> None:
    store = MemoryStore()
    linux, win = random_image("linux/amd64", store=store), random_image(WIN, store=store)
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [linux.descriptor.to_dict(), win.descriptor.to_dict()],
    }
    m = Manifest.from_dict(body)
    store.push_manifest(m)
    logged.push(Image(m.descriptor(), m, store, [linux, win]), "src/mixed:1")
    ref = f"{logged.host}/src/mixed:1"
    line = error_line(luff_cli("mutate", ref, "--append", str(files.certs), "-t", "2"), 2)
    assert "cannot --append to a Windows image" in line and str(win.digest) in line
    assert logged.writes() == []
    ok(
        luff_cli(
            "mutate", ref, "--append", str(files.certs), "--platform", "linux/amd64", "-t", "3"
        )
    )
    ok(luff_cli("mutate", ref, "--label", "a=b", "-t", "4"))
    three = json.loads(basic.manifest(f"{logged.host}/src/mixed:3"))["manifests"]
    assert three[1]["digest"] == str(win.digest) and three[0]["digest"] != str(linux.digest)
    four = json.loads(basic.manifest(f"{logged.host}/src/mixed:4"))["manifests"]
    assert (
        four[1]["digest"] != str(win.digest)
        and four[1]["platform"] == win.descriptor.platform.to_dict()
    )  # type: ignore[union-attr]


# --- the index around the images --------------------------------------------------------------


def test_attestations_are_dropped_or_repointed_with_a_note(
    registry: DistributionRegistry, actx: Context
) -> None:
    idx = index_with_attestation("linux/amd64")
    img, att = idx.children
    ref = f"{registry.host}/mut/att:1"
    idx.push(ref, actx)
    p = luff_cli("mutate", ref, "--label", "a=b", "-t", "dropped")
    ok(p)
    assert f"luff: dropped attestation {att.digest} of {img.digest}" in p.stderr
    entries = json.loads(basic.manifest(f"{registry.host}/mut/att:dropped"))["manifests"]
    assert len(entries) == 1 and entries[0]["platform"] == {"architecture": "amd64", "os": "linux"}
    p = luff_cli("mutate", ref, "--label", "a=b", "-t", "kept", "--keep-attestations", "--json")
    res = json.loads(ok(p))
    new_img = res["images"][0]["new"]
    assert f"luff: re-pointed attestation {att.digest} from {img.digest} to {new_img}" in p.stderr
    assert res["attestations"] == [
        {
            "digest": str(att.digest),
            "subject": str(img.digest),
            "newSubject": new_img,
            "action": "re-pointed",
        }
    ]
    entries = json.loads(basic.manifest(f"{registry.host}/mut/att:kept"))["manifests"]
    assert [e["digest"] for e in entries] == [new_img, str(att.digest)]
    assert entries[1]["annotations"][mt.REFERENCE_DIGEST] == new_img
    # an unchanged image keeps its attestation as it is
    p = luff_cli("mutate", ref, "--index-annotation", "a=b", "-t", "same")
    entries = json.loads(basic.manifest(f"{registry.host}/mut/att:same"))["manifests"]
    assert entries == idx.manifest.json["manifests"] and "attestation" not in p.stderr


def test_index_keeps_order_annotations_and_unchanged_entries(
    registry: DistributionRegistry, actx: Context
) -> None:
    store = MemoryStore()
    kids = [random_image(p, store=store) for p in ("linux/s390x", "linux/arm64", "linux/amd64")]
    entries = [k.descriptor.to_dict() for k in kids]
    entries[1]["annotations"] = {"org.example.entry": "arm"}
    entries[1]["platform"] = {"architecture": "arm64", "os": "linux", "variant": "v8"}
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    body["annotations"] = {"org.example.index": "1"}
    m = Manifest.from_dict(body)
    store.push_manifest(m)
    ref = f"{registry.host}/mut/order:1"
    Image(m.descriptor(), m, store, kids).push(ref, actx)
    res = json.loads(
        ok(
            luff_cli(
                "mutate", ref, "--platform", "linux/arm64", "--env", "A=1", "-t", "2", "--json"
            )
        )
    )
    new = json.loads(basic.manifest(f"{registry.host}/mut/order:2"))
    assert new["annotations"] == {"org.example.index": "1"}
    assert new["manifests"][0] == entries[0] and new["manifests"][2] == entries[2]
    changed = new["manifests"][1]
    assert {k: v for k, v in changed.items() if k not in ("digest", "size")} == {
        k: v for k, v in entries[1].items() if k not in ("digest", "size")
    }
    assert [i["changed"] for i in res["images"]] == [False, True, False]
    assert res["images"][1] == {
        "platform": "linux/arm64/v8",
        "old": entries[1]["digest"],
        "new": changed["digest"],
        "changed": True,
    }
    assert res["descriptor"]["digest"] == str(
        Digest.of(basic.manifest(f"{registry.host}/mut/order:2"))
    )


# --- other sources: layouts in place, archives, built indexes, memory ----------------------------


def test_layout_in_place_and_archives(tmp_path: Path, files: Files) -> None:
    idx = random_index(PLATFORMS[:2], size=1000)
    idx.push(f"oci:{tmp_path}/lay:app")
    out = ok(luff_cli("mutate", f"oci:{tmp_path}/lay:app", "--label", "a=b")).strip()
    assert out.startswith(f"oci:{tmp_path}/lay@sha256:")
    assert luff.index.list(f"oci:{tmp_path}/lay:app").descriptor.digest != idx.digest
    assert skopeo_config(f"oci:{tmp_path}/lay:app", "linux/arm64")["config"]["Labels"] == {"a": "b"}
    idx.push(f"oci-archive:{tmp_path}/app.tar:1")
    ok(
        luff_cli(
            "mutate",
            f"oci-archive:{tmp_path}/app.tar:1",
            "--append",
            str(files.certs),
            "-t",
            f"oci:{tmp_path}/out:2",
        )
    )
    rootfs, _ = unpack(f"oci:{tmp_path}/out:2", "linux/amd64", tmp_path)
    assert (rootfs / "etc/ssl/certs/ca-certificates.crt").read_text() == CERT


def test_build_mutate_and_push_in_one_go(
    registry: DistributionRegistry, files: Files, actx: Context
) -> None:
    r = registry.host
    for i, plat in enumerate(PLATFORMS):
        random_image(plat, size=1000).push(f"{r}/pipe/src{i}:1", actx)
    built = luff.index.build([f"{r}/pipe/src{i}:1" for i in range(3)], ctx=actx)
    res = luff.mutate.mutate(
        built,
        append=[files.certs, f"linux/arm64={files.arm_tar}"],
        env={"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"},
        target=f"{r}/pipe/app:1",
        ctx=actx,
    )
    built.close()
    assert res.pushed and set(res.mapping) == {e.digest for e in built.entries}
    got = basic.digest(f"{r}/pipe/app:1", ctx=actx)
    assert got.digest == res.descriptor.digest and got.media_type == mt.OCI_INDEX
    for plan in (p for _, p in res.plans):
        assert {b.action for b in plan.blobs} == {MOUNT, COPY}  # old layers mounted from pipe/src*
    cfg = skopeo_config(f"{r}/pipe/app:1", "linux/arm64")
    assert len(cfg["rootfs"]["diff_ids"]) == 3

    # and in memory, no registry: a Source in a MemoryStore, pushed into another one
    idx = random_index(PLATFORMS[:2])
    idx.store.push_manifest(idx.manifest, "1")
    m = luff.mutate.build(
        Source.from_store(idx.store, "1"), labels={"a": "b"}, platforms=["linux/arm64"]
    )
    dst = MemoryStore()
    with m:
        assert [c.changed for c in m.images] == [False, True]
        assert {b.action for b in m.plan(dst).blobs} == {COPY}
        m.push(dst, ["mutated"])
        assert {b.action for b in m.plan(dst).blobs} == {EXISTS}
    assert dst.resolve("mutated").digest == m.digest


def test_nested_index_is_rewritten_and_artifacts_are_left_alone() -> None:
    store = MemoryStore()
    a = random_image("linux/amd64", store=store)
    b = random_image("linux/arm64", store=store)
    inner = Manifest.from_dict(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [b.descriptor.to_dict()]}
    )
    store.push_manifest(inner)
    art_config = store.add_blob(b"{}", "application/vnd.example.config+json")
    art = Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": art_config.to_dict(),
            "layers": [],
        }
    )
    store.push_manifest(art)
    entries = [a.descriptor.to_dict(), inner.descriptor().to_dict(), art.descriptor().to_dict()]
    outer = Manifest.from_dict(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    )
    store.push_manifest(outer, "1")
    with luff.mutate.build(Source.from_store(store, "1"), labels={"x": "y"}) as m:
        assert [(str(c.platform), c.changed) for c in m.images] == [
            ("linux/amd64", True),
            ("linux/arm64", True),
            ("None", False),
        ]
        assert m.notes == [
            f"left {art.digest} as it is: not an image (application/vnd.example.config+json)"
        ]
        new = m.manifest.json["manifests"]
        assert new[2] == entries[2] and new[1]["digest"] != entries[1]["digest"]
        nested = m.store.fetch_manifest(m.manifest.manifests[1])
        assert nested.manifests[0].digest == m.images[1].new.digest
        dst = MemoryStore()
        m.push(dst, ["t"])
    assert dst.resolve("t").digest == m.digest and len(dst.manifests) == 5  # 2 indexes, 3 images
