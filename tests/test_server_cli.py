"""``luff registry serve`` as a process: address on stdout, access log on stderr, errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import urllib3

from luff.context import Context
from luff.ops import basic
from luff.registry.auth import ANONYMOUS
from luff.testing import random_image

LUFF = [sys.executable, "-m", "luff"]


@contextmanager
def serve(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    p = subprocess.Popen(
        [*LUFF, "registry", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        host = p.stdout.readline().strip()
        assert host, p.stderr.read() if p.stderr else ""
        yield host, p
    finally:
        if p.poll() is None:
            p.terminate()
        p.wait(30)
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()


def anon() -> Context:
    return Context(credentials=lambda h: ANONYMOUS)


def test_serve_prints_address_logs_requests_and_stops_on_sigterm() -> None:
    with serve("--address", "127.0.0.1:0") as (host, p):
        assert host.startswith("127.0.0.1:") and int(host.rsplit(":", 1)[1]) > 0
        http = urllib3.PoolManager()
        assert http.request("GET", f"http://{host}/v2/").status == 200
        assert http.request("GET", f"http://{host}/v2/none/tags/list").status == 404
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
        assert p.stderr is not None
        err = p.stderr.read().splitlines()
    requests = [ln for ln in err if '"GET /v2/' in ln]
    assert len(requests) == 2
    assert '"GET /v2/ HTTP/1.1" 200' in requests[0]
    assert '"GET /v2/none/tags/list HTTP/1.1" 404' in requests[1]
    assert any("listening on" in ln for ln in err)


def test_serve_quiet_has_no_access_log() -> None:
    with serve("--address", "127.0.0.1:0", "--quiet") as (host, p):
        urllib3.PoolManager().request("GET", f"http://{host}/v2/")
        p.terminate()
        p.wait(30)
        assert p.stderr is not None
        assert '"GET /v2/' not in p.stderr.read()


def test_serve_storage_persists(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serve("--address", "127.0.0.1:0", "--storage", str(data), "-q") as (host, _):
        desc = random_image().push(f"{host}/keep/app:1", anon())
    with serve("--address", "127.0.0.1:0", "--storage", str(data), "-q") as (host, _):
        assert basic.digest(f"{host}/keep/app:1", ctx=anon()).digest == desc.digest
        assert basic.catalog(host, ctx=anon()) == ["keep/app"]


def test_serve_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return  # no IPv6 on this machine; nothing to test
    with serve("--address", "[::1]:0", "-q") as (host, _):
        assert host.startswith("[::1]:")
        assert urllib3.PoolManager().request("GET", f"http://{host}/v2/").status == 200


def test_serve_errors_are_one_line() -> None:
    p = subprocess.run(
        [*LUFF, "registry", "serve", "--address", "nonsense"], capture_output=True, text=True
    )
    assert p.returncode == 2
    assert p.stderr.strip() == "luff: error: invalid address 'nonsense': expected HOST:PORT"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = subprocess.run(
            [*LUFF, "registry", "serve", "--address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert p.returncode != 0
    assert p.stderr.startswith(f"luff: error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in p.stderr
    p = subprocess.run(
        [*LUFF, "registry", "serve", "--htpasswd", "/nonexistent/htpasswd"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2


def test_serve_tls_verified_by_skopeo_and_luff(tmp_path: Path) -> None:
    """--tls-cert/--tls-key serve HTTPS: skopeo verifies the certificate, luff reaches the
    loopback registry over TLS, and the token realm it advertises is https too."""
    from tests.registries import self_signed

    cert, key = self_signed(tmp_path, ["127.0.0.1"])
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(cert.read_bytes())
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    with serve("--address", "127.0.0.1:0", "--token", *tls) as (host, p):
        ctx = anon()
        desc = random_image().push(f"{host}/tls/app:1", ctx)
        assert ctx.client(host).scheme == "https"
        out = subprocess.run(
            ["skopeo", "inspect", "--cert-dir", str(certs), "--raw", f"docker://{host}/tls/app:1"],
            capture_output=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert basic.digest(f"{host}/tls/app:1", ctx=anon()).digest == desc.digest
        p.terminate()
        p.wait(30)
        assert p.stderr is not None
        err = p.stderr.read()
        assert f"listening on https://{host}" in err
        assert '"GET /token?' in err  # both clients went through the https token realm


def test_serve_tls_errors_are_one_line(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.registries import self_signed

    cert, key = self_signed(tmp_path, ["127.0.0.1"])
    locked = tmp_path / "locked.pem"
    pk = serialization.load_pem_private_key(key.read_bytes(), None)
    locked.write_bytes(
        pk.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    missing = tmp_path / "none.pem"
    for args, words in [
        (["--tls-cert", str(cert)], "needs both"),
        (["--tls-cert", str(cert), "--tls-key", str(missing)], f"{missing}: no such file"),
        (["--tls-cert", str(key), "--tls-key", str(cert)], "cannot load the TLS certificate"),
        # never a passphrase prompt, on a terminal or not
        (["--tls-cert", str(cert), "--tls-key", str(locked)], f"{locked}: the key is encrypted"),
    ]:
        p = subprocess.run(
            [*LUFF, "registry", "serve", "--address", "127.0.0.1:0", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("luff: error: ") and words in lines[0], (
            p.stderr
        )
