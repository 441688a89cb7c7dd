"""Abandoned and hostile uploads: file descriptors, the upload cap, idle expiry,
digest checks off the event loop, deeply nested manifests."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import urllib3

from luff.model import mediatypes as mt
from luff.model.jsonutil import too_deep as json_too_deep
from luff.server import RegistryServer
from luff.server.manifests import MAX_JSON_DEPTH
from tests.test_server import Http, error_code, manifest, sha

LUFF = [sys.executable, "-m", "luff"]


@contextmanager
def serve(*args: str, nofile: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``luff registry serve`` in a subprocess (optionally under ``ulimit -n nofile``)."""

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    p = subprocess.Popen(
        [*LUFF, "registry", "serve", "--address", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limit,
    )
    try:
        assert p.stdout is not None and p.stderr is not None
        host = p.stdout.readline().decode().strip()
        assert host, p.stderr.read().decode()
        yield host, p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- file descriptors ------------------------------------------------------------


def test_abandoned_uploads_hold_no_file_descriptor(tmp_path: Path) -> None:
    """300 uploads left half-way under ``ulimit -n 64``: other clients still push."""
    with serve("--storage", str(tmp_path / "store"), "--quiet", nofile=64) as (host, p):
        c = Http(host)
        before = open_fds(p.pid)
        for i in range(300):
            r = c("POST", "/v2/abandon/blobs/uploads/")
            assert r.status == 202, (i, r.status, r.data)
            r = c("PATCH", r.headers["Location"], body=b"half of a blob")
            assert r.status == 202, (i, r.status, r.data)
        # the uploads exist (files on disk) but hold no descriptor
        assert len(os.listdir(tmp_path / "store" / "uploads")) == 300
        assert open_fds(p.pid) <= before + 2
        other = Http(host)
        data = os.urandom(100_000)
        d = other.push_blob("other", data)
        loc = other("POST", "/v2/other/blobs/uploads/").headers["Location"]
        r = other("PATCH", loc, body=data[:50_000])
        assert r.status == 202
        r = other("PUT", f"{r.headers['Location']}?digest={sha(data)}", body=data[50_000:])
        assert r.status == 201, r.data
        assert other("GET", f"/v2/other/blobs/{d}").data == data
        # and an abandoned upload can still be finished later
        loc = c("POST", "/v2/abandon/blobs/uploads/").headers["Location"]
        assert c("PATCH", loc, body=b"first ").status == 202
        assert c("PATCH", loc, body=b"second").status == 202
        assert c("PUT", f"{loc}?digest={sha(b'first second')}").status == 201


# --- the upload cap and idle expiry -----------------------------------------------


def test_upload_cap_answers_429_and_finished_uploads_free_their_slot() -> None:
    with RegistryServer(address="127.0.0.1:0", max_uploads=3) as srv:
        c = Http(srv.host)
        locs = [c("POST", "/v2/cap/blobs/uploads/").headers["Location"] for _ in range(3)]
        r = c("POST", "/v2/cap/blobs/uploads/")
        assert (r.status, error_code(r)) == (429, "TOOMANYREQUESTS")
        assert "too many uploads in progress" in json.loads(r.data)["errors"][0]["message"]
        assert int(r.headers["Retry-After"]) >= 1
        # a monolithic upload needs a slot too
        r = c("POST", f"/v2/cap/blobs/uploads/?digest={sha(b'x')}", body=b"x")
        assert r.status == 429
        # the uploads in progress are unharmed
        assert c("PATCH", locs[0], body=b"data").status == 202
        # a finished upload frees its slot...
        assert c("PUT", f"{locs[0]}?digest={sha(b'data')}").status == 201
        r = c("POST", "/v2/cap/blobs/uploads/")
        assert r.status == 202
        locs.append(r.headers["Location"])
        assert c("POST", "/v2/cap/blobs/uploads/").status == 429
        # ...and so does a cancelled one, or a failed one
        assert c("DELETE", locs[1]).status == 204
        assert c("POST", f"/v2/cap/blobs/uploads/?digest={sha(b'y')}", body=b"y").status == 201
        r = c("PUT", f"{locs[2]}?digest={sha(b'other')}", body=b"wrong")
        assert error_code(r) == "DIGEST_INVALID"
        assert c("POST", "/v2/cap/blobs/uploads/").status == 202
        # a mount does not open an upload
        assert c("POST", f"/v2/cap2/blobs/uploads/?mount={sha(b'data')}&from=cap").status == 201


def wait_until_expired(srv: RegistryServer, loc: str) -> None:
    """Wait until the upload at *loc* is dropped (asking the server would keep it alive)."""
    uid = loc.rsplit("/", 1)[1]
    for _ in range(600):
        if uid not in srv.storage.uploads:
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"{loc} never expired")


def test_idle_uploads_expire_and_free_their_slot(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with RegistryServer(store, address="127.0.0.1:0", max_uploads=2, upload_timeout=0.3) as srv:
        c = Http(srv.host)
        idle = c("POST", "/v2/exp/blobs/uploads/").headers["Location"]
        assert c("PATCH", idle, body=b"left behind").status == 202
        # an upload whose request is in flight (stalled mid-body) is busy: it never expires
        release, sent = threading.Event(), threading.Event()
        result: list[int] = []

        def stalled_body() -> Iterator[bytes]:
            yield b"a" * 100
            sent.set()
            release.wait(60)
            yield b"b" * 100

        def slow() -> None:
            s = Http(srv.host)
            loc = s("POST", "/v2/exp/blobs/uploads/").headers["Location"]
            body = b"a" * 100 + b"b" * 100
            r = s("PUT", f"{loc}?digest={sha(body)}", body=stalled_body(), chunked=True)
            result.append(r.status)

        t = threading.Thread(target=slow)
        t.start()
        try:
            assert sent.wait(30)
            assert c("POST", "/v2/exp/blobs/uploads/").status == 429
            wait_until_expired(srv, idle)  # expired while idle: its slot and file are free
            assert c("GET", idle).status == 404
            assert len(os.listdir(store / "uploads")) == 1  # the busy one is still there
            r = c("POST", "/v2/exp/blobs/uploads/")
            assert r.status == 202
        finally:
            release.set()
            t.join()
        assert result == [201]
        assert c("HEAD", f"/v2/exp/blobs/{sha(b'a' * 100 + b'b' * 100)}").status == 200
        wait_until_expired(srv, r.headers["Location"])
        assert os.listdir(store / "uploads") == []


def test_serve_upload_options(tmp_path: Path) -> None:
    with serve("--max-uploads", "1", "--upload-timeout", "600", "--quiet") as (host, _):
        c = Http(host)
        assert c("POST", "/v2/one/blobs/uploads/").status == 202
        assert c("POST", "/v2/one/blobs/uploads/").status == 429
    p = subprocess.run(
        [*LUFF, "registry", "serve", "--max-uploads", "0"], capture_output=True, text=True
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr


# --- digest checks off the event loop ------------------------------------------------


def _http_get(sock: socket.socket, buf: bytearray) -> None:
    """One keep-alive ``GET /v2/`` on *sock*; reads the whole response."""
    sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    buf[:] = rest[length:]


def test_sha512_check_of_a_large_upload_does_not_stall_other_clients(tmp_path: Path) -> None:
    """While a 256 MiB upload's sha512 is checked, other requests are answered."""
    chunk = os.urandom(1 << 20)
    n = 256
    h = hashlib.sha512()
    for _ in range(n):
        h.update(chunk)
    digest = f"sha512:{h.hexdigest()}"
    with RegistryServer(tmp_path / "store", address="127.0.0.1:0") as srv:
        c = Http(srv.host)
        loc = c("POST", "/v2/big/blobs/uploads/").headers["Location"]
        r = c("PATCH", loc, body=(chunk for _ in range(n)), chunked=True)
        assert r.status == 202, r.data
        path = urllib3.util.parse_url(r.headers["Location"]).request_uri
        with (
            socket.create_connection(("127.0.0.1", srv.port)) as put,
            socket.create_connection(("127.0.0.1", srv.port)) as get,
        ):
            get_buf = bytearray()
            _http_get(get, get_buf)  # connected and warm
            put.sendall(
                f"PUT {path}{'&' if '?' in path else '?'}digest={digest} HTTP/1.1\r\n"
                f"Host: x\r\nContent-Length: 0\r\n\r\n".encode()
            )
            # Count the GETs answered while the PUT's answer had not yet arrived
            # (checked after each GET's answer is read: with the hash on the event
            # loop, any GET answered after the hash started finds it already there).
            answered_first = 0
            while True:
                if select.select([put], [], [], 0)[0]:
                    break
                _http_get(get, get_buf)
                if not select.select([put], [], [], 0)[0]:
                    answered_first += 1
            status = put.recv(65536).split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 201"), status
        assert answered_first >= 2, answered_first
        assert c("HEAD", f"/v2/big/blobs/{digest}").headers["Content-Length"] == str(n << 20)


# --- deeply nested manifests --------------------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_json_depth_bound() -> None:
    assert not json_too_deep(b'{"a": [1, {"b": [2]}]}', 4)
    assert json_too_deep(b'{"a": [1, {"b": [2]}]}', 3)
    # brackets in strings, escaped quotes and backslashes do not count
    assert not json_too_deep(b'{"a": "[[[[\\"[[[[\\\\", "b": "{{{{"}', 1)
    assert json_too_deep(b'{"a": "\\\\", "b": [[]]}', 2)
    assert not json_too_deep(nested(MAX_JSON_DEPTH))
    assert json_too_deep(nested(MAX_JSON_DEPTH + 1))
    assert json_too_deep(nested(100_000))
    # many shallow arrays are fine
    assert not json_too_deep(b"[" + b"[[]]," * 100_000 + b"[]]")


def test_json_depth_check_is_linear_on_unterminated_strings() -> None:
    """4 MiB of escaped quotes in a string that never ends, and 4 MiB of lone quotes: the
    check (and the parse it guards) ends at once. A scan restarted at every quote took
    20 s for 80 kB, hours for this. The timeout is a bound on a hang, not a speed test."""
    code = (
        "from luff.model.jsonutil import loads\n"
        "for text in (b'[' * 100 + b'\"' + b'\\\\\"' * (2 << 20), b'[' * 100 + b'\"' * (4 << 20)):\n"
        "    try:\n"
        "        loads(text)\n"
        "    except Exception:\n"
        "        pass\n"
        "print('ok')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "ok", p.stderr


def image_with(http: Http, repo: str, annotation: bytes = b"", field: bytes = b"") -> bytes:
    """An image manifest with *annotation* as the value of annotation ``x``, and/or
    *field* as the value of an extra top-level field (as the spec allows)."""
    cfg = http.push_blob(repo, b'{"architecture":"amd64","os":"linux"}')
    lay = http.push_blob(repo, b"layer")
    base = manifest(cfg, 37, [(lay, 5)]).rstrip()
    assert base.endswith(b"}")
    if annotation:
        base = base[:-1] + b', "annotations": {"x": ' + annotation + b"}}"
    if field:
        base = base[:-1] + b', "org.example.extra": ' + field + b"}"
    return base


def test_deeply_nested_manifest_is_invalid_not_a_crash(tmp_path: Path) -> None:
    with serve("--storage", str(tmp_path / "store")) as (host, p):
        c = Http(host)
        # 100,000 nested arrays in an annotation
        r = c.push_manifest("deep", "v1", image_with(c, "deep", annotation=nested(100_000)))
        assert (r.status, error_code(r)) == (400, "MANIFEST_INVALID"), r.data
        assert f"deeper than {MAX_JSON_DEPTH}" in json.loads(r.data)["errors"][0]["message"]
        # the bound: the manifest object plus MAX_JSON_DEPTH - 1 arrays is accepted, one more is not
        r = c.push_manifest("deep", "v2", image_with(c, "deep", field=nested(MAX_JSON_DEPTH)))
        assert (r.status, error_code(r)) == (400, "MANIFEST_INVALID")
        r = c.push_manifest("deep", "v3", image_with(c, "deep", field=nested(MAX_JSON_DEPTH - 1)))
        assert r.status == 201, r.data
        # brackets in strings are not nesting
        r = c.push_manifest(
            "deep", "v4", image_with(c, "deep", annotation=b'"' + b"[" * 1000 + b'"')
        )
        assert r.status == 201, r.data
        assert c("GET", "/v2/").status == 200
        assert json.loads(c("GET", "/v2/deep/tags/list").data)["tags"] == ["v3", "v4"]
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        assert p.stderr is not None
        log = p.stderr.read().decode()
    assert "Traceback" not in log and " 500 " not in log, log
    assert log.count(" 400 ") == 2, log


def test_manifest_media_type_is_checked_after_the_depth(tmp_path: Path) -> None:
    with RegistryServer(address="127.0.0.1:0") as srv:
        c = Http(srv.host)
        r = c(
            "PUT", "/v2/x/manifests/t", body=nested(10_000), headers={"Content-Type": mt.OCI_INDEX}
        )
        assert (r.status, error_code(r)) == (400, "MANIFEST_INVALID")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 3_000])
def test_deep_json_in_a_manifest_put_by_digest(depth: int) -> None:
    with RegistryServer(address="127.0.0.1:0") as srv:
        c = Http(srv.host)
        body = image_with(c, "dd", field=nested(depth))
        d = "sha256:" + hashlib.sha256(body).hexdigest()
        r = c.push_manifest("dd", d, body)
        assert (r.status, error_code(r)) == (400, "MANIFEST_INVALID")
