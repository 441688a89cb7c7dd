"""Manifest deletes: crash-safe on disk (kill -9 at each step), repair at start-up, tag-only delete."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from luff.model import mediatypes as mt
from luff.server import RegistryServer
from tests.test_server import EMPTY, EMPTY_D, Http, manifest, sha
from tests.test_server_uploads import serve

CRASHING_SERVER = """
import os, signal, sys
from luff.server import RegistryServer
from luff.server.disk import DiskStorage

crash_at = int(sys.argv[2])
calls = 0


class Crashing(DiskStorage):
    pass


def hook(name):
    orig = getattr(DiskStorage, name)

    def method(self, *args):
        global calls
        calls += 1
        if calls == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 before this step
        return orig(self, *args)

    return method


for name in ("delete_tag", "unlink_manifest", "remove_referrer", "unlink_blob", "set_tag"):
    setattr(Crashing, name, hook(name))


def ready(srv):
    print(srv.host, flush=True)


RegistryServer(Crashing(sys.argv[1]), address="127.0.0.1:0").run(on_ready=ready)
"""


def populate(store: Path) -> tuple[str, str]:
    """A base image tagged ``base`` and an artifact referring to it, tagged ``sig1`` and ``sig2``.

    Returns (base digest, artifact digest).
    """
    with RegistryServer(store, address="127.0.0.1:0") as srv:
        c = Http(srv.host)
        base, base_bytes = c.image("app", "base")
        c.push_blob("app", EMPTY)
        art = manifest(
            EMPTY_D,
            2,
            [(c.push_blob("app", b"signature"), 9)],
            subject={"mediaType": mt.OCI_MANIFEST, "digest": base, "size": len(base_bytes)},
            artifact_type="application/vnd.example.sig",
            config_type=mt.OCI_EMPTY,
        )
        for tag in ("sig1", "sig2"):
            r = c.push_manifest("app", tag, art)
            assert r.status == 201, r.data
        return base, sha(art)


def check_consistent(c: Http, base: str) -> list[str]:
    """Every listed tag and referrer answers 200; returns the tags."""
    tags = json.loads(c("GET", "/v2/app/tags/list").data)["tags"]
    for tag in tags:
        assert c("GET", f"/v2/app/manifests/{tag}").status == 200, f"tag {tag} is dangling"
    refs = json.loads(c("GET", f"/v2/app/referrers/{base}").data)["manifests"]
    for ref in refs:
        assert c("GET", f"/v2/app/manifests/{ref['digest']}").status == 200, ref
    return list(tags)


def test_kill_9_at_each_step_of_a_delete_leaves_no_dangling_tag(tmp_path: Path) -> None:
    script = tmp_path / "crashing_server.py"
    script.write_text(CRASHING_SERVER)
    finished = False
    for step in range(1, 20):
        store = tmp_path / f"store{step}"
        base, art = populate(store)
        p = subprocess.Popen(
            [sys.executable, str(script), str(store), str(step)], stdout=subprocess.PIPE
        )
        try:
            assert p.stdout is not None
            host = p.stdout.readline().decode().strip()
            try:
                status = Http(host)("DELETE", f"/v2/app/manifests/{art}").status
            except urllib3.exceptions.HTTPError:
                status = None  # killed mid-request
        finally:
            if status is not None:
                p.terminate()
            p.wait(30)
            if p.stdout is not None:
                p.stdout.close()
        if status is not None:
            assert status == 202
            finished = True
        else:
            assert p.returncode == -9
        with serve("--storage", str(store), "--quiet") as (host2, _):
            c = Http(host2)
            tags = check_consistent(c, base)
            assert "base" in tags
            # the delete can be completed (or was)
            r = c("DELETE", f"/v2/app/manifests/{art}")
            assert r.status in (202, 404)
            assert check_consistent(c, base) == ["base"]
            assert c("GET", f"/v2/app/manifests/{art}").status == 404
        if finished:
            break
    assert finished and step > 3, step


def test_restart_repairs_what_an_interrupted_delete_left(tmp_path: Path) -> None:
    """The state an interrupted delete leaves (an older luff unlinked the manifest before
    its tags and referrer entry): the restarted server lists no dangling tag or referrer."""
    store = tmp_path / "store"
    base, art = populate(store)
    hexpart = art.split(":")[1]
    (store / "repositories/app/_manifests/sha256" / hexpart).unlink()
    # and a tag whose file is unreadable
    (store / "repositories/app/_tags/junk").write_text("not a digest")
    with serve("--storage", str(store)) as (host, p):
        c = Http(host)
        assert check_consistent(c, base) == ["base"]
        assert json.loads(c("GET", f"/v2/app/referrers/{base}").data)["manifests"] == []
        assert c("GET", "/v2/app/manifests/sig1").status == 404
        p.terminate()
        p.wait(30)
        assert p.stderr is not None
        log = p.stderr.read().decode().splitlines()
    repaired = [line for line in log if line.startswith("luff registry: repaired")]
    assert len(repaired) == 4, log  # sig1, sig2, junk, the referrer entry
    assert any(f"app:sig1: its manifest {art} is missing" in line for line in repaired)
    assert any(f"referrer {art} of app@{base}" in line for line in repaired)
    # nothing left to repair the next time
    with RegistryServer(store, address="127.0.0.1:0") as srv:
        assert srv.repairs == []


@pytest.fixture(params=["memory", "disk"])
def http(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Http]:
    storage = None if request.param == "memory" else tmp_path / "store"
    with RegistryServer(storage, address="127.0.0.1:0") as srv:
        yield Http(srv.host)


def test_delete_by_tag_removes_only_the_tag(http: Http) -> None:
    """OCI 1.1: DELETE /v2/NAME/manifests/TAG removes the tag, not the manifest."""
    d, data = http.image("td", "one")
    assert http.push_manifest("td", "two", data).status == 201
    r = http("DELETE", "/v2/td/manifests/one")
    assert r.status == 202
    assert http("GET", "/v2/td/manifests/one").status == 404
    assert http("GET", "/v2/td/manifests/two").data == data
    assert http("GET", f"/v2/td/manifests/{d}").data == data
    assert json.loads(http("GET", "/v2/td/tags/list").data)["tags"] == ["two"]
    assert http("DELETE", "/v2/td/manifests/one").status == 404
    # deleting by digest then takes the remaining tags with it
    assert http("DELETE", f"/v2/td/manifests/{d}").status == 202
    assert json.loads(http("GET", "/v2/td/tags/list").data)["tags"] == []
