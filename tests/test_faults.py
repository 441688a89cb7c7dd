"""Copies through proxies that inject random faults: nearly all finish, none is corrupt.

The normal suite runs 40 copies of a multi-platform index per registry kind;
``make soak`` runs 1,000 (``python -m tests.test_faults --copies 1000``) and
prints the figures.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from luff.context import Context
from luff.errors import LuffError
from luff.model import mediatypes as mt
from luff.model.digest import Digest
from luff.ops import basic
from luff.registry.auth import ANONYMOUS
from luff.testing import random_index
from tests.conftest import Reg
from tests.faultproxy import FAULT_KINDS, FaultProxy, RandomFaults

RATE = 0.15


@dataclass
class Stats:
    copies: int = 0
    successes: int = 0
    failures: int = 0
    corrupt: int = 0
    requests: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    problems: list[str] = field(default_factory=list)

    def report(self) -> str:
        kinds = ", ".join(f"{k} {self.faults[k]}" for k in FAULT_KINDS)
        lines = [
            f"copies     {self.copies}",
            f"requests   {self.requests} through the fault proxies",
            f"faults     {sum(self.faults.values())} ({kinds})",
            f"successes  {self.successes}",
            f"failures   {self.failures}",
            f"corrupt    {self.corrupt}",
        ]
        lines += [f"  failed: {n} x {msg}" for msg, n in self.errors.most_common(10)]
        lines += [f"  corrupt: {p}" for p in self.problems[:10]]
        return "\n".join(lines)


def _get(host: str, path: str, accept: str = "") -> tuple[bytes, str]:
    req = urllib.request.Request(
        f"http://{host}{path}", headers={"Accept": accept} if accept else {}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read(), r.headers.get("Content-Type", "")


def verify_target(host: str, repo: str, tag: str, want: Digest) -> list[str]:
    """Re-read every manifest and blob of *repo:tag* from *host* (plain HTTP, not through
    luff) and re-hash it. Returns what is wrong: empty when the target is whole and correct,
    ``["missing"]`` when the tag does not exist."""
    try:
        data, _ = _get(host, f"/v2/{repo}/manifests/{tag}", mt.ACCEPT)
    except urllib.error.HTTPError as e:
        return ["missing"] if e.code == 404 else [f"{repo}:{tag}: HTTP {e.code}"]
    if Digest.of(data) != want:
        return [f"{repo}:{tag} is {Digest.of(data)}, not {want}"]
    problems: list[str] = []
    todo = [data]

    def fetch(kind: str, d: dict[str, object], accept: str = "") -> bytes:
        try:
            got, _ = _get(host, f"/v2/{repo}/{kind}/{d['digest']}", accept)
        except urllib.error.HTTPError as e:
            problems.append(f"{kind} {d['digest']}: HTTP {e.code}")
            return b""
        if f"sha256:{hashlib.sha256(got).hexdigest()}" != d["digest"] or len(got) != d["size"]:
            problems.append(f"{kind} {d['digest']} does not hash to its digest")
        return got

    while todo:
        obj = json.loads(todo.pop())
        children = [fetch("manifests", d, mt.ACCEPT) for d in obj.get("manifests", [])]
        todo += [c for c in children if c]
        for b in [obj["config"], *obj["layers"]] if "config" in obj else []:
            fetch("blobs", b)
    return problems


def run_copies(
    n: int,
    src: str,
    dst: str,
    *,
    rate: float = RATE,
    seed: int = 1,
    workers: int = 4,
    prefix: str = "faults",
) -> Stats:
    """*n* copies of fresh random indexes from registry *src* to *dst*, each through
    its own fault proxy at *rate*; every finished target is checked byte by byte."""
    stats = Stats()
    lock = threading.Lock()
    sp = FaultProxy(src, faults=RandomFaults(rate, seed=seed))
    dp = FaultProxy(dst, faults=RandomFaults(rate, seed=seed + 1))
    direct = Context(credentials=lambda h: ANONYMOUS)

    def one(i: int) -> None:
        idx = random_index(("linux/amd64", "linux/arm64"), size=2000)
        idx.push(f"{src}/{prefix}/src{i}:1", direct)
        ctx = Context(credentials=lambda h: ANONYMOUS, backoff=0.01)
        ok = False
        try:
            basic.copy(f"{sp.host}/{prefix}/src{i}:1", f"{dp.host}/{prefix}/dst{i}:1", ctx=ctx)
            ok = True
        except LuffError as e:
            with lock:
                stats.errors[type(e).__name__ + ": " + (e.message or str(e))[:120]] += 1
        finally:
            ctx.close()
        problems = verify_target(dst, f"{prefix}/dst{i}", "1", idx.digest)
        if problems == ["missing"]:
            # A failed copy leaves no tag; a finished one must have it.
            problems = [f"{prefix}/dst{i}:1 is missing"] if ok else []
        with lock:
            stats.copies += 1
            stats.successes += ok
            stats.failures += not ok
            stats.corrupt += bool(problems)
            stats.problems += problems

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for f in [pool.submit(one, i) for i in range(n)]:
                f.result()
    finally:
        sp.stop()
        dp.stop()
        direct.close()
    for p in (sp, dp):
        assert p.faults is not None
        stats.faults.update(p.faults.counts)
        stats.requests += p.faults.requests
    return stats


@pytest.fixture
def registries(registry: Reg, registry2: Reg) -> Iterator[tuple[str, str]]:
    yield registry.host, registry2.host


def test_copies_finish_through_random_faults(
    registries: tuple[str, str], registry_kind: str
) -> None:
    """At a 15 % per-request fault rate, at least 95 % of 40 copies finish within the
    default retry budget, and every finished target is whole and correct."""
    src, dst = registries
    stats = run_copies(40, src, dst, seed=40 if registry_kind == "embedded" else 41)
    print(stats.report())
    assert stats.corrupt == 0, stats.report()
    assert stats.successes >= 38, stats.report()
    assert set(stats.faults) == set(FAULT_KINDS), stats.report()  # every kind happened


def main() -> None:
    """``make soak``: many copies through the fault proxies, with the figures printed."""
    import tempfile

    from tests.conftest import EmbeddedRegistry
    from tests.registries import DistributionRegistry

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--copies", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=RATE)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kind", choices=("distribution", "embedded", "both"), default="both")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    kinds = ("distribution", "embedded") if args.kind == "both" else (args.kind,)
    corrupt = 0
    with tempfile.TemporaryDirectory(prefix="luff-soak-") as tmp:
        for kind in kinds:
            regs: list[Reg] = []
            for name in ("src", "dst"):
                d = Path(tmp) / f"{kind}-{name}"
                d.mkdir()
                reg: Reg = (
                    EmbeddedRegistry(d) if kind == "embedded" else DistributionRegistry(d)
                ).start()
                regs.append(reg)
            try:
                t0 = time.monotonic()
                stats = run_copies(
                    args.copies,
                    regs[0].host,
                    regs[1].host,
                    rate=args.rate,
                    seed=args.seed,
                    workers=args.workers,
                )
                print(f"--- {kind} registry, fault rate {args.rate:.0%}, seed {args.seed}")
                print(stats.report())
                print(f"time       {time.monotonic() - t0:.0f} s", flush=True)
                corrupt += stats.corrupt
            finally:
                for r in regs:
                    r.stop()
    sys.exit(1 if corrupt else 0)


if __name__ == "__main__":
    main()
