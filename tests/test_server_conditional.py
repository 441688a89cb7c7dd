"""Conditional manifest writes: ETag on GET/HEAD, If-Match / If-None-Match on PUT.

What a safe concurrent ``index append`` needs: read the tag (ETag), write the
new manifest only if the tag still points where it did, else 412.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from luff.model import mediatypes as mt
from luff.server import RegistryServer
from tests.test_server import Http, error_code, manifest


@pytest.fixture(params=["memory", "disk"])
def http(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Http]:
    storage = None if request.param == "memory" else tmp_path / "store"
    with RegistryServer(storage, address="127.0.0.1:0") as srv:
        yield Http(srv.host)


def two_manifests(http: Http, repo: str) -> tuple[bytes, bytes]:
    cfg = http.push_blob(repo, b'{"architecture":"amd64","os":"linux"}')
    a = http.push_blob(repo, b"layer a")
    b = http.push_blob(repo, b"layer b")
    return manifest(cfg, 37, [(a, 7)]), manifest(cfg, 37, [(b, 7)])


def put(http: Http, repo: str, ref: str, data: bytes, **headers: str):  # type: ignore[no-untyped-def]
    return http(
        "PUT",
        f"/v2/{repo}/manifests/{ref}",
        body=data,
        headers={"Content-Type": mt.OCI_MANIFEST, **headers},
    )


def tag_digest(http: Http, repo: str, tag: str) -> str:
    r = http("HEAD", f"/v2/{repo}/manifests/{tag}")
    assert r.status == 200
    return r.headers["Docker-Content-Digest"]


def test_get_and_head_carry_the_quoted_digest_as_etag(http: Http) -> None:
    m1, _ = two_manifests(http, "etag")
    d = put(http, "etag", "v1", m1).headers["Docker-Content-Digest"]
    for method in ("GET", "HEAD"):
        for ref in ("v1", d):
            r = http(method, f"/v2/etag/manifests/{ref}")
            assert r.headers["ETag"] == f'"{d}"', (method, ref)


def test_if_match_with_a_stale_digest_is_refused_and_changes_nothing(http: Http) -> None:
    m1, m2 = two_manifests(http, "cas")
    old = put(http, "cas", "latest", m1).headers["Docker-Content-Digest"]
    new = put(http, "cas", "other", m2).headers["Docker-Content-Digest"]
    # someone else moves the tag to m2 meanwhile
    assert put(http, "cas", "latest", m2).status == 201
    # our write, based on the stale read of m1, must fail
    r = put(http, "cas", "latest", m1, **{"If-Match": f'"{old}"'})
    assert r.status == 412, r.data
    assert error_code(r) == "PRECONDITION_FAILED"
    err = json.loads(r.data)["errors"][0]
    assert "moved" in err["message"]
    assert err["detail"]["current"] == new
    assert r.headers["ETag"] == f'"{new}"'
    assert tag_digest(http, "cas", "latest") == new


def test_if_match_with_the_current_digest_writes(http: Http) -> None:
    m1, m2 = two_manifests(http, "cas2")
    d1 = put(http, "cas2", "latest", m1).headers["Docker-Content-Digest"]
    etag = http("GET", "/v2/cas2/manifests/latest").headers["ETag"]
    r = put(http, "cas2", "latest", m2, **{"If-Match": etag})
    assert r.status == 201, r.data
    d2 = r.headers["Docker-Content-Digest"]
    assert tag_digest(http, "cas2", "latest") == d2
    # a list of etags matches when any does; * matches an existing tag
    r = put(http, "cas2", "latest", m1, **{"If-Match": f'"sha256:{"0" * 64}", "{d2}"'})
    assert r.status == 201
    assert put(http, "cas2", "latest", m2, **{"If-Match": "*"}).status == 201
    # weak etags never match If-Match (strong comparison)
    r = put(http, "cas2", "latest", m1, **{"If-Match": f'W/"{d2}"'})
    assert r.status == 412
    assert tag_digest(http, "cas2", "latest") == d2 != d1


def test_if_match_on_a_missing_tag_is_refused(http: Http) -> None:
    m1, _ = two_manifests(http, "cas3")
    r = put(http, "cas3", "absent", m1, **{"If-Match": "*"})
    assert (r.status, error_code(r)) == (412, "PRECONDITION_FAILED")
    assert http("HEAD", "/v2/cas3/manifests/absent").status == 404


def test_if_none_match_star_creates_only(http: Http) -> None:
    m1, m2 = two_manifests(http, "create")
    r = put(http, "create", "new", m1, **{"If-None-Match": "*"})
    assert r.status == 201, r.data
    d1 = r.headers["Docker-Content-Digest"]
    r = put(http, "create", "new", m2, **{"If-None-Match": "*"})
    assert (r.status, error_code(r)) == (412, "PRECONDITION_FAILED")
    assert "already exists" in json.loads(r.data)["errors"][0]["message"]
    assert tag_digest(http, "create", "new") == d1
    assert http("GET", "/v2/create/tags/list").status == 200


def test_conditional_put_by_digest(http: Http) -> None:
    m1, _ = two_manifests(http, "bydigest")
    d1 = put(http, "bydigest", "v1", m1).headers["Docker-Content-Digest"]
    r = put(http, "bydigest", d1, m1, **{"If-None-Match": "*"})
    assert r.status == 412
    assert put(http, "bydigest", d1, m1, **{"If-Match": f'"{d1}"'}).status == 201


def test_concurrent_appends_with_if_match_lose_no_update(http: Http) -> None:
    """Eight writers read-modify-write one tag; with If-Match and retries every write lands."""
    cfg = http.push_blob("race", b'{"architecture":"amd64","os":"linux"}')
    lay = http.push_blob("race", b"layer")
    base = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": cfg, "size": 37},
        "layers": [{"mediaType": mt.OCI_LAYER, "digest": lay, "size": 5}],
        "annotations": {},
    }
    assert put(http, "race", "t", json.dumps(base).encode()).status == 201
    conflicts: list[int] = []
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        c = Http(http.base[len("http://") :])
        try:
            while True:
                r = c("GET", "/v2/race/manifests/t")
                obj = json.loads(r.data)
                obj["annotations"][f"w{n}"] = "x"
                w = put(c, "race", "t", json.dumps(obj).encode(), **{"If-Match": r.headers["ETag"]})
                if w.status == 201:
                    return
                assert w.status == 412, w.data
                conflicts.append(n)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    final = json.loads(http("GET", "/v2/race/manifests/t").data)
    assert sorted(final["annotations"]) == sorted(f"w{n}" for n in range(8))
