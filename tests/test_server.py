"""The embedded registry against the distribution API, over real HTTP (urllib3).

Every test runs against both storages (memory and a directory).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from luff.model import mediatypes as mt
from luff.server import RegistryServer
from luff.server.disk import DiskStorage

EMPTY = b"{}"
EMPTY_D = "sha256:" + hashlib.sha256(EMPTY).hexdigest()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Http:
    """A tiny client for one server: absolute paths, JSON errors, bytes bodies."""

    def __init__(self, host: str, headers: dict[str, str] | None = None) -> None:
        self.base = f"http://{host}"
        self.pool = urllib3.PoolManager(retries=False, timeout=30)
        self.headers = headers or {}

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> urllib3.BaseHTTPResponse:
        url = path if path.startswith("http") else self.base + path
        return self.pool.request(
            method,
            url,
            body=body,
            headers={**self.headers, **(headers or {})},
            redirect=False,
            **kw,
        )

    def push_blob(self, repo: str, data: bytes) -> str:
        d = sha(data)
        r = self("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", body=data)
        assert r.status == 201, r.data
        return d

    def push_manifest(
        self, repo: str, ref: str, obj: dict[str, Any] | bytes, media: str = mt.OCI_MANIFEST
    ) -> urllib3.BaseHTTPResponse:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        return self(
            "PUT", f"/v2/{repo}/manifests/{ref}", body=data, headers={"Content-Type": media}
        )

    def image(self, repo: str, tag: str, layer: bytes = b"layer") -> tuple[str, bytes]:
        """Push a small image; returns (digest, manifest bytes)."""
        cfg = self.push_blob(repo, b'{"architecture":"amd64","os":"linux"}')
        lay = self.push_blob(repo, layer)
        m = manifest(cfg, 37, [(lay, len(layer))])
        r = self.push_manifest(repo, tag, m)
        assert r.status == 201, r.data
        return r.headers["Docker-Content-Digest"], m


def manifest(
    cfg: str,
    cfg_size: int,
    layers: list[tuple[str, int]],
    *,
    subject: dict[str, Any] | None = None,
    artifact_type: str = "",
    config_type: str = mt.OCI_CONFIG,
) -> bytes:
    obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": cfg, "size": cfg_size},
        "layers": [{"mediaType": mt.OCI_LAYER, "digest": d, "size": n} for d, n in layers],
    }
    if artifact_type:
        obj["artifactType"] = artifact_type
    if subject:
        obj["subject"] = subject
    # Unusual whitespace: the registry must keep these exact bytes.
    return json.dumps(obj, indent=3).encode() + b"\n\n"


def error_code(r: urllib3.BaseHTTPResponse) -> str:
    return str(json.loads(r.data)["errors"][0]["code"])


@pytest.fixture(params=["memory", "disk"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryServer]:
    storage = None if request.param == "memory" else tmp_path / "store"
    with RegistryServer(storage, address="127.0.0.1:0") as srv:
        yield srv


@pytest.fixture
def http(server: RegistryServer) -> Http:
    return Http(server.host)


# --- basics ------------------------------------------------------------------


def test_ping(http: Http) -> None:
    r = http("GET", "/v2/")
    assert r.status == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_unknown_route_and_method(http: Http) -> None:
    assert http("GET", "/nope").status == 404
    r = http("POST", "/v2/app/manifests/latest")
    assert r.status == 405
    assert error_code(r) == "UNSUPPORTED"


def test_invalid_name_and_digest(http: Http) -> None:
    r = http("GET", "/v2/Upper/Case/tags/list")
    assert (r.status, error_code(r)) == (400, "NAME_INVALID")
    r = http("HEAD", "/v2/app/blobs/sha256:abc")
    assert r.status == 400
    r = http("GET", "/v2/app/blobs/sha256:abc")
    assert error_code(r) == "DIGEST_INVALID"


# --- blobs -----------------------------------------------------------------------


def test_monolithic_post_put_and_get(http: Http) -> None:
    data = bytes(range(256)) * 40
    d = sha(data)
    r = http("POST", "/v2/app/blobs/uploads/")
    assert r.status == 202
    loc = r.headers["Location"]
    assert r.headers["Docker-Upload-UUID"] in loc
    r = http(
        "PUT",
        f"{loc}?digest={d}",
        body=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status == 201, r.data
    assert r.headers["Docker-Content-Digest"] == d
    assert r.headers["Location"] == f"/v2/app/blobs/{d}"
    h = http("HEAD", f"/v2/app/blobs/{d}")
    assert h.status == 200
    assert h.headers["Content-Length"] == str(len(data))
    assert h.headers["Docker-Content-Digest"] == d
    assert h.data == b""
    g = http("GET", f"/v2/app/blobs/{d}")
    assert g.status == 200
    assert g.data == data


def test_single_post_with_digest(http: Http) -> None:
    d = http.push_blob("one/shot", b"hello world")
    assert http("GET", f"/v2/one/shot/blobs/{d}").data == b"hello world"


def test_blob_range(http: Http) -> None:
    data = b"0123456789" * 100
    d = http.push_blob("app", data)
    r = http("GET", f"/v2/app/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status == 206
    assert r.data == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = http("GET", f"/v2/app/blobs/{d}", headers={"Range": "bytes=990-"})
    assert (r.status, r.data) == (206, data[990:])
    r = http("GET", f"/v2/app/blobs/{d}", headers={"Range": "bytes=-5"})
    assert (r.status, r.data) == (206, data[-5:])
    r = http("GET", f"/v2/app/blobs/{d}", headers={"Range": "bytes=5000-6000"})
    assert r.status == 416


def test_blob_unknown_and_not_shared_between_repositories(http: Http) -> None:
    d = http.push_blob("a", b"private")
    r = http("GET", f"/v2/b/blobs/{d}")
    assert (r.status, error_code(r)) == (404, "BLOB_UNKNOWN")
    assert http("HEAD", f"/v2/b/blobs/{d}").status == 404


def test_digest_mismatch_is_rejected(http: Http) -> None:
    wrong = sha(b"something else")
    r = http("POST", f"/v2/app/blobs/uploads/?digest={wrong}", body=b"actual bytes")
    assert (r.status, error_code(r)) == (400, "DIGEST_INVALID")
    assert http("HEAD", f"/v2/app/blobs/{wrong}").status == 404
    loc = http("POST", "/v2/app/blobs/uploads/").headers["Location"]
    r = http("PUT", f"{loc}?digest={wrong}", body=b"actual bytes")
    assert (r.status, error_code(r)) == (400, "DIGEST_INVALID")
    # the failed upload is gone
    assert http("GET", loc).status == 404


def test_sha512_digest(http: Http) -> None:
    data = b"sha512 content"
    d = "sha512:" + hashlib.sha512(data).hexdigest()
    r = http("POST", f"/v2/app/blobs/uploads/?digest={d}", body=data)
    assert r.status == 201, r.data
    assert http("GET", f"/v2/app/blobs/{d}").data == data


def test_chunked_upload(http: Http) -> None:
    data = b"abcdefghij" * 1000
    d = sha(data)
    r = http("POST", "/v2/app/blobs/uploads/")
    loc = r.headers["Location"]
    for start in range(0, len(data), 3000):
        chunk = data[start : start + 3000]
        r = http(
            "PATCH",
            loc,
            body=chunk,
            headers={
                "Content-Range": f"{start}-{start + len(chunk) - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert r.status == 202, r.data
        assert r.headers["Range"] == f"0-{start + len(chunk) - 1}"
        loc = r.headers["Location"]
    s = http("GET", loc)
    assert s.status == 204
    assert s.headers["Range"] == f"0-{len(data) - 1}"
    # a chunk that does not continue at the current offset
    r = http("PATCH", loc, body=b"zz", headers={"Content-Range": "5-6"})
    assert r.status == 416
    r = http("PUT", f"{loc}?digest={d}")
    assert r.status == 201, r.data
    assert http("GET", f"/v2/app/blobs/{d}").data == data


def test_streamed_patch_without_content_range(http: Http) -> None:
    """What skopeo does: PATCH with a chunked-encoded body, then PUT with no body."""
    parts = [b"x" * 70000, b"y" * 5, b"z" * 100000]
    data = b"".join(parts)
    loc = http("POST", "/v2/app/blobs/uploads/").headers["Location"]
    r = http("PATCH", loc, body=iter(parts), chunked=True)
    assert r.status == 202
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = http("PUT", r.headers["Location"] + f"?digest={sha(data)}")
    assert r.status == 201
    assert http("GET", f"/v2/app/blobs/{sha(data)}").data == data


def test_final_chunk_in_put(http: Http) -> None:
    data = b"first-second"
    loc = http("POST", "/v2/app/blobs/uploads/").headers["Location"]
    r = http("PATCH", loc, body=data[:6], headers={"Content-Range": "0-5"})
    r = http(
        "PUT",
        r.headers["Location"] + f"?digest={sha(data)}",
        body=data[6:],
        headers={"Content-Range": "6-11"},
    )
    assert r.status == 201, r.data


def test_cancel_upload(http: Http) -> None:
    loc = http("POST", "/v2/app/blobs/uploads/").headers["Location"]
    http("PATCH", loc, body=b"abc")
    assert http("DELETE", loc).status == 204
    r = http("GET", loc)
    assert (r.status, error_code(r)) == (404, "BLOB_UPLOAD_UNKNOWN")
    r = http("PATCH", loc, body=b"abc")
    assert r.status == 404


def test_upload_belongs_to_its_repository(http: Http) -> None:
    loc = http("POST", "/v2/one/blobs/uploads/").headers["Location"]
    other = loc.replace("/v2/one/", "/v2/two/")
    assert http("GET", other).status == 404


def test_put_without_digest(http: Http) -> None:
    loc = http("POST", "/v2/app/blobs/uploads/").headers["Location"]
    r = http("PUT", loc, body=b"abc")
    assert (r.status, error_code(r)) == (400, "DIGEST_INVALID")


def test_cross_repository_mount(http: Http) -> None:
    d = http.push_blob("src/app", b"shared layer")
    r = http("POST", f"/v2/dst/app/blobs/uploads/?mount={d}&from=src/app")
    assert r.status == 201
    assert r.headers["Location"] == f"/v2/dst/app/blobs/{d}"
    assert http("GET", f"/v2/dst/app/blobs/{d}").data == b"shared layer"
    # from a repository that lacks it: an ordinary upload session instead
    r = http("POST", f"/v2/third/blobs/uploads/?mount={d}&from=nowhere")
    assert r.status == 202
    assert "/v2/third/blobs/uploads/" in r.headers["Location"]
    assert http("HEAD", f"/v2/third/blobs/{d}").status == 404


def test_delete_blob(http: Http) -> None:
    d = http.push_blob("app", b"to delete")
    assert http("DELETE", f"/v2/app/blobs/{d}").status == 202
    assert http("HEAD", f"/v2/app/blobs/{d}").status == 404
    assert http("DELETE", f"/v2/app/blobs/{d}").status == 404


# --- manifests ----------------------------------------------------------------


def test_manifest_exact_bytes_by_tag_and_digest(http: Http) -> None:
    d, data = http.image("app", "v1")
    assert d == sha(data)
    for ref in ("v1", d):
        r = http("GET", f"/v2/app/manifests/{ref}", headers={"Accept": mt.ACCEPT})
        assert r.status == 200
        assert r.data == data
        assert r.headers["Content-Type"] == mt.OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == d
        h = http("HEAD", f"/v2/app/manifests/{ref}")
        assert h.status == 200
        assert h.headers["Content-Length"] == str(len(data))
        assert h.headers["Docker-Content-Digest"] == d
        assert h.headers["Content-Type"] == mt.OCI_MANIFEST


def test_manifest_without_media_type_field_keeps_content_type(http: Http) -> None:
    cfg = http.push_blob("app", b"{}")
    obj = {
        "schemaVersion": 2,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": cfg, "size": 2},
        "layers": [],
    }
    r = http.push_manifest("app", "bare", obj)
    assert r.status == 201, r.data
    assert http("GET", "/v2/app/manifests/bare").headers["Content-Type"] == mt.OCI_MANIFEST


def test_manifest_unknown(http: Http) -> None:
    http.image("app", "v1")
    r = http("GET", "/v2/app/manifests/v2")
    assert (r.status, error_code(r)) == (404, "MANIFEST_UNKNOWN")
    r = http("GET", f"/v2/app/manifests/{sha(b'x')}")
    assert (r.status, error_code(r)) == (404, "MANIFEST_UNKNOWN")
    r = http("GET", "/v2/never/pushed/manifests/latest")
    assert r.status == 404
    assert error_code(r) in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("tag", [".INVALID_MANIFEST_NAME", "-dash", "a" * 129, "%25"])
def test_manifest_with_an_invalid_tag_is_unknown(http: Http, tag: str) -> None:
    """No manifest has an invalid tag: GET/HEAD answer 404 MANIFEST_UNKNOWN, not 400."""
    http.image("app", "v1")
    r = http("GET", f"/v2/app/manifests/{tag}")
    assert (r.status, error_code(r)) == (404, "MANIFEST_UNKNOWN")
    assert http("HEAD", f"/v2/app/manifests/{tag}").status == 404
    assert http("DELETE", f"/v2/app/manifests/{tag}").status == 404
    # a PUT to an invalid tag is still a malformed request
    _, data = http.image("app", "v2")
    assert http.push_manifest("app", tag, data).status == 400


def test_manifest_put_by_digest_must_match(http: Http) -> None:
    _, data = http.image("app", "v1")
    r = http.push_manifest("app", sha(data), data)
    assert r.status == 201
    r = http.push_manifest("app", sha(b"other"), data)
    assert (r.status, error_code(r)) == (400, "DIGEST_INVALID")


def test_manifest_with_missing_blob_is_rejected(http: Http) -> None:
    cfg = http.push_blob("app", EMPTY)
    missing = sha(b"never pushed")
    r = http.push_manifest("app", "bad", manifest(cfg, 2, [(missing, 12)]))
    assert (r.status, error_code(r)) == (400, "MANIFEST_BLOB_UNKNOWN")
    assert missing in r.data.decode()
    # a blob in another repository does not count
    other = http.push_blob("other", b"elsewhere")
    r = http.push_manifest("app", "bad", manifest(cfg, 2, [(other, 9)]))
    assert (r.status, error_code(r)) == (400, "MANIFEST_BLOB_UNKNOWN")
    assert http("GET", "/v2/app/manifests/bad").status == 404


def test_index_with_missing_child_is_rejected(http: Http) -> None:
    d, data = http.image("app", "v1")
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": d, "size": len(data)},
            {"mediaType": mt.OCI_MANIFEST, "digest": sha(b"absent"), "size": 10},
        ],
    }
    r = http.push_manifest("app", "idx", index, mt.OCI_INDEX)
    assert (r.status, error_code(r)) == (400, "MANIFEST_BLOB_UNKNOWN")
    index["manifests"] = index["manifests"][:1]  # type: ignore[index]
    r = http.push_manifest("app", "idx", index, mt.OCI_INDEX)
    assert r.status == 201, r.data


def test_invalid_manifests(http: Http) -> None:
    r = http.push_manifest("app", "x", b"not json")
    assert (r.status, error_code(r)) == (400, "MANIFEST_INVALID")
    r = http.push_manifest("app", "x", {"schemaVersion": 1, "name": "app"}, mt.DOCKER_SCHEMA1)
    assert (r.status, error_code(r)) == (400, "MANIFEST_INVALID")
    r = http.push_manifest("app", "bad tag!", b"{}")
    assert r.status in (400, 404)
    cfg = http.push_blob("app", EMPTY)
    body = manifest(cfg, 2, [])
    r = http.push_manifest("app", "x", body, mt.DOCKER_MANIFEST)  # Content-Type disagrees
    assert (r.status, error_code(r)) == (400, "MANIFEST_INVALID")


def test_manifest_too_large(http: Http) -> None:
    cfg = http.push_blob("app", EMPTY)
    obj = json.loads(manifest(cfg, 2, []))
    obj["annotations"] = {"pad": "x" * (4 * 1024 * 1024)}
    r = http.push_manifest("app", "big", obj)
    assert r.status == 413
    # also without a Content-Length (chunked body)
    data = json.dumps(obj).encode()
    r = http(
        "PUT",
        "/v2/app/manifests/big",
        body=iter([data[:1000], data[1000:]]),
        chunked=True,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert r.status == 413


def test_delete_manifest_by_digest_and_tag(http: Http) -> None:
    d, _ = http.image("app", "v1")
    r = http.push_manifest("app", "v2", http("GET", "/v2/app/manifests/v1").data)
    assert r.status == 201
    r = http("PUT", "/v2/app/manifests/v3", body=b"", headers={"Content-Type": mt.OCI_MANIFEST})
    assert r.status == 400
    assert http("DELETE", "/v2/app/manifests/v2").status == 202  # untag only
    assert http("GET", "/v2/app/manifests/v2").status == 404
    assert http("GET", "/v2/app/manifests/v1").status == 200
    assert http("DELETE", f"/v2/app/manifests/{d}").status == 202
    assert http("GET", f"/v2/app/manifests/{d}").status == 404
    assert http("GET", "/v2/app/manifests/v1").status == 404  # its tags went too
    assert http("DELETE", f"/v2/app/manifests/{d}").status == 404


def test_docker_media_types(http: Http) -> None:
    cfg = http.push_blob("dock", b"{}")
    lay = http.push_blob("dock", b"layer")
    obj = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "digest": cfg, "size": 2},
        "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP, "digest": lay, "size": 5}],
    }
    r = http.push_manifest("dock", "1", obj, mt.DOCKER_MANIFEST)
    assert r.status == 201
    assert http("GET", "/v2/dock/manifests/1").headers["Content-Type"] == mt.DOCKER_MANIFEST


# --- listing ---------------------------------------------------------------------


def _link_next(r: urllib3.BaseHTTPResponse) -> str | None:
    link = r.headers.get("Link")
    if not link:
        return None
    return link[link.index("<") + 1 : link.index(">")]


def test_tags_list_paginated(http: Http) -> None:
    _, data = http.image("app", "a")
    names = ["a", "b", "c", "d", "e"]
    for t in names[1:]:
        assert http.push_manifest("app", t, data).status == 201
    r = http("GET", "/v2/app/tags/list")
    assert json.loads(r.data) == {"name": "app", "tags": names}
    assert "Link" not in r.headers
    got: list[str] = []
    path: str | None = "/v2/app/tags/list?n=2"
    pages = 0
    while path:
        r = http("GET", path)
        assert r.status == 200
        got += json.loads(r.data)["tags"]
        path = _link_next(r)
        pages += 1
    assert got == names
    assert pages == 3
    r = http("GET", "/v2/app/tags/list?n=10&last=c")
    assert json.loads(r.data)["tags"] == ["d", "e"]
    r = http("GET", "/v2/nothing/tags/list")
    assert (r.status, error_code(r)) == (404, "NAME_UNKNOWN")


def test_catalog_paginated(http: Http) -> None:
    repos = ["a/x", "b", "c/d/e"]
    for name in repos:
        http.image(name, "t")
    r = http("GET", "/v2/_catalog")
    assert json.loads(r.data)["repositories"] == repos
    r = http("GET", "/v2/_catalog?n=2")
    assert json.loads(r.data)["repositories"] == repos[:2]
    nxt = _link_next(r)
    assert nxt is not None
    assert json.loads(http("GET", nxt).data)["repositories"] == repos[2:]


# --- referrers ---------------------------------------------------------------------


def test_referrers(http: Http) -> None:
    d, data = http.image("app", "v1")
    subject = {"mediaType": mt.OCI_MANIFEST, "digest": d, "size": len(data)}
    empty = http.push_blob("app", EMPTY)
    sig = manifest(empty, 2, [], subject=subject, artifact_type="application/vnd.example.sig")
    sbom_cfg = http.push_blob("app", b'{"sbom":1}')
    sbom = manifest(sbom_cfg, 10, [], subject=subject, config_type="application/vnd.example.sbom")
    r = http.push_manifest("app", sha(sig), sig)
    assert r.status == 201
    assert r.headers["OCI-Subject"] == d
    assert http.push_manifest("app", sha(sbom), sbom).headers["OCI-Subject"] == d

    r = http("GET", f"/v2/app/referrers/{d}")
    assert r.status == 200
    assert r.headers["Content-Type"] == mt.OCI_INDEX
    idx = json.loads(r.data)
    assert idx["mediaType"] == mt.OCI_INDEX
    by_type = {m["artifactType"]: m for m in idx["manifests"]}
    assert set(by_type) == {"application/vnd.example.sig", "application/vnd.example.sbom"}
    assert by_type["application/vnd.example.sig"]["digest"] == sha(sig)
    assert by_type["application/vnd.example.sig"]["size"] == len(sig)

    r = http("GET", f"/v2/app/referrers/{d}?artifactType=application/vnd.example.sbom")
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in json.loads(r.data)["manifests"]] == [sha(sbom)]

    # deleting a referrer removes it from the list
    assert http("DELETE", f"/v2/app/manifests/{sha(sbom)}").status == 202
    r = http("GET", f"/v2/app/referrers/{d}")
    assert [m["digest"] for m in json.loads(r.data)["manifests"]] == [sha(sig)]

    # unknown subject: an empty index, not 404
    r = http("GET", f"/v2/app/referrers/{sha(b'nothing')}")
    assert (r.status, json.loads(r.data)["manifests"]) == (200, [])
    assert http("GET", "/v2/app/referrers/not-a-digest").status == 400


def test_subject_may_be_missing(http: Http) -> None:
    absent = sha(b"subject pushed later")
    empty = http.push_blob("app", EMPTY)
    art = manifest(
        empty,
        2,
        [],
        subject={"mediaType": mt.OCI_MANIFEST, "digest": absent, "size": 123},
        artifact_type="application/vnd.example.note",
    )
    r = http.push_manifest("app", sha(art), art)
    assert r.status == 201, r.data
    assert r.headers["OCI-Subject"] == absent
    r = http("GET", f"/v2/app/referrers/{absent}")
    assert [m["digest"] for m in json.loads(r.data)["manifests"]] == [sha(art)]


# --- concurrency --------------------------------------------------------------


def test_concurrent_uploads(http: Http) -> None:
    blobs = [bytes([i]) * (50000 + i) for i in range(8)]
    errors: list[BaseException] = []

    def upload(data: bytes) -> None:
        try:
            c = Http(http.base[len("http://") :])
            loc = c("POST", "/v2/conc/blobs/uploads/").headers["Location"]
            for start in range(0, len(data), 10000):
                chunk = data[start : start + 10000]
                r = c("PATCH", loc, body=chunk)
                assert r.status == 202
                loc = r.headers["Location"]
            assert c("PUT", f"{loc}?digest={sha(data)}").status == 201
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=upload, args=(b,)) for b in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for b in blobs:
        assert http("GET", f"/v2/conc/blobs/{sha(b)}").data == b


def test_a_stalled_upload_does_not_block_others(http: Http) -> None:
    release = threading.Event()
    sent_first = threading.Event()
    result: list[int] = []

    def slow_body() -> Iterator[bytes]:
        yield b"a" * 1000
        sent_first.set()
        release.wait(30)
        yield b"b" * 1000

    def slow() -> None:
        c = Http(http.base[len("http://") :])
        loc = c("POST", "/v2/slow/blobs/uploads/").headers["Location"]
        data = b"a" * 1000 + b"b" * 1000
        r = c("PUT", f"{loc}?digest={sha(data)}", body=slow_body(), chunked=True)
        result.append(r.status)

    t = threading.Thread(target=slow)
    t.start()
    try:
        assert sent_first.wait(30)
        # While the slow upload is stuck mid-body, the server serves others.
        d = http.push_blob("fast", b"fast blob")
        assert http("GET", f"/v2/fast/blobs/{d}", timeout=10).data == b"fast blob"
    finally:
        release.set()
        t.join()
    assert result == [201]


# --- storage, logging ------------------------------------------------------------


def test_disk_storage_persists_across_restarts(tmp_path: Path) -> None:
    store = tmp_path / "data"
    with RegistryServer(store, address="127.0.0.1:0") as srv:
        _, data = Http(srv.host).image("keep/me", "v1", b"persistent layer")
        Http(srv.host).push_manifest("keep/me", "v2", data)
    assert DiskStorage(store).tags("keep/me") == ["v1", "v2"]
    with RegistryServer(store, address="127.0.0.1:0") as srv:
        c = Http(srv.host)
        r = c("GET", "/v2/keep/me/manifests/v1")
        assert (r.status, r.data) == (200, data)
        assert json.loads(c("GET", "/v2/_catalog").data)["repositories"] == ["keep/me"]
        assert c("GET", f"/v2/keep/me/blobs/{sha(b'persistent layer')}").data == (
            b"persistent layer"
        )


def test_access_log_one_line_per_request() -> None:
    log = io.StringIO()
    with RegistryServer(address="127.0.0.1:0", access_log=log) as srv:
        c = Http(srv.host)
        c("GET", "/v2/")
        c.push_blob("logged", b"x")
        c("GET", "/v2/logged/blobs/sha256:" + "0" * 64)
    lines = log.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert '"GET /v2/ HTTP/1.1" 200' in lines[0]
    assert '"POST /v2/logged/blobs/uploads/?digest=' in lines[1]
    assert " 201 " in lines[1]
    assert " 404 " in lines[2]


def test_client_disconnect_mid_upload(server: RegistryServer, http: Http) -> None:
    import socket

    data = b"q" * 100
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(
            f"POST /v2/cut/blobs/uploads/?digest={sha(data)} HTTP/1.1\r\n"
            f"Host: {server.host}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data[:10]
        )
    # the server goes on serving, and the cut upload left nothing behind
    for _ in range(100):
        if not server.storage.uploads:
            break
        threading.Event().wait(0.05)
    assert server.storage.uploads == {}
    assert http("HEAD", f"/v2/cut/blobs/{sha(data)}").status == 404
    assert http("GET", "/v2/").status == 200
    d = http.push_blob("cut", data)
    assert http("GET", f"/v2/cut/blobs/{d}").data == data
