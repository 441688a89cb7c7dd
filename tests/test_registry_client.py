"""The registry client against real distribution registries, with and without faults."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from luff.context import Context
from luff.errors import AuthError, NotFound, RegistryError, TransportError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.ops import basic
from luff.registry import auth as authmod
from luff.registry.auth import ANONYMOUS, Credentials, parse_challenges
from luff.stores.registry import RegistryStore
from luff.testing import random_image, random_index
from tests.faultproxy import FaultProxy, Rule
from tests.registries import PASSWORD, USER, DistributionRegistry


def store(ctx: Context, host: str, repo: str) -> RegistryStore:
    return RegistryStore(ctx.client(host), repo)


@pytest.fixture
def proxy(registry: DistributionRegistry) -> Iterator[FaultProxy]:
    p = FaultProxy(registry.host)
    yield p
    p.stop()


# --- challenges and credentials -------------------------------------------------


def test_parse_challenges() -> None:
    h = 'Bearer realm="https://auth.example.com/token",service="reg",scope="repository:a/b:pull,push"'
    assert parse_challenges(h) == [
        (
            "Bearer",
            {
                "realm": "https://auth.example.com/token",
                "service": "reg",
                "scope": "repository:a/b:pull,push",
            },
        )
    ]
    assert parse_challenges('Basic realm="x"') == [("Basic", {"realm": "x"})]
    two = parse_challenges('Basic realm="a", Bearer realm="b",service="s"')
    assert [c[0] for c in two] == ["Basic", "Bearer"]
    assert two[1][1] == {"realm": "b", "service": "s"}
    assert parse_challenges('Bearer realm="q\\"uote"')[0][1]["realm"] == 'q"uote'


def _docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, obj: dict) -> Path:
    d = tmp_path / "dockercfg"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(obj))
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    return d


def test_docker_config_auths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = base64.b64encode(b"bob:pw:with:colons").decode()
    _docker_config(
        tmp_path,
        monkeypatch,
        {"auths": {"reg.example:5000": {"auth": b}, "https://index.docker.io/v1/": {"auth": b}}},
    )
    assert authmod.lookup("reg.example:5000") == Credentials("bob", "pw:with:colons")
    assert authmod.lookup("registry-1.docker.io") == Credentials("bob", "pw:with:colons")
    assert authmod.lookup("other.example") == ANONYMOUS


def test_cred_helpers_and_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, user in (("pass", "helper-user"), ("desktop", "store-user")):
        exe = bindir / f"docker-credential-{name}"
        exe.write_text(
            "#!/bin/sh\nread host\n"
            f'if [ "$host" = "none.example" ]; then echo "credentials not found" >&2; exit 1; fi\n'
            f'printf \'{{"ServerURL":"%s","Username":"{user}","Secret":"sec-%s"}}\' "$host" "$host"\n'
        )
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    _docker_config(
        tmp_path,
        monkeypatch,
        {
            "credHelpers": {"helped.example": "pass"},
            "credsStore": "desktop",
            "auths": {"none.example": {}},
        },
    )
    assert authmod.lookup("helped.example") == Credentials("helper-user", "sec-helped.example")
    assert authmod.lookup("stored.example") == Credentials("store-user", "sec-stored.example")
    assert authmod.lookup("none.example") == ANONYMOUS


def test_podman_auth_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _docker_config(
        tmp_path,
        monkeypatch,
        {"auths": {"r.example": {"auth": base64.b64encode(b"docker:x").decode()}}},
    )
    f = tmp_path / "auth.json"
    f.write_text(
        json.dumps({"auths": {"r.example": {"auth": base64.b64encode(b"podman:y").decode()}}})
    )
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(f))
    assert authmod.lookup("r.example") == Credentials("podman", "y")
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    xdg = tmp_path / "xdg-run" / "containers"
    xdg.mkdir(parents=True)
    (xdg / "auth.json").write_text(f.read_text())
    assert authmod.lookup("r.example") == Credentials("podman", "y")


def test_bad_config_is_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    with pytest.raises(AuthError, match="invalid JSON"):
        authmod.lookup("x.example")


# --- auth against real registries --------------------------------------------------


def test_basic_auth_config_file(
    auth_registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    _docker_config(tmp_path, monkeypatch, {"auths": {auth_registry.host: {"auth": b}}})
    ctx = Context()  # default credential lookup reads the config file
    img = random_image()
    img.push(f"{auth_registry.host}/cfg/basic:1", ctx)
    assert basic.digest(f"{auth_registry.host}/cfg/basic:1", ctx=ctx).digest == img.digest


def test_wrong_password(
    auth_registry: DistributionRegistry, token_registry: DistributionRegistry
) -> None:
    for reg in (auth_registry, token_registry):
        bad = Context(credentials=lambda h: Credentials(USER, "wrong"))
        with pytest.raises(AuthError) as e:
            basic.ls(f"{reg.host}/anything", ctx=bad)
        assert "\n" not in str(e.value)


def test_token_scopes(dist_token_registry: DistributionRegistry, auth_ctx: Context) -> None:
    token_registry = dist_token_registry
    ts = token_registry.token_server
    assert ts is not None
    img = random_image()
    img.push(f"{token_registry.host}/scopes/a:1", auth_ctx)
    ts.requests.clear()
    basic.copy(
        f"{token_registry.host}/scopes/a:1", f"{token_registry.host}/scopes/b:1", ctx=auth_ctx
    )
    scope_sets = [set(r["scopes"]) for r in ts.requests]
    # The mount asks for push on the target and pull on the source, as repeated scope= params.
    assert {"repository:scopes/b:pull,push", "repository:scopes/a:pull"} in scope_sets
    # Tokens are cached per scope: no scope set is asked for twice.
    keys = [tuple(sorted(r["scopes"])) for r in ts.requests]
    assert len(keys) == len(set(keys))
    assert basic.digest(f"{token_registry.host}/scopes/b:1", ctx=auth_ctx).digest == img.digest


def test_token_anonymous_pull(
    token_registry: DistributionRegistry, auth_ctx: Context, ctx: Context
) -> None:
    img = random_image()
    img.push(f"{token_registry.host}/public/app:1", auth_ctx)
    assert basic.digest(f"{token_registry.host}/public/app:1", ctx=ctx).digest == img.digest
    with pytest.raises(AuthError):
        random_image().push(f"{token_registry.host}/public/app:2", ctx)


# --- blobs ---------------------------------------------------------------------------


def test_blob_roundtrip_and_head(registry: DistributionRegistry, ctx: Context) -> None:
    s = store(ctx, registry.host, "blobs/a")
    data = os.urandom(300_000)
    d = Descriptor.for_bytes(mt.OCI_LAYER, data)
    assert not s.exists(d)
    import io

    s.push_blob(d, io.BytesIO(data))
    assert s.exists(d)
    assert s.fetch(d).read() == data


def test_chunked_upload(
    registry: DistributionRegistry, ctx: Context, monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy
) -> None:
    import io

    import luff.stores.registry as regmod

    monkeypatch.setattr(regmod, "CHUNK_SIZE", 64 * 1024)
    s = store(ctx, proxy.host, "blobs/chunked")
    data = os.urandom(200_000)
    desc = s.push_blob_unsized(mt.OCI_LAYER, io.BytesIO(data))
    assert desc.digest == Digest.of(data) and desc.size == len(data)
    assert s.fetch(desc).read() == data
    patches = [x for x in proxy.seen if x.method == "PATCH"]
    assert len(patches) == 4
    assert patches[1].headers["Content-Range"] == "65536-131071"


def test_relative_location(registry: DistributionRegistry, ctx: Context) -> None:
    p = FaultProxy(registry.host, relative_location=True)
    try:
        img = random_image(size=5000)
        img.push(f"{p.host}/rel/loc:1", ctx)
        assert basic.digest(f"{registry.host}/rel/loc:1", ctx=ctx).digest == img.digest
    finally:
        p.stop()


def test_fetch_detects_corruption(registry: DistributionRegistry, ctx: Context) -> None:
    import io

    s = store(ctx, registry.host, "blobs/corrupt")
    data = os.urandom(1000)
    real = Descriptor.for_bytes(mt.OCI_LAYER, data)
    s.push_blob(real, io.BytesIO(data))
    lying = Descriptor(mt.OCI_LAYER, real.digest, real.size + 5)
    from luff.errors import DigestMismatch

    with pytest.raises(DigestMismatch):
        s.fetch(lying).read()


def test_mount_refused_falls_back(
    registry: DistributionRegistry, ctx: Context, proxy: FaultProxy
) -> None:
    img = random_image(size=20_000)
    img.push(f"{proxy.host}/mount/src:1", ctx)
    # The proxy turns mount requests into plain upload starts, as a registry refusing mounts does.
    mounts = proxy.add(Rule("POST", r"mount=", "strip-query", times=-1))
    basic.copy(f"{proxy.host}/mount/src:1", f"{proxy.host}/mount/dst:1", ctx=ctx)
    assert basic.digest(f"{registry.host}/mount/dst:1", ctx=ctx).digest == img.digest
    assert mounts.hits == 2  # config and layer: each mount was tried, then uploaded


def test_redirect_drops_authorization(
    auth_registry: DistributionRegistry, auth_ctx: Context
) -> None:
    auth_header = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    # "localhost" is another host than "127.0.0.1" for the client: the blob "CDN".
    cdn = FaultProxy(auth_registry.host, bind_host="localhost", upstream_auth=auth_header)
    front = FaultProxy(auth_registry.host)
    try:
        img = random_image(size=10_000)
        img.push(f"{auth_registry.host}/redir/app:1", auth_ctx)
        front.add(Rule("GET", r"/blobs/sha256:", "redirect", target=f"http://{cdn.host}", times=-1))
        creds = Credentials(USER, PASSWORD)
        c = Context(credentials=lambda h: creds if h == front.host else ANONYMOUS)
        cfg = basic.config(f"{front.host}/redir/app:1", ctx=c)
        assert json.loads(cfg)["architecture"] == "amd64"
        cdn_gets = [x for x in cdn.seen if "/blobs/" in x.path]
        assert cdn_gets, "the redirect was not followed"
        assert all("Authorization" not in x.headers for x in cdn_gets)
        assert any("Authorization" in x.headers for x in front.seen)
    finally:
        cdn.stop()
        front.stop()


# --- retries --------------------------------------------------------------------------


def test_retry_after_503_and_429(
    registry: DistributionRegistry, registry2: DistributionRegistry, ctx: Context, proxy: FaultProxy
) -> None:
    img = random_index(size=2000)
    img.push(f"{registry.host}/retry/app:1", ctx)
    dst = FaultProxy(registry2.host)
    try:
        proxy.add(
            Rule("GET", r"/manifests/", "status", status=503, headers={"Retry-After": "0"}, times=2)
        )
        proxy.add(Rule("GET", r"/blobs/", "status", status=500, times=1))
        dst.add(
            Rule("HEAD", r"/blobs/", "status", status=429, headers={"Retry-After": "1"}, times=1)
        )
        dst.add(Rule("PUT", r"/manifests/", "status", status=502, times=1))
        basic.copy(f"{proxy.host}/retry/app:1", f"{dst.host}/retry/copy:1", ctx=ctx)
        assert all(r.times == 0 for r in proxy.rules + dst.rules)
    finally:
        dst.stop()
    assert basic.digest(f"{registry2.host}/retry/copy:1", ctx=ctx).digest == img.digest


def test_dropped_connections_are_retried(
    registry: DistributionRegistry, ctx: Context, proxy: FaultProxy
) -> None:
    img = random_image(size=2000)
    img.push(f"{registry.host}/drop/app:1", ctx)
    proxy.add(Rule("GET", r"/manifests/", "drop", times=1))
    proxy.add(Rule("PUT", r"/blobs/uploads/", "drop", times=1))
    basic.copy(f"{proxy.host}/drop/app:1", f"{proxy.host}/drop/copy:1", ctx=ctx)
    assert basic.digest(f"{registry.host}/drop/copy:1", ctx=ctx).digest == img.digest


def test_retries_are_bounded(
    registry: DistributionRegistry, ctx: Context, proxy: FaultProxy
) -> None:
    proxy.add(Rule("*", r"/v2/", "status", status=503, times=-1))
    with pytest.raises(RegistryError, match="UNAVAILABLE: injected fault"):
        basic.ls(f"{proxy.host}/never/app", ctx=ctx)
    assert proxy.rules[0].hits == ctx.settings.max_attempts


def test_unreachable_host(ctx: Context) -> None:
    from tests.registries import free_port

    said: list[str] = []
    ctx.settings.log = said.append
    with pytest.raises(TransportError, match="connection refused") as e:
        basic.digest(f"127.0.0.1:{free_port()}/x/y:1", ctx=ctx)
    # Nothing listens there: retrying cannot help, so the error comes at once.
    assert not e.value.retryable
    assert not [m for m in said if "retrying" in m]


# --- manifests, listing, errors ---------------------------------------------------------


def test_manifest_exact_bytes_and_content_type(
    registry: DistributionRegistry, ctx: Context
) -> None:
    from luff.model.manifest import Manifest

    s = store(ctx, registry.host, "man/exact")
    cfg = s.push_blob_unsized(mt.OCI_CONFIG, __import__("io").BytesIO(b"{}"))
    raw = (
        '{   "schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",\n'
        f'"config":{json.dumps(cfg.to_dict())},  "layers":[] }}'
    ).encode()
    m = Manifest.parse(raw)
    s.push_manifest(m, "odd")
    desc, got = s.get_manifest("odd")
    assert got.data == raw and desc.digest == Digest.of(raw)
    assert s.resolve("odd").media_type == mt.OCI_MANIFEST
    s.delete(str(desc.digest))
    with pytest.raises(NotFound, match="manifest unknown"):
        s.resolve(str(desc.digest))


def test_tags_and_catalog_pagination(
    registry: DistributionRegistry, ctx: Context, proxy: FaultProxy
) -> None:
    img = random_image(size=100)
    names = [f"t{i:02d}" for i in range(7)]
    for t in names:
        img.push(f"{registry.host}/pages/app:{t}", ctx)
    for i in range(3):
        img.push(f"{registry.host}/pages/repo{i}:1", ctx)
    assert basic.ls(f"{registry.host}/pages/app", ctx=ctx) == names
    # distribution 2.8 pages the catalog (not tags) with n and a Link header.
    c = ctx.client(proxy.host)
    got = c.paginate("/v2/_catalog?n=2", "repositories", ("registry:catalog:*",))
    assert {"pages/app", "pages/repo0", "pages/repo1", "pages/repo2"} <= set(got)
    assert len(got) == len(set(got))
    assert sum(1 for x in proxy.seen if "/_catalog" in x.path) >= 2  # >= 4 repositories, n=2
    assert set(got) == set(basic.catalog(registry.host, ctx=ctx))


def test_error_json_is_shown(registry: DistributionRegistry, ctx: Context) -> None:
    with pytest.raises(NotFound, match="manifest unknown"):
        basic.digest(f"{registry.host}/no/such:tag", ctx=ctx)
    with pytest.raises(NotFound):
        basic.ls(f"{registry.host}/no/such", ctx=ctx)


def test_tls_registry_on_loopback(tls_registry: DistributionRegistry, ctx: Context) -> None:
    """Loopback registries start on plain HTTP and move to unverified TLS when they speak it."""
    img = random_image(size=500)
    img.push(f"{tls_registry.host}/tls/app:1", ctx)
    assert ctx.client(tls_registry.host).scheme == "https"
    other = Context(insecure={tls_registry.host}, credentials=lambda h: ANONYMOUS)
    assert basic.digest(f"{tls_registry.host}/tls/app:1", ctx=other).digest == img.digest
    p = __import__("subprocess").run(
        [
            "skopeo",
            "inspect",
            "--tls-verify=false",
            "--raw",
            f"docker://{tls_registry.host}/tls/app:1",
        ],
        capture_output=True,
        timeout=60,
    )
    assert Digest.of(p.stdout) == img.digest


def _loopback_name() -> str:
    """A name for this machine that resolves to loopback but is not 'localhost'."""
    import socket

    name = socket.gethostname()
    try:
        addr = socket.gethostbyname(name)
    except OSError:
        return ""
    return name if addr.startswith("127.") and name != "localhost" else ""


@pytest.mark.skipif(not _loopback_name(), reason="the host name does not resolve to loopback")
def test_insecure_flag_for_a_named_host(
    tls_registry: DistributionRegistry, registry: DistributionRegistry
) -> None:
    """--insecure HOST: unverified TLS, or plain HTTP when the host has no TLS."""
    name = _loopback_name()
    tls_host = f"{name}:{tls_registry.host.rsplit(':', 1)[1]}"
    plain_host = f"{name}:{registry.host.rsplit(':', 1)[1]}"
    img = random_image(size=500)
    img.push(f"{tls_registry.host}/named/app:1", Context(credentials=lambda h: ANONYMOUS))
    img.push(f"{registry.host}/named/app:1", Context(credentials=lambda h: ANONYMOUS))
    strict = Context(credentials=lambda h: ANONYMOUS, max_attempts=1)
    with pytest.raises(TransportError, match=r"TLS|certificate|SSL"):
        basic.digest(f"{tls_host}/named/app:1", ctx=strict)
    loose = Context(insecure={tls_host, plain_host}, credentials=lambda h: ANONYMOUS)
    assert basic.digest(f"{tls_host}/named/app:1", ctx=loose).digest == img.digest
    assert loose.client(tls_host).scheme == "https"
    assert basic.digest(f"{plain_host}/named/app:1", ctx=loose).digest == img.digest
    assert loose.client(plain_host).scheme == "http"


def test_a_loopback_tls_registry_that_restarts_stays_on_https(tmp_path: Path) -> None:
    """Once a loopback registry has answered over TLS, a refused connection (a restart)
    must not move the client to plain HTTP, which luff's own server hangs up on."""
    from luff.server import RegistryServer
    from tests.registries import self_signed

    cert, key = self_signed(tmp_path, ["127.0.0.1"])
    data = tmp_path / "data"
    with RegistryServer(data, address="127.0.0.1:0", tls_cert=cert, tls_key=key) as srv:
        port = srv.port
        ctx = Context(credentials=lambda h: ANONYMOUS, backoff=0.01)
        img = random_image(size=500)
        img.push(f"127.0.0.1:{port}/restart/app:1", ctx)
        assert ctx.client(f"127.0.0.1:{port}").scheme == "https"
    ctx.transport.close()
    with pytest.raises(TransportError, match="refused"):
        basic.digest(f"127.0.0.1:{port}/restart/app:1", ctx=ctx)
    with RegistryServer(data, address=f"127.0.0.1:{port}", tls_cert=cert, tls_key=key):
        assert basic.digest(f"127.0.0.1:{port}/restart/app:1", ctx=ctx).digest == img.digest
        assert ctx.client(f"127.0.0.1:{port}").scheme == "https"
