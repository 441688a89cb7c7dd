"""Many writers, one tag: ``luff index append`` from 8 processes at once loses no entry.

On luff's registry every write is conditional (``If-Match``) and the losers
of a race re-read and re-apply. On distribution 2.8, which ignores
conditions, ``--concurrent`` bounds the read-to-write time and checks after
a window; a writer whose entry is gone at the end must have failed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from luff.context import Context
from luff.testing import Registry, random_image
from tests.faultproxy import FaultProxy, Rule
from tests.registries import DistributionRegistry

PLATFORMS = [
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/386",
    "linux/mips64le",
]
ROUNDS = 20


def luff(*args: str) -> list[str]:
    return [sys.executable, "-m", "luff", *args]


def sources(host: str) -> list[str]:
    out = []
    for p in PLATFORMS:
        name = p.replace("/", "-")
        ref = f"{host}/race/src-{name}:1"
        random_image(p, size=100).push(ref, Context())
        out.append(ref)
    return out


def race(target: str, srcs: list[str], *extra: str) -> list[tuple[int, str]]:
    procs = [
        subprocess.Popen(
            luff("index", "append", *extra, target, s),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in srcs
    ]
    return [(p.wait(timeout=300), p.communicate()[1]) for p in procs]


def platforms_at(ref: str) -> list[str]:
    out = subprocess.run(luff("manifest", ref), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return sorted(
        "/".join(
            x
            for x in (
                e["platform"]["os"],
                e["platform"]["architecture"],
                e["platform"].get("variant"),
            )
            if x
        )
        for e in doc["manifests"]
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    reg = DistributionRegistry(tmp_path_factory.mktemp("race-dist")).start()
    yield reg
    reg.stop()


def test_eight_appends_at_once_on_the_embedded_registry_lose_nothing() -> None:
    with Registry() as reg:
        srcs = sources(reg.host)
        retried = 0
        for n in range(ROUNDS):
            target = f"{reg.host}/race/rel:{n}"
            results = race(target, srcs)
            assert all(code == 0 for code, _ in results), results
            assert platforms_at(target) == sorted(PLATFORMS), n
            retried += any("retries" in err for _, err in results)
        print(f"embedded: {retried} of {ROUNDS} rounds needed retries")
        assert retried > 0  # the race was real


def test_eight_concurrent_appends_on_distribution(dist: DistributionRegistry) -> None:
    srcs = sources(dist.host)
    retried = failed = 0
    for n in range(ROUNDS):
        target = f"{dist.host}/race/rel:{n}"
        results = race(target, srcs, "--concurrent", "--concurrent-window", "2")
        have = platforms_at(target)
        for p, (code, err) in zip(PLATFORMS, results, strict=True):
            # Every entry is there, or its writer said, naming what, that it was lost.
            named = "overwrote these entries" in err or "kept moving" in err
            assert p in have or (code != 0 and named), (n, p, have, err)
            failed += code != 0
        retried += any("rounds" in err or "retries" in err for _, err in results)
    print(f"distribution: {retried} of {ROUNDS} rounds needed retries or more rounds")
    # Giving up is for writers that lose round after round, not the common case.
    assert failed <= len(PLATFORMS) * ROUNDS // 10, failed


def test_without_concurrent_distribution_may_lose_entries_silently(
    dist: DistributionRegistry,
) -> None:
    """The reason --concurrent exists: the same race without it keeps only some entries."""
    srcs = sources(dist.host)
    lost = 0
    for n in range(3):
        target = f"{dist.host}/race/plain:{n}"
        results = race(target, srcs)
        assert all(code == 0 for code, _ in results)
        lost += len(PLATFORMS) - len(platforms_at(target))
    print(f"plain appends on distribution lost {lost} of {3 * len(PLATFORMS)} entries")
    assert lost > 0  # else the race above proves nothing


def test_an_interrupted_writer_leaves_a_complete_index(tmp_path: Path) -> None:
    """A writer that keeps losing the race (412 after 412) is stopped mid-retry: the tag
    still points at a complete index."""
    with Registry() as reg:
        base = random_image("linux/amd64", size=100)
        base.push(f"{reg.host}/race/stop:1", Context())
        new = random_image("linux/arm64", size=100)
        new.push(f"{reg.host}/race/new:1", Context())
        proxy = FaultProxy(reg.host)
        try:
            proxy.add(Rule("PUT", r"/manifests/1$", "status", status=412, times=-1))
            p = subprocess.Popen(
                luff(
                    "-v", "index", "append", f"{proxy.host}/race/stop:1", f"{proxy.host}/race/new:1"
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 60
            while not any(r.hits >= 2 for r in proxy.rules) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proxy.rules[0].hits >= 2  # it is retrying
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=60)
            assert p.returncode == 128 + signal.SIGTERM, err
        finally:
            proxy.stop()
        check = subprocess.run(
            luff("verify", f"{reg.host}/race/stop:1"), capture_output=True, text=True, timeout=60
        )
        assert check.returncode == 0, check.stdout + check.stderr
        digest = subprocess.run(
            luff("digest", f"{reg.host}/race/stop:1"), capture_output=True, text=True
        )
        assert digest.stdout.strip() == str(base.digest)  # untouched: the writer never won


def test_mutate_writing_back_alongside_appends_loses_nothing() -> None:
    """mutate re-applies its change to whatever the tag holds when it writes."""
    with Registry() as reg:
        base = f"{reg.host}/race/mix:1"
        random_image("linux/amd64", size=100).push(base, Context())
        srcs = sources(reg.host)[1:5]
        procs = [
            subprocess.Popen(luff("index", "append", base, s), stderr=subprocess.PIPE, text=True)
            for s in srcs
        ]
        procs.append(
            subprocess.Popen(
                luff("mutate", base, "--label", "org.example.mixed=yes"),
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        errs = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
        assert all(code == 0 for code, _ in errs), errs
        have = platforms_at(base)
        assert set(PLATFORMS[1:5]) <= set(have) and "linux/amd64" in have
        cfg = subprocess.run(
            luff("--platform", "linux/amd64", "config", base), capture_output=True, text=True
        )
        assert json.loads(cfg.stdout)["config"]["Labels"]["org.example.mixed"] == "yes"
