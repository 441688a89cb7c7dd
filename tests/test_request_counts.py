"""What luff asks a registry, counted from the embedded registry's access log.

The target of ``luff index create`` sees at most one HEAD per blob and per
manifest, then the uploads (or mounts) and the manifest PUTs; a re-run sees
one HEAD per tag and nothing else. A copy onto a target that has it already
reads the source manifest and makes one HEAD of the target: no ``/v2/``
ping, no token, nothing else.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from luff.testing import Image, Registry, random_image, random_index

_LINE = re.compile(r'"(\w+) (\S+) HTTP/[\d.]+" (\d+)')


class Logged:
    """An embedded registry whose access log the test reads."""

    def __init__(self) -> None:
        self.log = io.StringIO()
        self.reg = Registry(log=self.log).start()
        self.host = self.reg.host

    def settled(self) -> str:
        """The log, once no line was added for 0.1 s: the server writes a request's line
        after its answer went out, so the last one may still be on its way."""
        text = self.log.getvalue()
        for _ in range(50):
            time.sleep(0.1)
            now = self.log.getvalue()
            if now == text:
                break
            text = now
        return text

    def requests(self, repo: str) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` of every request to repository *repo*."""
        out = []
        for line in self.settled().splitlines():
            m = _LINE.search(line)
            if m and m[2].startswith(f"/v2/{repo}/"):
                out.append((m[1], m[2].split("?")[0], int(m[3])))
        return out

    def everything(self) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` of every request."""
        out = []
        for line in self.settled().splitlines():
            m = _LINE.search(line)
            if m:
                out.append((m[1], m[2].split("?")[0], int(m[3])))
        return out

    def clear(self) -> None:
        self.settled()  # the lines of requests already answered are in
        self.log.seek(0)
        self.log.truncate()


@pytest.fixture
def logged() -> Iterator[Logged]:
    reg = Logged()
    yield reg
    reg.reg.stop()


def luff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args], capture_output=True, text=True, timeout=120
    )


def _images(repo_prefix: str, host: str) -> list[Image]:
    imgs = [
        random_image(p, layers=2, size=500) for p in ("linux/amd64", "linux/arm64", "linux/s390x")
    ]
    for i, img in enumerate(imgs):
        img.push(f"{host}/{repo_prefix}{i}:1")
    return imgs


def _check_first_push(reqs: list[tuple[str, str, int]], imgs: list[Image]) -> None:
    blobs = {str(b.digest) for img in imgs for b in img.manifest.blobs()}
    manifests = len(imgs) + 1  # the images and the index
    heads = Counter(path for method, path, _ in reqs if method == "HEAD")
    assert all(n == 1 for n in heads.values()), heads  # nothing is asked twice
    assert len(heads) <= len(blobs) + manifests
    assert not [r for r in reqs if r[0] == "GET"]  # nothing is read back
    puts = [p for m, p, _ in reqs if m == "PUT" and "/manifests/" in p]
    assert len(puts) == manifests  # each manifest once, the index under its tag


def test_index_create_on_an_empty_target_asks_each_thing_once(logged: Logged) -> None:
    with Registry() as other:
        imgs = _images("build/app", other.host)
        # An index source too: its entries carry platforms, so their manifests are not read.
        multi = random_index(["linux/ppc64le", "linux/riscv64"], layers=2, size=500)
        multi.push(f"{other.host}/build/multi:1")
        srcs = [f"{other.host}/build/app{i}:1" for i in range(3)]
        p = luff(
            "index", "create", f"{logged.host}/rel/app:1", *srcs, f"{other.host}/build/multi:1"
        )
        assert p.returncode == 0, p.stderr
    imgs += multi.children
    reqs = logged.requests("rel/app")
    _check_first_push(reqs, imgs)
    blobs = {str(b.digest) for img in imgs for b in img.manifest.blobs()}
    uploads = [p for m, p, _ in reqs if m == "POST"]
    assert len(uploads) == len(blobs)  # one upload session per blob, no retries


def test_index_create_mounts_from_the_same_registry_and_reruns_cost_one_head(
    logged: Logged,
) -> None:
    imgs = _images("build/app", logged.host)
    srcs = [f"{logged.host}/build/app{i}:1" for i in range(3)]
    logged.clear()
    p = luff("index", "create", f"{logged.host}/rel/app:1", *srcs)
    assert p.returncode == 0, p.stderr
    reqs = logged.requests("rel/app")
    _check_first_push(reqs, imgs)
    mounts = [r for r in reqs if r[0] == "POST"]
    blobs = {str(b.digest) for img in imgs for b in img.manifest.blobs()}
    assert len(mounts) == len(blobs) and all(status == 201 for _, _, status in mounts)
    logged.clear()
    p = luff("index", "create", f"{logged.host}/rel/app:1", *srcs)
    assert p.returncode == 0, p.stderr
    assert [(m, s) for m, _, s in logged.requests("rel/app")] == [("HEAD", 200)]


@pytest.fixture
def logged2() -> Iterator[Logged]:
    reg = Logged()
    yield reg
    reg.reg.stop()


@pytest.mark.parametrize("what", ["image", "index"])
def test_a_warm_copy_reads_the_source_manifest_and_heads_the_target(
    logged: Logged, logged2: Logged, what: str
) -> None:
    src, dst = f"{logged.host}/warm/app:1", f"{logged2.host}/warm/app:1"
    img = random_image(size=500) if what == "image" else random_index(size=500)
    img.push(src)
    p = luff("copy", src, dst)
    assert p.returncode == 0, p.stderr
    logged.clear()
    logged2.clear()
    p = luff("copy", src, dst)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"{logged2.host}/warm/app@{img.digest}"
    assert logged.everything() == [("GET", "/v2/warm/app/manifests/1", 200)]
    assert logged2.everything() == [("HEAD", "/v2/warm/app/manifests/1", 200)]


def test_a_warm_copy_within_one_registry_makes_two_requests(logged: Logged) -> None:
    random_image(size=500).push(f"{logged.host}/warm/src:1")
    p = luff("copy", f"{logged.host}/warm/src:1", f"{logged.host}/warm/dst:1")
    assert p.returncode == 0, p.stderr
    logged.clear()
    p = luff("copy", f"{logged.host}/warm/src:1", f"{logged.host}/warm/dst:1")
    assert p.returncode == 0, p.stderr
    assert logged.everything() == [
        ("GET", "/v2/warm/src/manifests/1", 200),
        ("HEAD", "/v2/warm/dst/manifests/1", 200),
    ]


def test_a_warm_index_create_reads_each_source_once_and_heads_the_target(
    logged: Logged, logged2: Logged
) -> None:
    """Each source: its manifest and its config (for the platform), one GET each; the
    target: one HEAD of the tag. No ping, no token, nothing twice."""
    imgs = _images("build/app", logged.host)
    srcs = [f"{logged.host}/build/app{i}:1" for i in range(3)]
    target = f"{logged2.host}/rel/app:1"
    p = luff("index", "create", target, *srcs)
    assert p.returncode == 0, p.stderr
    logged.clear()
    logged2.clear()
    p = luff("index", "create", target, *srcs)
    assert p.returncode == 0, p.stderr
    assert logged2.everything() == [("HEAD", "/v2/rel/app/manifests/1", 200)]
    got = Counter(logged.everything())
    want = Counter()
    for i, img in enumerate(imgs):
        want[("GET", f"/v2/build/app{i}/manifests/1", 200)] += 1
        want[("GET", f"/v2/build/app{i}/blobs/{img.manifest.config.digest}", 200)] += 1
    assert got == want


def test_referrers_are_written_after_their_subject_and_the_tag_last(
    logged: Logged, logged2: Logged
) -> None:
    """Also for the root copied by tag: it is written by digest before its referrers."""
    from tests.images import cosign_signature, sbom

    idx = random_index(["linux/amd64", "linux/arm64"], size=300)
    idx.push(f"{logged.host}/signed/app:1")
    attached = [sbom(idx, seed=1), cosign_signature(idx.children[0], oci11=True)]
    attached.append(cosign_signature(attached[0], oci11=True))  # a signature on the SBOM
    for a in attached:
        a.push(f"{logged.host}/signed/app@{a.digest}")
    p = luff("copy", "--referrers", f"{logged.host}/signed/app:1", f"{logged2.host}/signed/app:1")
    assert p.returncode == 0, p.stderr
    puts = [
        path.rpartition("/")[2]
        for method, path, _ in logged2.requests("signed/app")
        if method == "PUT" and "/manifests/" in path
    ]
    assert puts[-1] == "1"  # the tag moves last
    for a in attached:
        subject = str(a.manifest.subject.digest) if a.manifest.subject else ""
        assert subject in puts and puts.index(subject) < puts.index(str(a.digest)), (a, puts)


def test_mutate_reads_each_config_once(logged: Logged) -> None:
    """An image (no index entry to list its platform): its config is read for the platform
    and edited from the same read."""
    img = random_image("linux/arm64", size=300)
    img.push(f"{logged.host}/mut/app:1")
    logged.clear()
    p = luff("mutate", f"{logged.host}/mut/app:1", "--label", "a=b", "-t", "2")
    assert p.returncode == 0, p.stderr
    config = f"/v2/mut/app/blobs/{img.manifest.config.digest}"
    assert [r for r in logged.requests("mut/app") if r[1] == config] == [("GET", config, 200)]


def test_an_only_source_that_is_an_image_has_its_config_read_once(
    logged: Logged, logged2: Logged
) -> None:
    img = random_image("linux/arm64", size=300)
    img.push(f"{logged.host}/only/app:1")
    logged.clear()
    p = luff(
        "index", "create", f"{logged2.host}/rel/app:1", f"{logged.host}/only/app:1,only=linux/arm64"
    )
    assert p.returncode == 0, p.stderr
    config = f"/v2/only/app/blobs/{img.manifest.config.digest}"
    # Read once for its platform (only= and the entry), once more to copy it across.
    assert [r for r in logged.requests("only/app") if r[1] == config] == [("GET", config, 200)] * 2
