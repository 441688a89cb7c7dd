"""Edge cases of the CLI that a daily crane/skopeo user hits: closed or full stdout,
unwritable paths, garbage from a registry, odd input files.

Each failure must be one line ``luff: error: …`` with exit 1 (2 for bad usage),
never a traceback, and never a half-written result.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from luff.context import Context
from luff.testing import random_image, random_index
from tests.conftest import Reg


def luff(
    *args: str, stdin: str | None = None, stdout: int = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args],
        input=stdin.encode() if stdin is not None else None,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=120,
    )


def one_line_error(p: subprocess.CompletedProcess[bytes], code: int = 1) -> str:
    err = p.stderr.decode()
    assert p.returncode == code, (p.returncode, p.stdout, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("luff: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def multi(registry: Reg) -> str:
    ref = f"{registry.host}/edges/multi:1"
    random_index(("linux/amd64", "linux/arm64")).push(ref, Context())
    return ref


# --- stdout -------------------------------------------------------------------------


def test_manifest_is_written_byte_for_byte(multi: str) -> None:
    """Without a terminal, `luff manifest REF | sha256sum` gives the manifest digest."""
    p = luff("manifest", multi)
    assert p.returncode == 0, p.stderr
    digest = luff("digest", multi).stdout.decode().strip()
    assert "sha256:" + hashlib.sha256(p.stdout).hexdigest() == digest


@pytest.mark.parametrize("verb", ["manifest", "digest", "config"])
def test_closed_stdout_is_an_error_not_a_traceback(multi: str, verb: str) -> None:
    p = subprocess.run(
        ["/bin/sh", "-c", f'exec {sys.executable} -m luff {verb} "$0" >&-', multi],
        stderr=subprocess.PIPE,
        timeout=120,
    )
    assert "standard output is closed" in one_line_error(p)


@pytest.mark.parametrize("verb", ["manifest", "digest", "ls", "blob"])
def test_full_stdout_is_an_error_not_a_traceback(registry: Reg, multi: str, verb: str) -> None:
    arg = multi
    if verb == "ls":
        arg = multi.rsplit(":", 1)[0]
    if verb == "blob":
        import json

        image = json.loads(luff("--platform", "linux/amd64", "manifest", multi).stdout)
        arg = f"{multi.rsplit(':', 1)[0]}@{image['layers'][0]['digest']}"
    with open("/dev/full", "wb") as full:
        p = luff(verb, arg, stdout=full.fileno())
    assert "No space left on device" in one_line_error(p)


# --- paths --------------------------------------------------------------------------


def test_unwritable_layout_path(multi: str) -> None:
    one_line_error(luff("copy", multi, "oci:/proc/luff-nope"))
    one_line_error(luff("layout", "init", "/proc/luff-nope"))


@pytest.mark.parametrize(
    "args",
    [
        ("copy", "{multi}", "oci-archive:{dir}"),
        ("pull", "{multi}", "{dir}", "--format", "oci-archive"),
        ("pull", "{multi}", "{dir}", "--format", "docker-archive", "--platform", "linux/arm64"),
    ],
)
def test_archive_target_that_is_a_directory(
    multi: str, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Refused up front (usage), and the directory is left as it was."""
    (tmp_path / "keep").write_text("x")
    p = luff(*(a.format(multi=multi, dir=tmp_path) for a in args))
    assert "is a directory" in one_line_error(p, 2)
    assert sorted(os.listdir(tmp_path)) == ["keep"]
    assert not any(n.startswith(".") for n in os.listdir(tmp_path.parent))


# --- copy --platform ----------------------------------------------------------------


def test_copy_platform_narrows_an_index(registry: Reg, multi: str, tmp_path: Path) -> None:
    """`copy --platform` (or the global one) copies that platform's image, as crane does."""
    want = luff("--platform", "linux/arm64", "digest", multi).stdout.decode().strip()
    target = f"{registry.host}/edges/arm64-only:1"
    p = luff("copy", "--platform", "linux/arm64", multi, target)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().strip() == f"{registry.host}/edges/arm64-only@{want}"
    raw = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{target}"],
        capture_output=True,
        timeout=120,
    )
    assert raw.returncode == 0, raw.stderr
    assert "sha256:" + hashlib.sha256(raw.stdout).hexdigest() == want

    # the error that a docker archive gives for an index suggests --platform: it must work
    arch = tmp_path / "one.tar"
    p = luff("copy", multi, f"docker-archive:{arch}")
    assert "--platform" in one_line_error(p, 2)
    p = luff("--platform", "linux/arm64", "copy", multi, f"docker-archive:{arch}")
    assert p.returncode == 0, p.stderr
    # a docker archive re-digests its image, so no digest is claimed for it
    assert p.stdout.decode().strip() == f"docker-archive:{arch}"
    cfg = luff("config", f"docker-archive:{arch}")
    assert b'"arm64"' in cfg.stdout

    p = luff("copy", "--platform", "linux/s390x", multi, f"{registry.host}/edges/none:1")
    assert "no image for platform linux/s390x" in one_line_error(p)


# --- reference and argument checks ---------------------------------------------------


@pytest.mark.parametrize("bad", ["bad tag", "other/repo:x", "", ".dot"])
def test_tag_names_the_bad_tag_before_any_network(bad: str) -> None:
    """The message names the tag the user gave (no internal placeholder reference)."""
    line = one_line_error(luff("tag", "127.0.0.1:1/app:multi", bad), 2)
    assert f"invalid tag {bad!r}" in line and "x/x" not in line


def test_catalog_host_checks(registry: Reg) -> None:
    line = one_line_error(luff("catalog", "x y"), 2)
    assert "invalid registry host 'x y'" in line
    # a bare name is a host (as in crane), not a Docker Hub repository
    line = one_line_error(luff("catalog", "luff-no-such-host"))
    assert "luff-no-such-host" in line and "docker.io" not in line


@pytest.mark.parametrize("ref", ["127.0.0.1:99999/x:y", "127.0.0.1:0/x:y"])
def test_out_of_range_port_is_a_bad_reference(ref: str) -> None:
    assert "bad port" in one_line_error(luff("digest", ref), 2)


# --- a registry that answers garbage ---------------------------------------------------


class _GarbageHandler(BaseHTTPRequestHandler):
    """Answers /v2/ like a registry, then lists that are not lists."""

    protocol_version = "HTTP/1.1"
    bodies: ClassVar[dict[str, bytes]] = {
        "/v2/": b"{}",
        "/v2/array/tags/list": b"[1, 2]",
        "/v2/string/tags/list": b'{"tags": "abc"}',
        "/v2/numbers/tags/list": b'{"tags": [1, null]}',
        "/v2/_catalog": b'{"repositories": 5}',
    }

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/v2/short/manifests/1":  # promises 1000 bytes, sends 2, hangs up
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"{}")
            self.close_connection = True
            return
        if self.path == "/v2/html/manifests/1":  # a login page where a manifest should be
            page = b"<html>sign in</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        body = self.bodies.get(self.path.partition("?")[0])
        self.send_response(200 if body is not None else 404)
        body = body or b'{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def garbage() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _GarbageHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("repo", ["array", "string", "numbers"])
def test_ls_of_a_malformed_tag_list(garbage: str, repo: str) -> None:
    """Refused with the repository named; never a traceback or the letters of a string."""
    p = luff("ls", f"{garbage}/{repo}")
    assert p.stdout == b""
    assert f"{garbage}/{repo}: " in one_line_error(p)


def test_catalog_and_missing_repository_messages(garbage: str, registry: Reg) -> None:
    p = luff("catalog", garbage)
    assert p.stdout == b"" and "repositories" in one_line_error(p)
    line = one_line_error(luff("ls", f"{registry.host}/edges/never-pushed"))
    assert line.startswith(f"luff: error: {registry.host}/edges/never-pushed: "), line
    assert "/v2/" not in line


# --- input files and stdin -------------------------------------------------------------


def test_binary_spec_file(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"\x1f\x8b\x08\x00binary")
    line = one_line_error(luff("index", "create", "127.0.0.1:1/x:1", "-f", str(spec)), 2)
    assert "not a YAML or JSON text file" in line


def test_password_stdin_with_stdin_closed() -> None:
    p = subprocess.run(
        [
            "/bin/sh",
            "-c",
            f'exec {sys.executable} -m luff auth login "$0" -u u --password-stdin <&-',
            "127.0.0.1:1",
        ],
        capture_output=True,
        timeout=120,
    )
    assert "standard input is closed" in one_line_error(p, 2)


# --- jq edits ----------------------------------------------------------------------------


def test_endless_jq_generator_is_refused_not_drained(multi: str) -> None:
    p = luff("index", "create", "127.0.0.1:1/x:1", multi, "--set", "repeat(.)")
    assert "gave more than one result" in one_line_error(p, 2)


def test_ctrl_c_stops_an_endless_jq_program(multi: str) -> None:
    """jq runs in C, where Python's KeyboardInterrupt never fires; Ctrl-C must still work."""
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "luff",
            "index",
            "create",
            "127.0.0.1:1/x:1",
            multi,
            "--set",
            "def f: f; f",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # the program has started once the sources are read; wait until the process is
        # busy in jq (it never ends on its own), then interrupt it
        for _ in range(400):
            if _cpu_ticks(p.pid) > 150:
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc in (-signal.SIGINT, 130), rc


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


# --- registry serve ----------------------------------------------------------------------


def test_serve_refuses_a_binary_htpasswd_and_a_lone_anonymous_pull(tmp_path: Path) -> None:
    bad = tmp_path / "htpasswd"
    bad.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe")
    p = luff("registry", "serve", "--address", "127.0.0.1:0", "--htpasswd", str(bad))
    assert "not an htpasswd file" in one_line_error(p, 2)
    # without --token the option would be ignored and the server would start: refuse instead
    p = luff("registry", "serve", "--address", "127.0.0.1:0", "--anonymous-pull", "pub/")
    assert "--anonymous-pull needs --token" in one_line_error(p, 2)


def test_body_cut_short_is_a_readable_error(garbage: str) -> None:
    line = one_line_error(luff("manifest", f"{garbage}/short:1"))
    assert "connection closed early (got 2 of 1000 bytes)" in line, line


# --- layouts --------------------------------------------------------------------------------


def test_push_of_an_empty_layout(tmp_path: Path) -> None:
    assert luff("layout", "init", str(tmp_path / "empty")).returncode == 0
    for extra in ((), ("--index",)):
        p = luff("push", str(tmp_path / "empty"), "127.0.0.1:1/x:1", *extra)
        assert "has no entries" in one_line_error(p)


@pytest.mark.parametrize("verb", ["digest", "manifest", "config"])
def test_platform_after_the_verb(multi: str, verb: str) -> None:
    """`luff digest --platform P REF` works as in crane, same as the global option."""
    local = luff(verb, "--platform", "linux/arm64", multi)
    assert local.returncode == 0, local.stderr
    assert local.stdout == luff("--platform", "linux/arm64", verb, multi).stdout
    assert local.stdout != luff("--platform", "linux/amd64", verb, multi).stdout


def test_login_to_a_web_server_that_is_not_a_registry(tmp_path: Path) -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _NotFoundHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{srv.server_address[1]}"
        p = luff("auth", "login", host, "-u", "u", "--password-stdin", stdin="pw\n")
        assert "does not look like an OCI registry" in one_line_error(p)
    finally:
        srv.shutdown()
        srv.server_close()


class _NotFoundHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_manifest_that_is_not_json_names_the_reference(garbage: str) -> None:
    line = one_line_error(luff("manifest", f"{garbage}/html:1"))
    assert line == f"luff: error: {garbage}/html:1: manifest is not valid JSON"


def test_corrupted_layout_blob_is_refused_and_named(multi: str, tmp_path: Path) -> None:
    """A layer that rotted on disk: the copy fails naming the layout, the target stays empty."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    assert luff("--platform", "linux/amd64", "copy", multi, f"oci:{src}:v1").returncode == 0
    import json

    layer = json.loads(luff("manifest", f"oci:{src}:v1").stdout)["layers"][0]["digest"]
    blob = src / "blobs" / "sha256" / layer.removeprefix("sha256:")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 1
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    line = one_line_error(luff("copy", f"oci:{src}:v1", f"oci:{dst}"))
    assert f"oci:{src}: content does not match digest {layer}" in line, line
    assert json.loads((dst / "index.json").read_text())["manifests"] == []
    assert not (dst / "blobs" / "sha256" / layer.removeprefix("sha256:")).exists()


def test_tag_and_ls_in_a_layout(multi: str, tmp_path: Path) -> None:
    """`tag` in a layout succeeded but then failed printing its result (exit 2)."""
    lay = tmp_path / "lay"
    assert luff("copy", multi, f"oci:{lay}:one").returncode == 0
    digest = luff("digest", multi).stdout.decode().strip()
    p = luff("tag", f"oci:{lay}:one", "two")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().strip() == f"oci:{lay}:two@{digest}"
    assert luff("digest", p.stdout.decode().strip()).stdout.decode().strip() == digest
    p = luff("ls", f"oci:{lay}")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split() == ["one", "two"]
    assert "without a tag" in one_line_error(luff("ls", f"oci:{lay}:one"), 2)


def test_blob_of_a_layout(tmp_path: Path) -> None:
    img = random_image(size=300)
    img.push(f"oci:{tmp_path / 'lay'}:1")
    layer = img.manifest.layers[0].digest
    p = luff("blob", f"oci:{tmp_path / 'lay'}@{layer}")
    assert p.returncode == 0 and p.stdout == img.store.blobs[layer]
    p = luff("blob", f"oci:{tmp_path / 'lay'}@sha256:{'a' * 64}")
    assert "blob unknown" in one_line_error(p, 1)
    p = luff("blob", f"oci-archive:{tmp_path / 'x.tar'}@sha256:{'a' * 64}")
    assert one_line_error(p, 1)


def test_corrupted_manifest_in_a_layout_is_named(multi: str, tmp_path: Path) -> None:
    lay = tmp_path / "lay"
    assert luff("copy", multi, f"oci:{lay}:v1").returncode == 0
    child = luff("--platform", "linux/arm64", "digest", f"oci:{lay}:v1").stdout.decode().strip()
    blob = lay / "blobs" / "sha256" / child.removeprefix("sha256:")
    blob.chmod(0o644)
    blob.write_bytes(b"garbage\n")
    line = one_line_error(luff("copy", f"oci:{lay}:v1", f"oci:{tmp_path / 'out'}"))
    assert line.startswith(f"luff: error: oci:{lay}: ") and child in line, line


def test_all_tags_into_an_archive_is_refused(tmp_path: Path) -> None:
    line = one_line_error(luff("copy", "-a", "127.0.0.1:1/app", f"oci-archive:{tmp_path}/a.tar"), 2)
    assert "each copy would replace the archive" in line


def test_all_tags_from_a_layout(tmp_path: Path) -> None:
    """Every ref.name of a layout, copied to a layout under the same names."""
    a, b = random_image(size=100), random_image(size=100)
    a.push(f"oci:{tmp_path / 'src'}:one")
    b.push(f"oci:{tmp_path / 'src'}:two")
    p = luff("copy", "-a", f"oci:{tmp_path / 'src'}", f"oci:{tmp_path / 'dst'}")
    assert p.returncode == 0, p.stderr
    assert luff("ls", f"oci:{tmp_path / 'dst'}").stdout.decode().split() == ["one", "two"]


# --- SIGTERM ---------------------------------------------------------------------------------


class _StallingRegistry(BaseHTTPRequestHandler):
    """One image whose layer trickles in (about 5 s) until the test releases it."""

    protocol_version = "HTTP/1.1"
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = os.urandom(4 << 20)  # a few of luff's read chunks
    layer_requested = threading.Event()
    layer_completed = threading.Event()
    release = threading.Event()
    # the layer: "trickle" flows slowly; "stall" sends one chunk, then nothing; "headers"
    # never answers; "busy" answers 503 with Retry-After: 30 (all until released);
    # "manifest": the manifest is never answered
    mode = "trickle"

    @classmethod
    def manifest(cls) -> bytes:
        def d(b: bytes) -> str:
            return "sha256:" + hashlib.sha256(b).hexdigest()

        import json

        return json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": d(cls.config),
                    "size": len(cls.config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": d(cls.layer),
                        "size": len(cls.layer),
                    }
                ],
            }
        ).encode()

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, body: bytes, ctype: str = "application/octet-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if "/manifests/" in self.path:
            self.send_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(body).hexdigest())
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.path == "/v2/":
            return self._send(b"{}", "application/json")
        if self.path.startswith("/v2/stall/manifests/"):
            if self.mode == "manifest":
                self.layer_requested.set()
                self.release.wait(120)
                self.close_connection = True
                return
            return self._send(self.manifest(), "application/vnd.oci.image.manifest.v1+json")
        if self.path.endswith(hashlib.sha256(self.config).hexdigest()):
            return self._send(self.config)
        if self.path.endswith(hashlib.sha256(self.layer).hexdigest()):
            if self.command == "HEAD":
                return self._send(self.layer)
            if self.mode in ("headers", "busy"):
                self.layer_requested.set()
                if self.mode == "headers":
                    self.release.wait(120)
                    self.close_connection = True
                    return
                self.send_response(503)
                self.send_header("Retry-After", "30")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.layer)))
            self.end_headers()
            # a slow but flowing download: 16 KiB every 20 ms (about 5 s) until the test is done
            self.layer_requested.set()
            try:
                for i in range(0, len(self.layer), 1 << 14):
                    if self.release.wait(120 if self.mode == "stall" and i else 0.02):
                        break
                    self.wfile.write(self.layer[i : i + (1 << 14)])
                    self.wfile.flush()
                else:
                    self.layer_completed.set()
            except OSError:
                pass  # the client hung up
            self.close_connection = True
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


_last_completed: list[bool] = []  # whether the last _interrupted_pull's layer was all sent


def _interrupted_pull(
    tmp_path: Path,
    fmt: str,
    sig: int,
    *,
    mode: str = "trickle",
    settle: float = 0.0,
    index: bool = False,
) -> tuple[int, str, list[str]]:
    """`luff pull` (or with *index*, `luff index create` of two tags) from
    :class:`_StallingRegistry`, sent *sig* once the stalling request has begun:
    ``(exit code, stderr, files left in the output directory)``."""
    # Events of this server only: handler threads of an earlier test's server (still
    # finishing after its client was killed) must not signal this one.
    stall_mode = mode

    class handler(_StallingRegistry):
        layer_requested = threading.Event()
        layer_completed = threading.Event()
        release = threading.Event()
        mode = stall_mode

    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    out = tmp_path / "out"
    out.mkdir()
    ref = f"127.0.0.1:{srv.server_address[1]}/stall:1"
    args = ["pull", ref, str(out / "img.tar"), "--format", fmt]
    if index:  # the sources are resolved concurrently, in pool threads
        args = ["index", "create", f"oci:{out / 'idx'}", ref, ref.replace(":1", ":2")]
    p = subprocess.Popen(
        [sys.executable, "-m", "luff", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert handler.layer_requested.wait(60), p.stderr
        time.sleep(settle)
        p.send_signal(sig)
        # well under the 60 s read timeout that a stalled download would otherwise wait out
        _, err = p.communicate(timeout=30)
    finally:
        handler.release.set()
        if p.poll() is None:
            p.kill()
            p.wait()
        srv.shutdown()
        srv.server_close()
    _last_completed[:] = [handler.layer_completed.is_set()]
    return p.returncode, err.decode(), os.listdir(out)


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_sigterm_mid_pull_leaves_no_staging_files(tmp_path: Path, fmt: str) -> None:
    """A CI timeout or `kill` (SIGTERM) unwinds like Ctrl-C: no archive, no hidden staging dir,
    and the running download stops at its next chunk instead of being awaited to the end."""
    code, err, left = _interrupted_pull(tmp_path, fmt, signal.SIGTERM)
    assert code == 143, err
    assert err.strip() == "luff: terminated"
    assert left == []
    # the download was abandoned at a chunk boundary, not awaited to its end
    assert _last_completed == [False]


def test_interrupt_while_index_sources_are_resolved_is_prompt(tmp_path: Path) -> None:
    """A source registry that never answers a manifest request: the pool threads that
    resolve the sources are stopped too, not waited for until the read timeout."""
    got, err, left = _interrupted_pull(
        tmp_path, "", signal.SIGTERM, mode="manifest", settle=0.3, index=True
    )
    assert got == 143, err
    assert err.strip() == "luff: terminated"
    assert left == []


@pytest.mark.parametrize("mode", ["stall", "headers", "busy"])
@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
def test_interrupt_during_a_stalled_download_is_prompt(
    tmp_path: Path, sig: int, code: int, word: str, mode: str
) -> None:
    """A server that stops sending mid-blob, never answers, or asks to retry in 30 s must
    not hold up Ctrl-C or a kill: the connections are shut down, the backoff sleep is cut
    short, nothing is retried, and the staging files go."""
    # settle: let the request go out and the reader block
    got, err, left = _interrupted_pull(tmp_path, "oci-archive", sig, mode=mode, settle=0.3)
    assert got == code, err
    assert err.strip() == f"luff: {word}"
    assert left == []


class _StalledUploads(BaseHTTPRequestHandler):
    """A registry that stops reading a large blob's upload (and accepts small ones)."""

    protocol_version = "HTTP/1.1"
    upload_started = threading.Event()
    release = threading.Event()

    def log_message(self, *a: object) -> None:
        pass

    def _reply(self, code: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._reply(200 if self.path == "/v2/" else 404)

    def do_HEAD(self) -> None:
        self._reply(404)

    def do_POST(self) -> None:
        self._reply(202, {"Location": "/v2/up/blobs/uploads/u1", "Range": "0-0"})

    def do_PUT(self) -> None:
        size = int(self.headers.get("Content-Length", "0"))
        if size < 1 << 20:
            self.rfile.read(size)
            digest = self.path.rpartition("digest=")[2].replace("%3A", ":")
            return self._reply(201, {"Docker-Content-Digest": digest})
        self.upload_started.set()
        self.release.wait(120)  # read nothing: the client's send blocks once buffers fill
        self.close_connection = True


def test_interrupt_during_a_stalled_upload_is_prompt(tmp_path: Path) -> None:
    """A target that stops reading an upload must not hold up a kill until the write timeout."""
    _StalledUploads.upload_started.clear()
    _StalledUploads.release.clear()
    src = tmp_path / "src"
    random_image("linux/amd64", size=32 << 20).push(f"oci:{src}:x")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _StalledUploads)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "luff",
            "copy",
            f"oci:{src}:x",
            f"127.0.0.1:{srv.server_address[1]}/up:1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert _StalledUploads.upload_started.wait(60), p.stderr
        time.sleep(0.5)  # let the socket buffers fill and the send block
        p.terminate()
        # well under the 15 s socket timeout that applies while a request body is sent
        _, err = p.communicate(timeout=10)
    finally:
        _StalledUploads.release.set()
        if p.poll() is None:
            p.kill()
            p.wait()
        srv.shutdown()
        srv.server_close()
    assert p.returncode == 143, err
    assert err.decode().strip() == "luff: terminated"


def test_global_flags_after_the_verb(registry: Reg) -> None:
    """-v and --insecure work after the command name too (crane's persistent flags)."""
    p = luff("digest", f"{registry.host}/edges/none:x", "-v", "--insecure", registry.host)
    assert p.returncode == 1 and b"Traceback" in p.stderr and b"manifest unknown" in p.stderr
    p = luff("layout", "list", "/nonexistent/dir", "-v")
    assert p.returncode != 0 and b"Traceback" in p.stderr


def test_jobs_after_the_verb_of_every_transferring_command(registry: Reg, tmp_path: Path) -> None:
    """-j works after the command name wherever blobs move; -v shows the setting used."""
    ref = f"{registry.host}/edges/jobs:1"
    random_image("linux/amd64", layers=2).push(ref)
    p = luff("pull", ref, str(tmp_path / "l"), "-j", "1", "-v")
    assert p.returncode == 0, p.stderr
    assert b"jobs     1" in p.stderr
    p = luff("-j", "3", "push", f"{tmp_path / 'l'}:1", f"{registry.host}/edges/jobs2:1", "-v")
    assert p.returncode == 0 and b"jobs     3" in p.stderr, p.stderr
    p = luff("index", "create", f"{registry.host}/edges/jobs3:1", ref, "-v", "-j", "2")
    assert p.returncode == 0 and b"jobs     2" in p.stderr, p.stderr
    for cmd in (
        ["push", "x", "y"],
        ["index", "filter", "x"],
        ["layout", "append", "d", "s"],
        ["layout", "fill", "d"],
        ["index", "append", "x", "y"],
        ["pull", "x", "y"],
    ):
        p = luff(*cmd, "-j", "0")
        assert p.returncode == 2 and b"not in the range" in p.stderr, (cmd, p.stderr)
