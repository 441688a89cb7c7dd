"""Everything a registry controls is bounded: bodies (decoded), pages, nesting, silence.

The peers are real servers on loopback (tests/hostile.py); memory is measured as the
growth of the peak RSS of a fresh process running luff (a generous memory bound, not a
timing).
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from luff.context import Context
from luff.errors import RegistryError, TransportError
from luff.model import mediatypes as mt
from luff.ops import basic
from luff.registry.auth import ANONYMOUS
from tests.hostile import (
    Hostile,
    MiB,
    Silent,
    deep_json,
    deep_manifest,
    endless,
    gzip_bomb,
    measured,
    send,
)
from tests.test_cli import luff

# A process that holds no more than a few MiB of what a peer sent grows by far less.
MEMORY_BOUND_KIB = 100 * 1024


def one_line(p: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert p.returncode == code, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("luff: error: "), p.stderr
    return lines[0]


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    h = Hostile()
    yield h
    h.stop()


def _bearer(hostile: Hostile) -> None:
    """/v2/ asks for a token from the server's own /token."""
    challenge = f'Bearer realm="http://{hostile.host}/token",service="hostile"'
    hostile.route(
        "/v2/",
        lambda h: send(h, 401, b"{}", headers={"WWW-Authenticate": challenge}),
    )


def _gzipped(h: BaseHTTPRequestHandler, ctype: str = "application/json") -> None:
    send(h, 200, gzip_bomb(), ctype, {"Content-Encoding": "gzip"})


# --- bodies -------------------------------------------------------------------------


def test_an_endless_ping_body_is_refused(hostile: Hostile) -> None:
    hostile.route("/v2/", lambda h: endless(h, prefix=b"{}"))
    error, grew = measured(f"ctx.client({hostile.host!r}).check_login()")
    assert error.startswith("LimitExceeded: ") and "answer to GET /v2/ larger than" in error
    assert grew < MEMORY_BOUND_KIB
    line = one_line(luff("auth", "login", hostile.host, "-u", "u", "--password-stdin", stdin="p"))
    assert "larger than" in line


def test_an_endless_token_response_is_refused(hostile: Hostile) -> None:
    _bearer(hostile)
    hostile.route("/token", lambda h: endless(h, prefix=b'{"token": "'))
    error, grew = measured(f"basic.digest('{hostile.host}/app:1', ctx=ctx)")
    assert error.startswith("LimitExceeded: ") and "token response larger than" in error, error
    assert grew < MEMORY_BOUND_KIB


@pytest.mark.parametrize("where", ["ping", "token", "manifest", "tags"])
def test_a_gzip_bomb_is_capped_after_decoding(hostile: Hostile, where: str) -> None:
    if where == "ping":
        hostile.route("/v2/", _gzipped)
        call = f"ctx.client({hostile.host!r}).check_login()"
    elif where == "token":
        _bearer(hostile)
        hostile.route("/token", _gzipped)
        call = f"basic.digest('{hostile.host}/app:1', ctx=ctx)"
    elif where == "manifest":
        hostile.route("/v2/app/manifests/.*", lambda h: _gzipped(h, mt.OCI_MANIFEST))
        call = f"basic.manifest('{hostile.host}/app:1', ctx=ctx)"
    else:
        hostile.route("/v2/app/tags/list", _gzipped)
        call = f"basic.ls('{hostile.host}/app', ctx=ctx)"
    error, grew = measured(call)
    assert "larger than" in error, error
    assert grew < MEMORY_BOUND_KIB


@pytest.mark.parametrize("status", [400, 500])
def test_a_huge_error_body_is_cut_short(hostile: Hostile, status: int) -> None:
    prefix = b'{"errors":[{"code":"DENIED","message":"' + b"x" * 1000
    hostile.route(
        "/v2/app/manifests/.*", lambda h: endless(h, status, prefix=prefix, chunked=status == 400)
    )
    error, grew = measured(f"basic.manifest('{hostile.host}/app:1', ctx=ctx)")
    assert error.startswith("RetryLater" if status == 500 else "RegistryError"), error
    assert "DENIED" in error or f"HTTP {status}" in error
    assert len(error) < 1000
    assert grew < MEMORY_BOUND_KIB


# --- pagination ---------------------------------------------------------------------


def _endless_pages(h: BaseHTTPRequestHandler) -> None:
    n = int(h.path.partition("last=")[2] or 0)
    link = f'</v2/app/tags/list?n=1&last={n + 1}>; rel="next"'
    send(h, 200, json.dumps({"name": "app", "tags": [f"t{n}"]}).encode(), headers={"Link": link})


def test_tags_pagination_stops_after_the_page_limit(hostile: Hostile) -> None:
    hostile.route("/v2/app/tags/list", _endless_pages)
    line = one_line(luff("ls", f"{hostile.host}/app"))  # never ended before
    assert f"{hostile.host}/app: " in line and "more than 1000 pages" in line
    assert len(hostile.requests) <= 1002  # the ping, 1000 pages


def test_catalog_pagination_stops_on_a_repeated_link(hostile: Hostile) -> None:
    def pages(h: BaseHTTPRequestHandler) -> None:
        nxt = "/v2/_catalog?last=b" if "last=" not in h.path else "/v2/_catalog?last=a"
        send(h, 200, b'{"repositories": ["a"]}', headers={"Link": f'<{nxt}>; rel="next"'})

    hostile.route("/v2/_catalog", pages)
    # ?last=b links to ?last=a, which links back to ?last=b: stopped with an error, not
    # (as before) a silently shortened list.
    with pytest.raises(RegistryError, match="link back to one already read"):
        basic.catalog(hostile.host, ctx=Context(credentials=lambda h: ANONYMOUS))


# --- nesting ------------------------------------------------------------------------


def test_a_deeply_nested_manifest_is_one_line(hostile: Hostile) -> None:
    body = deep_manifest()
    hostile.route("/v2/app/manifests/.*", lambda h: send(h, 200, body, mt.OCI_MANIFEST))
    line = one_line(luff("manifest", f"{hostile.host}/app:1"))
    assert line == (
        f"luff: error: {hostile.host}/app:1: manifest nested too deeply (more than 64 levels)"
    )


def test_a_deeply_nested_token_response_is_one_line(hostile: Hostile) -> None:
    _bearer(hostile)
    hostile.route("/token", lambda h: send(h, 200, b'{"token": ' + deep_json() + b"}"))
    line = one_line(luff("digest", f"{hostile.host}/app:1"))
    assert "token response nested too deeply" in line


def test_a_deeply_nested_layout_index_is_one_line(tmp_path: Path) -> None:
    d = tmp_path / "layout"
    d.mkdir()
    (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (d / "blobs" / "sha256").mkdir(parents=True)
    (d / "index.json").write_bytes(b'{"schemaVersion": 2, "manifests": ' + deep_json() + b"}")
    line = one_line(luff("ls", f"oci:{d}"))
    assert "index.json nested too deeply" in line


def test_a_deeply_nested_docker_archive_manifest_is_one_line(tmp_path: Path) -> None:
    tar = tmp_path / "img.tar"
    with tarfile.open(tar, "w") as t:
        data = deep_json()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    line = one_line(luff("ls", f"docker-archive:{tar}"))
    assert "manifest.json nested too deeply" in line and str(tar) in line


# --- a silent server ----------------------------------------------------------------


def test_a_silent_server_fails_after_the_timeout_naming_the_host() -> None:
    silent = Silent()
    try:
        p = luff("--timeout", "2", "digest", f"{silent.host}/app:1")
        line = one_line(p)
        assert silent.host in line and "timed out" in line
        # The library: one connection, no retries of a peer that never answered.
        ctx = Context(credentials=lambda h: ANONYMOUS, timeout=1, backoff=0.01)
        before = len(silent.connections)
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                basic.digest(f"{silent.host}/app:1", ctx=ctx)
            except BaseException as e:
                outcome.append(e)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(60)
        assert not t.is_alive(), "still waiting for a silent server"
        assert isinstance(outcome[0], TransportError) and "timed out" in str(outcome[0])
        assert len(silent.connections) - before == 1
    finally:
        silent.stop()


def test_gzip_bomb_fixture_is_a_bomb() -> None:
    """The test data itself: small on the wire, large once decoded."""
    bomb = gzip_bomb()
    assert len(bomb) < 2 * MiB
    d = gzip.GzipFile(fileobj=io.BytesIO(bomb))
    assert len(d.read(8 * MiB)) == 8 * MiB
