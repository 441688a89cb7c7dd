"""Review regressions for the registry client: broken bodies, redirects, bounded reads."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from luff.context import Context
from luff.copy import Copier
from luff.errors import InvalidManifest, LuffError, RegistryError, TransportError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.ops import basic
from luff.registry.auth import ANONYMOUS, Credentials
from luff.stores.layout import LayoutStore
from luff.stores.registry import RegistryStore
from luff.testing import random_image
from tests.faultproxy import FaultProxy, Rule
from tests.registries import PASSWORD, USER

BLOB = bytes(range(256)) * 64
DESC = Descriptor.for_bytes(mt.OCI_LAYER_GZIP, BLOB)


class BlobServer:
    """Serves one blob; the first *truncate* GETs send half of it and close the connection."""

    def __init__(self, truncate: int, any_digest: bool = False) -> None:
        self.truncate = truncate
        self.any_digest = any_digest  # answer every blob GET with BLOB (a lying registry)
        self.gets = 0
        self.stopped = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                # A blob HEAD without Content-Length (allowed by HTTP, seen behind proxies).
                self.send_response(200 if server.serves(self.path) else 404)
                self.end_headers()

            def do_GET(self) -> None:
                if self.path == "/v2/":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                if self.path.endswith("/manifests/huge"):
                    # Announces 1 GiB and then stalls: a client must not wait to buffer it.
                    self.send_response(200)
                    self.send_header("Content-Type", mt.OCI_MANIFEST)
                    self.send_header("Content-Length", str(1 << 30))
                    self.end_headers()
                    self.wfile.write(b"{")
                    self.wfile.flush()
                    server.stopped.wait(30)
                    self.close_connection = True
                    return
                if not server.serves(self.path):
                    self.send_error(404)
                    return
                server.gets += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(BLOB)))
                self.end_headers()
                if server.gets <= server.truncate:
                    self.wfile.write(BLOB[: len(BLOB) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(BLOB)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serves(self, path: str) -> bool:
        if self.any_digest:
            return "/blobs/sha256:" in path
        return path.endswith(f"/blobs/{DESC.digest}")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def truncating() -> Iterator[BlobServer]:
    s = BlobServer(truncate=1)
    yield s
    s.stop()


def test_a_body_always_cut_short_is_a_transport_error(ctx: Context) -> None:
    """A download that is cut again at the same byte each time it resumes gives up."""
    server = BlobServer(truncate=1000)
    try:
        src = RegistryStore(ctx.client(server.host), "cut/app")
        f = src.fetch(DESC)
        with pytest.raises(TransportError, match="connection lost while reading"):
            while f.read(1000):
                pass
        f.close()
    finally:
        server.stop()
    assert server.gets == ctx.settings.max_attempts


def test_an_oversized_manifest_is_refused_without_reading_it(
    truncating: BlobServer, ctx: Context
) -> None:
    ctx.settings.timeout = 5
    src = RegistryStore(ctx.client(truncating.host), "big/app")
    with pytest.raises(InvalidManifest, match="manifest larger than"):
        src.get_manifest("huge")


def test_blob_without_a_size_in_its_head(ctx: Context) -> None:
    server = BlobServer(truncate=0)
    try:
        with basic.blob(f"{server.host}/sizeless/app@{DESC.digest}", ctx=ctx) as f:
            assert f.read() == BLOB
    finally:
        server.stop()


def test_a_body_cut_short_is_fetched_again_into_a_layout(
    truncating: BlobServer, ctx: Context, tmp_path: Path
) -> None:
    src = RegistryStore(ctx.client(truncating.host), "cut/app")
    dst = LayoutStore.init(tmp_path / "dst")
    c = Copier(dst, ctx)
    c.add(src, DESC)
    c.execute(c.plan())
    assert truncating.gets == 2
    assert dst.blob_path(DESC.digest).read_bytes() == BLOB


def test_a_redirected_blob_put_fails_clearly_without_resending(registry: Any, ctx: Context) -> None:

    other = FaultProxy(registry.host, bind_host="localhost")
    front = FaultProxy(registry.host)
    ctx.settings.timeout = 10
    try:
        front.add(
            Rule("PUT", r"/blobs/uploads/", "redirect", target=f"http://{other.host}", times=-1)
        )
        img = random_image(size=3000)
        with pytest.raises(RegistryError, match=r"redirected \(307\).*streamed body"):
            img.push(f"{front.host}/redir/put:1", ctx)
        assert not [x for x in other.seen if x.method == "PUT"]  # never re-sent, not even empty
        puts = [x for x in front.seen if x.method == "PUT"]
        assert len(puts) <= ctx.settings.jobs  # each blob tried once, not retried
    finally:
        other.stop()
        front.stop()


def test_a_redirected_manifest_put_keeps_authorization_home(auth_registry: Any) -> None:

    upstream = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    cdn = FaultProxy(auth_registry.host, bind_host="localhost", upstream_auth=upstream)
    front = FaultProxy(auth_registry.host)
    creds = Credentials(USER, PASSWORD)
    c = Context(credentials=lambda h: creds if h == front.host else ANONYMOUS, backoff=0.01)
    try:
        front.add(Rule("PUT", r"/manifests/", "redirect", target=f"http://{cdn.host}", times=-1))
        img = random_image(size=2000)
        img.push(f"{front.host}/redir/man:1", c)
        at_cdn = [x for x in cdn.seen if x.method == "PUT" and "/manifests/" in x.path]
        assert at_cdn and all("Authorization" not in x.headers for x in at_cdn)
        assert all(x.body_len == img.manifest.size for x in at_cdn)
        assert basic.digest(f"{front.host}/redir/man:1", ctx=c).digest == img.digest
    finally:
        c.close()
        cdn.stop()
        front.stop()


def test_unverified_tls_requests_use_the_origin_form(tmp_path: Path, ctx: Context) -> None:
    """Requests to an --insecure TLS host name the path, not the absolute URL."""
    import ssl

    from tests.registries import self_signed

    lines: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            lines.append(self.requestline)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    cert, key = self_signed(tmp_path, ["127.0.0.1", "localhost"])
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = ctx.client(f"127.0.0.1:{httpd.server_address[1]}")
        assert client.ping().scheme == "https"
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert lines == ["GET /v2/ HTTP/1.1"]


def test_retry_after_as_an_http_date(registry: Any, ctx: Context) -> None:
    import email.utils
    import time

    said: list[str] = []
    ctx.settings.log = said.append
    img = random_image(size=500)
    img.push(f"{registry.host}/retry-date/app:1", ctx)
    proxy = FaultProxy(registry.host)
    try:
        when = email.utils.formatdate(time.time() + 3, usegmt=True)
        proxy.add(Rule("*", r"/manifests/", "status", status=503, headers={"Retry-After": when}))
        assert basic.digest(f"{proxy.host}/retry-date/app:1", ctx=ctx).digest == img.digest
    finally:
        proxy.stop()
    delays = [float(m.split(" in ")[1].split("s")[0]) for m in said if m.startswith("retrying")]
    assert len(delays) == 1 and delays[0] >= 1.0, said  # the date, not the 0.01 s backoff


def _run_with_deadline(fn: Any, seconds: float = 120) -> None:
    """Run *fn* in a thread; a pooled connection never given back makes it hang."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "stuck waiting for a pooled connection: one was never released"
    if errors:
        raise errors[0]


def test_no_pooled_connection_is_kept_on_any_path(
    registry: Any, registry2: Any, auth_registry: Any
) -> None:
    """One connection per host, blocking: every path must give its connection back."""
    import urllib3

    from luff.errors import AuthError, NotFound

    ctx = Context(credentials=lambda h: ANONYMOUS, backoff=0.01, jobs=1)
    ctx._pool = urllib3.PoolManager(maxsize=1, block=True, retries=False, timeout=30)
    img = random_image(layers=2, size=3000)
    missing = Descriptor.for_bytes(mt.OCI_LAYER_GZIP, b"not there")
    proxy = FaultProxy(registry.host)
    cdn = FaultProxy(registry.host, bind_host="localhost")

    def scenario() -> None:
        img.push(f"{registry.host}/pool/app:1", ctx)
        src = RegistryStore(ctx.client(registry.host), "pool/app")
        for _ in range(3):
            with pytest.raises(NotFound):
                src.resolve("nope")
            with pytest.raises(NotFound):
                src.get_manifest("nope")
            with pytest.raises(NotFound):
                src.fetch(missing)
            assert not src.exists(missing)
            with src.fetch(img.manifest.layers[0]) as f:
                f.read(10)  # closed half read
            with pytest.raises(NotFound):
                basic.blob(f"{registry.host}/pool/app@{missing.digest}", ctx=ctx)
        proxy.add(Rule("*", r"/manifests/", "status", status=503, times=2))
        proxy.add(Rule("GET", r"/blobs/", "status", status=500, times=2))
        proxy.add(Rule("GET", r"/blobs/", "redirect", target=f"http://{cdn.host}", times=-1))
        basic.copy(f"{proxy.host}/pool/app:1", f"{registry2.host}/pool/copy:1", ctx=ctx)
        basic.copy(f"{registry.host}/pool/app:1", f"{registry.host}/pool/mounted:1", ctx=ctx)
        for _ in range(3):
            with pytest.raises(AuthError):
                basic.digest(f"{auth_registry.host}/pool/app:1", ctx=ctx)
        assert basic.digest(f"{registry2.host}/pool/copy:1", ctx=ctx).digest == img.digest

    try:
        _run_with_deadline(scenario)
    finally:
        proxy.stop()
        cdn.stop()


def test_a_blob_stored_under_another_digest_is_an_error(registry: Any, ctx: Context) -> None:
    proxy = FaultProxy(registry.host)
    wrong = "sha256:" + "0" * 64
    try:
        proxy.add(
            Rule(
                "PUT",
                r"/blobs/uploads/",
                "status",
                status=201,
                headers={"Docker-Content-Digest": wrong},
                times=-1,
            )
        )
        img = random_image(size=500)
        with pytest.raises(RegistryError, match=f"registry stored the blob as {wrong}"):
            img.push(f"{proxy.host}/stored/app:1", ctx)
    finally:
        proxy.stop()


def test_an_upload_location_on_another_host_gets_no_credentials(auth_registry: Any) -> None:
    upstream = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    other = FaultProxy(auth_registry.host, bind_host="localhost", upstream_auth=upstream)
    front = FaultProxy(auth_registry.host)
    creds = Credentials(USER, PASSWORD)
    c = Context(credentials=lambda h: creds if h == front.host else ANONYMOUS, backoff=0.01)
    try:
        front.add(
            Rule(
                "POST",
                r"/blobs/uploads/$",
                "status",
                status=202,
                headers={"Location": f"http://{other.host}/v2/loc/app/blobs/uploads/elsewhere"},
                times=-1,
            )
        )
        img = random_image(size=500)
        with pytest.raises(LuffError):
            img.push(f"{front.host}/loc/app:1", c)
        puts = [x for x in other.seen if x.method == "PUT"]
        assert puts, "the absolute Location was not used"
        assert all("Authorization" not in x.headers for x in puts)
    finally:
        c.close()
        other.stop()
        front.stop()


def test_cli_blob_writes_nothing_when_the_digest_is_wrong() -> None:
    import subprocess
    import sys

    server = BlobServer(truncate=0, any_digest=True)
    lie = Digest.of(b"other content")  # the server answers with BLOB anyway
    try:
        p = subprocess.run(
            [sys.executable, "-m", "luff", "blob", f"{server.host}/lie/app@{lie}"],
            capture_output=True,
            timeout=60,
        )
    finally:
        server.stop()
    assert p.returncode == 1, p.stderr
    assert b"luff: error:" in p.stderr and b"digest" in p.stderr
    assert p.stdout == b""  # not one unverified byte


def test_a_token_server_error_is_retried(token_registry: Any, registry_kind: str) -> None:
    if registry_kind != "embedded":
        pytest.skip("only the embedded registry's token realm is reached through the proxy")
    proxy = FaultProxy(token_registry.host)
    creds = Credentials(USER, PASSWORD)
    hosts = {proxy.host, token_registry.host}
    c = Context(credentials=lambda h: creds if h in hosts else ANONYMOUS, backoff=0.01)
    try:
        img = random_image(size=500)
        img.push(f"{token_registry.host}/tok/app:1", c)
        rule = proxy.add(Rule("GET", r"^/token", "status", status=503, times=1))
        assert basic.digest(f"{proxy.host}/tok/app:1", ctx=c).digest == img.digest
        assert rule.hits == 1
    finally:
        c.close()
        proxy.stop()
