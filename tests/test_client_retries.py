"""Faults at each step of a transfer are retried, as the policy says, through a real proxy."""

from __future__ import annotations

import email.utils
import io
import os
import time
from collections.abc import Iterator

import pytest

from luff.context import Context
from luff.errors import LuffError, RegistryError, TransportError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.ops import basic
from luff.registry.retry import RetryLater, RetryPolicy, retry_after_seconds
from luff.stores.registry import RegistryStore
from luff.testing import random_image, random_index
from tests.conftest import Reg
from tests.faultproxy import FaultProxy, Rule
from tests.test_review_registry import BLOB, DESC, BlobServer


@pytest.fixture
def proxy(registry: Reg) -> Iterator[FaultProxy]:
    p = FaultProxy(registry.host)
    yield p
    p.stop()


def _pushed(registry: Reg, ctx: Context, repo: str) -> str:
    idx = random_index(size=3000)
    idx.push(f"{registry.host}/{repo}:1", ctx)
    return str(idx.digest)


# --- the policy -----------------------------------------------------------------------


def test_the_policy_retries_what_may_pass() -> None:
    p = RetryPolicy(max_attempts=5, backoff=0.25)
    assert p.should_retry(RetryLater("busy", 429))
    assert p.should_retry(RegistryError("down", 503))
    assert not p.should_retry(RetryLater("down", 503, exhausted=True))
    for status in (400, 401, 403, 404, 405, 409, 412, 416):
        assert not p.should_retry(RegistryError("no", status))
    assert p.should_retry(TransportError("connection reset"))
    assert not p.should_retry(TransportError("connection refused", retryable=False))
    assert not p.should_retry(ValueError("not ours"))


def test_the_policy_waits_as_the_server_says_within_a_cap() -> None:
    p = RetryPolicy(max_attempts=5, backoff=0.25)
    assert 0.25 <= p.delay(1) <= 0.25 * 1.1
    assert 1.0 <= p.delay(3) <= 1.1
    assert 7 <= p.delay(1, "7") <= 7.7
    assert p.delay(1, "999999") <= p.max_delay * 1.1  # capped
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 15 < retry_after_seconds(when) <= 20
    assert retry_after_seconds("soon") == 0.0


# --- uploads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", r"/blobs/uploads/", 429),  # failed the copy at once before
        ("PUT", r"/blobs/uploads/", 503),
        ("POST", r"/blobs/uploads/$", 429),
        ("PUT", r"/manifests/", 429),
    ],
)
def test_an_upload_step_that_is_refused_for_now_is_retried(
    registry: Reg, registry2: Reg, ctx: Context, method: str, path: str, status: int
) -> None:
    digest = _pushed(registry, ctx, f"retry-up/{method.lower()}{status}")
    dst = FaultProxy(registry2.host)
    try:
        rule = dst.add(Rule(method, path, "status", status=status, times=2))
        basic.copy(
            f"{registry.host}/retry-up/{method.lower()}{status}:1",
            f"{dst.host}/retry-up/copy{method.lower()}{status}:1",
            ctx=ctx,
        )
        assert rule.hits == 2
    finally:
        dst.stop()
    got = basic.digest(f"{registry2.host}/retry-up/copy{method.lower()}{status}:1", ctx=ctx)
    assert str(got.digest) == digest


def test_an_upload_put_lost_on_the_way_back_is_sent_again(
    registry: Reg, registry2: Reg, ctx: Context
) -> None:
    """The registry stored the blob but its answer was lost: the copy goes on."""
    digest = _pushed(registry, ctx, "retry-up/lost")
    dst = FaultProxy(registry2.host)
    try:
        rule = dst.add(Rule("PUT", r"/blobs/uploads/", "drop-after", times=3))
        basic.copy(f"{registry.host}/retry-up/lost:1", f"{dst.host}/retry-up/lost:1", ctx=ctx)
        assert rule.hits == 3
    finally:
        dst.stop()
    assert str(basic.digest(f"{registry2.host}/retry-up/lost:1", ctx=ctx).digest) == digest


def test_a_refused_upload_is_not_retried(registry: Reg, ctx: Context, proxy: FaultProxy) -> None:
    """A 4xx other than 408/429 is final: one try per blob, no retry."""
    img = random_image(size=500)
    rule = proxy.add(Rule("PUT", r"/blobs/uploads/", "status", status=400, times=-1))
    with pytest.raises(RegistryError):
        img.push(f"{proxy.host}/retry-up/refused:1", ctx)
    assert 1 <= rule.hits <= 2  # config and layer, each tried once


def test_a_chunked_upload_resumes_where_the_registry_is(
    registry: Reg, ctx: Context, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PATCH whose answer is lost (the chunk arrived) is not sent again; one refused for
    now is; a final PUT whose answer is lost is taken as done when the blob is there."""
    import luff.stores.registry as regmod

    monkeypatch.setattr(regmod, "CHUNK_SIZE", 64 * 1024)
    lost = proxy.add(Rule("PATCH", r"/blobs/uploads/", "drop-after", times=1))
    busy = proxy.add(Rule("PATCH", r"/blobs/uploads/", "status", status=503, times=1))
    final = proxy.add(Rule("PUT", r"/blobs/uploads/", "drop-after", times=1))
    data = os.urandom(300_000)
    s = RegistryStore(ctx.client(proxy.host), "retry-up/chunked")
    desc = s.push_blob_unsized(mt.OCI_LAYER, io.BytesIO(data))
    assert (lost.hits, busy.hits, final.hits) == (1, 1, 1)
    assert desc.digest == Digest.of(data) and desc.size == len(data)
    direct = RegistryStore(ctx.client(registry.host), "retry-up/chunked")
    assert direct.fetch(desc).read() == data


# --- downloads ---------------------------------------------------------------------------


def test_a_manifest_cut_off_mid_body_is_read_again(
    registry: Reg, ctx: Context, proxy: FaultProxy
) -> None:
    digest = _pushed(registry, ctx, "retry-down/man")
    rule = proxy.add(Rule("GET", r"/manifests/", "cut", times=2))
    got = basic.copy(
        f"{proxy.host}/retry-down/man:1", f"{registry.host}/retry-down/man2:1", ctx=ctx
    )
    assert str(got.digest) == digest and rule.hits == 2


def test_a_request_timeout_408_is_retried(registry: Reg, ctx: Context, proxy: FaultProxy) -> None:
    digest = _pushed(registry, ctx, "retry-down/timeout")
    rule = proxy.add(Rule("GET", r"/manifests/", "status", status=408, times=2))
    got = basic.copy(
        f"{proxy.host}/retry-down/timeout:1", f"{registry.host}/retry-down/timeout2:1", ctx=ctx
    )
    assert str(got.digest) == digest and rule.hits == 2


def test_an_unknown_host_fails_at_once_without_retries() -> None:
    """No retry can make a name resolve: one error, no backoff (a retried lookup would
    take seconds; the bound here only stops a hang)."""
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "luff", "-v", "digest", "no-such-host.invalid/app:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1 and "unknown host" in p.stderr, p.stderr
    assert "retrying" not in p.stderr, p.stderr


def test_a_blob_cut_off_mid_body_resumes_with_range(
    registry: Reg, ctx: Context, proxy: FaultProxy
) -> None:
    img = random_image(size=200_000)
    img.push(f"{registry.host}/retry-down/blob:1", ctx)
    layer = img.manifest.layers[0]
    rule = proxy.add(Rule("GET", r"/blobs/sha256:", "cut", times=1))
    s = RegistryStore(ctx.client(proxy.host), "retry-down/blob")
    with s.fetch(layer) as f:
        data = f.read()
    assert Digest.of(data) == layer.digest and rule.hits == 1
    gets = [x for x in proxy.seen if x.method == "GET" and str(layer.digest) in x.path]
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    start = int(gets[1].headers["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start < layer.size  # it went on from where the cut was


def test_a_blob_cut_off_where_ranges_are_not_served_starts_over(ctx: Context) -> None:
    server = BlobServer(truncate=1)  # answers a Range request with the whole blob
    try:
        s = RegistryStore(ctx.client(server.host), "retry-down/norange")
        with s.fetch(DESC) as f:
            assert f.read() == BLOB
        assert server.gets == 2
    finally:
        server.stop()


def test_a_cut_that_is_never_repaired_is_an_error(
    registry: Reg, ctx: Context, proxy: FaultProxy
) -> None:
    img = random_image(size=50_000)
    img.push(f"{registry.host}/retry-down/never:1", ctx)
    layer = img.manifest.layers[0]
    proxy.add(Rule("GET", r"/blobs/sha256:", "cut", times=-1))
    s = RegistryStore(ctx.client(proxy.host), "retry-down/never")
    with pytest.raises(LuffError, match=r"connection (lost|closed)"), s.fetch(layer) as f:
        f.read()


def test_blob_bytes_after_a_resume_are_still_verified(ctx: Context) -> None:
    """A resumed download of the wrong content is still refused by its digest."""
    server = BlobServer(truncate=1, any_digest=True)
    lie = Descriptor(mt.OCI_LAYER_GZIP, Digest.of(b"something else"), len(BLOB))
    try:
        s = RegistryStore(ctx.client(server.host), "retry-down/lie")
        with pytest.raises(LuffError, match="does not match digest"), s.fetch(lie) as f:
            f.read()
    finally:
        server.stop()
