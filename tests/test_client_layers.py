"""The client's layers through their seams: one ping per host, the auth layer, and the
repository API (manifests with ETags and conditional writes, blobs, tags, referrers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from luff.context import Context
from luff.errors import NotFound, PreconditionFailed, RegistryError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.manifest import Manifest
from luff.ops import basic
from luff.registry.auth import ANONYMOUS, Credentials
from luff.registry.repository import ReferrersUnsupported, Repository
from luff.testing import random_image, random_index
from tests.conftest import Reg
from tests.faultproxy import FaultProxy, Rule
from tests.hostile import Hostile, send
from tests.registries import PASSWORD, USER


@pytest.fixture
def proxy(registry: Reg) -> Iterator[FaultProxy]:
    p = FaultProxy(registry.host)
    yield p
    p.stop()


def pings(p: FaultProxy) -> int:
    return sum(1 for x in p.seen if x.method == "GET" and x.path == "/v2/")


# --- ping -----------------------------------------------------------------------------


def test_each_host_is_pinged_at_most_once_per_context(registry: Reg, registry2: Reg) -> None:
    """The ping is lazy: a host is pinged when its first answer is a 4xx (here the 404s of
    the first pushes), at most once per context, and not at all when the first answer is a
    success (the second context)."""
    src, dst = FaultProxy(registry.host), FaultProxy(registry2.host)
    ctx = Context(credentials=lambda h: ANONYMOUS, backoff=0.01)
    try:
        idx = random_index(size=2000)
        idx.push(f"{src.host}/ping/app:1", ctx)
        basic.copy(f"{src.host}/ping/app:1", f"{dst.host}/ping/app:1", ctx=ctx)
        assert basic.ls(f"{dst.host}/ping/app", ctx=ctx) == ["1"]
        assert basic.digest(f"{dst.host}/ping/app:1", ctx=ctx).digest == idx.digest
        assert (pings(src), pings(dst)) == (1, 1)
        other = Context(credentials=lambda h: ANONYMOUS)
        basic.digest(f"{dst.host}/ping/app:1", ctx=other)
        assert pings(dst) == 1  # a new context's first answer, a 200, stands for the ping
        assert other.client(dst.host).scheme == "http"
        assert pings(dst) == 1
    finally:
        src.stop()
        dst.stop()


def test_a_failed_ping_is_not_kept(ctx: Context, proxy: FaultProxy, registry: Reg) -> None:
    random_image(size=300).push(f"{registry.host}/ping/later:1", ctx)
    proxy.add(Rule("GET", r"^/v2/$", "status", status=400, times=1))
    client = ctx.client(proxy.host)
    with pytest.raises(RegistryError, match="injected fault"):
        client.ping()
    client.ping()
    assert pings(proxy) == 2
    basic.digest(f"{proxy.host}/ping/later:1", ctx=ctx)
    assert pings(proxy) == 2


def test_a_first_answer_that_is_not_found_pings(ctx: Context, proxy: FaultProxy) -> None:
    """A 404 from a host not yet known may come from a web server that is no registry: the
    ping tells (here it is a registry, and the 404 stands)."""
    proxy.add(Rule("GET", r"^/v2/$", "status", status=400, times=1))
    with pytest.raises(RegistryError, match="injected fault"):
        basic.digest(f"{proxy.host}/ping/missing:1", ctx=ctx)
    with pytest.raises(NotFound, match="manifest unknown"):
        basic.digest(f"{proxy.host}/ping/missing:1", ctx=ctx)
    assert pings(proxy) == 2


def test_a_web_server_is_not_taken_for_a_registry() -> None:
    import subprocess
    import sys

    web = Hostile()
    web.route("/v2/", lambda h: send(h, 404, b"<html>nothing here</html>", "text/html"))
    try:
        p = subprocess.run(
            [sys.executable, "-m", "luff", "digest", f"{web.host}/app:1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        web.stop()
    assert p.returncode == 1
    assert p.stderr == (
        f"luff: error: {web.host}: does not look like an OCI registry "
        "(GET /v2/ answered 404 text/html)\n"
    )


# --- auth -----------------------------------------------------------------------------


def test_a_new_challenge_fetches_a_new_token(dist_token_registry: Reg, auth_ctx: Context) -> None:
    """A 401 naming a scope (insufficient_scope) gets a token for it, and the request
    goes through; the token of the ping's challenge is not reused blindly."""
    ts = dist_token_registry.token_server
    assert ts is not None
    img = random_image(size=500)
    img.push(f"{dist_token_registry.host}/scope/app:1", auth_ctx)
    front = FaultProxy(dist_token_registry.host)
    creds = Credentials(USER, PASSWORD)
    c = Context(credentials=lambda h: creds if h == front.host else ANONYMOUS, backoff=0.01)
    try:
        challenge = (
            f'Bearer realm="{ts.realm}",service="luff-test-registry",'
            'scope="repository:scope/app:pull",error="insufficient_scope"'
        )
        rule = front.add(
            Rule(
                "HEAD",
                r"/manifests/",
                "status",
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        )
        c.client(front.host).ping()  # learn the registry's challenge first
        before = len(ts.requests)
        assert basic.digest(f"{front.host}/scope/app:1", ctx=c).digest == img.digest
        assert rule.hits == 1
        asked = [r["scopes"] for r in ts.requests[before:]]
        assert ["repository:scope/app:pull"] in asked
        assert len(asked) == 2  # the first token, then the fresh one after the 401
    finally:
        c.close()
        front.stop()


# --- the repository API ----------------------------------------------------------------


def test_manifests_carry_their_etag_and_writes_can_be_conditional(
    registry: Reg, ctx: Context, proxy: FaultProxy
) -> None:
    img = random_image(size=400)
    img.push(f"{registry.host}/cond/app:1", ctx)
    repo = Repository(ctx.client(proxy.host), "cond/app")
    head, got = repo.head_manifest("1"), repo.get_manifest("1")
    assert head.etag and head.etag == got.etag
    assert got.data == img.manifest.data and head.size == len(got.data)
    assert head.media_type == mt.OCI_MANIFEST and head.digest == str(img.digest)

    repo.put_manifest("2", img.manifest.data, mt.OCI_MANIFEST, if_none_match="*")
    repo.put_manifest("2", img.manifest.data, mt.OCI_MANIFEST, if_match=head.etag)
    puts = [x for x in proxy.seen if x.method == "PUT"]
    assert puts[0].headers.get("If-None-Match") == "*"
    assert puts[1].headers.get("If-Match") == head.etag
    # A registry that finds the condition false answers 412.
    proxy.add(Rule("PUT", r"/manifests/", "status", status=412, times=1))
    with pytest.raises(PreconditionFailed) as e:
        repo.put_manifest("2", img.manifest.data, mt.OCI_MANIFEST, if_match='"stale"')
    assert e.value.status == 412 and e.value.where == f"{proxy.host}/cond/app:2"


def test_blobs_and_tags_through_the_repository(registry: Reg, ctx: Context) -> None:
    img = random_image(size=3000)
    img.push(f"{registry.host}/repo/app:1", ctx)
    img.push(f"{registry.host}/repo/app:2", ctx)
    repo = Repository(ctx.client(registry.host), "repo/app")
    layer = img.manifest.layers[0]
    assert repo.head_blob(layer.digest) == layer.size
    with repo.get_blob(layer.digest) as f:
        assert len(f.read()) == layer.size
    assert repo.tags() == ["1", "2"]
    assert repo.manifest_exists(img.digest) and repo.blob_exists(layer.digest)
    missing = "sha256:" + "0" * 64
    assert not repo.blob_exists(missing)
    with pytest.raises(NotFound, match="manifest unknown"):
        repo.head_manifest(missing)


def _referrer(subject: Descriptor, artifact_type: str) -> Manifest:
    empty = Descriptor.for_bytes("application/vnd.oci.empty.v1+json", b"{}")
    return Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": empty.to_dict(),
            "layers": [empty.to_dict()],
            "subject": subject.to_dict(),
        }
    )


def test_referrers(registry: Reg, registry_kind: str, ctx: Context) -> None:
    img = random_image(size=300)
    img.push(f"{registry.host}/refs/app:1", ctx)
    repo = Repository(ctx.client(registry.host), "refs/app")
    repo.upload(Descriptor.for_bytes("application/vnd.oci.empty.v1+json", b"{}").digest, 2, b"{}")
    sig = _referrer(img.manifest.descriptor(), "application/vnd.example.sig")
    sbom = _referrer(img.manifest.descriptor(), "application/vnd.example.sbom")
    for m in (sig, sbom):
        repo.put_manifest(str(m.digest), m.data, m.media_type)
    if registry_kind == "distribution":
        # distribution 2.8 has no referrers API: the caller falls back to the tag schema.
        with pytest.raises(ReferrersUnsupported):
            repo.referrers(img.digest)
        return
    found = repo.referrers(img.digest)
    assert {d.digest for d in found} == {sig.digest, sbom.digest}
    only = repo.referrers(img.digest, "application/vnd.example.sbom")
    assert [d.digest for d in only] == [sbom.digest]
    assert repo.referrers("sha256:" + "1" * 64) == []


def test_referrers_pages_are_followed_and_filtered_here(ctx: Context) -> None:
    """Pages linked with Link are merged; a registry that did not apply the artifactType
    filter (no OCI-Filters-Applied) is filtered here."""
    d = "sha256:" + "a" * 64

    def entry(n: int, at: str) -> dict[str, object]:
        return {
            "mediaType": mt.OCI_MANIFEST,
            "digest": "sha256:" + f"{n:x}" * 64,
            "size": 10,
            "artifactType": at,
        }

    def pages(h: BaseHTTPRequestHandler) -> None:
        second = "page=2" in h.path
        body = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [entry(2, "x/sbom"), entry(3, "x/sig")] if second else [entry(1, "x/sig")],
        }
        headers = {} if second else {"Link": f'</v2/app/referrers/{d}?page=2>; rel="next"'}
        send(h, 200, json.dumps(body).encode(), mt.OCI_INDEX, headers)

    web = Hostile()
    web.route(f"/v2/app/referrers/{d}", pages)
    try:
        repo = Repository(ctx.client(web.host), "app")
        assert len(repo.referrers(d)) == 3
        assert [str(x.digest) for x in repo.referrers(d, "x/sig")] == [
            "sha256:" + "1" * 64,
            "sha256:" + "3" * 64,
        ]
    finally:
        web.stop()


# --- what --insecure covers -------------------------------------------------------------


def test_insecure_covers_the_host_named_not_a_token_realm_elsewhere() -> None:
    """With ``--insecure reg.internal``, requests to reg.internal skip TLS verification, but
    a token realm (or a redirect) on another host is verified: credentials sent there must
    not go to an unverified peer. The decision is read where it is made, at the transport
    (no test server here is off loopback, and loopback is never verified)."""
    from luff.context import Settings
    from luff.registry.client import RegistryClient
    from luff.registry.transport import Transport

    seen: list[tuple[str, bool]] = []

    class Recording(Transport):
        def send(self, method: str, url: str, *args: Any, verify: bool = True, **kw: Any) -> Any:
            seen.append((url, verify))
            raise ConnectionAbortedError("recorded")

    settings = Settings(insecure=["reg.internal"])
    c = RegistryClient("reg.internal", settings, Recording(settings))
    for url in (
        "https://reg.internal/v2/",
        "https://auth.example.com/token",
        "https://127.0.0.1:5000/token",
    ):
        with pytest.raises(ConnectionAbortedError):
            c._send("GET", url, {}, None)
    assert seen == [
        ("https://reg.internal/v2/", False),
        ("https://auth.example.com/token", True),
        ("https://127.0.0.1:5000/token", False),
    ]
