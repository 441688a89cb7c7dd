"""Benchmark: ``luff copy --referrers`` against the same copy without referrers.

The source is a random 3-platform OCI index (``--mb`` MB of layers in all)
whose root and each of the 3 images carry 2 referrers: an OCI 1.1 cosign
signature and an SPDX SBOM of about ``--sbom-kb`` kB (8 referrers, built
with ``tests/images.py`` as cosign and SBOM tools shape them). Each run
copies it by tag into a fresh repository of a freshly started, empty target
registry, alternating

- ``luff copy --referrers SRC/bench/app:v1 DST/bench/ref-N:v1``
- ``luff copy SRC/bench/app:v1 DST/bench/plain-N:v1``

with source and target of one registry kind (``--kind``): luff's embedded
registry (``luff registry serve`` in its own process, memory storage), which
serves the OCI referrers API, or Debian's distribution 2.8
(``docker-registry``), where luff lists referrers in ``sha256-<hex>`` tags.
Every copy is checked: the digest at the target is the source's, and
``luff referrers -r --json`` on the target finds exactly the 8 referrers
(none after a plain copy), by the target's own mechanism.
Target: with referrers <= 1.3 x without, on each kind.

    .venv/bin/python bench/bench_referrers.py [--runs 5] [--kind both] [--mb 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.images

from common import (
    LUFF,
    PLATFORMS,
    LoadAverage,
    Registry,
    Timing,
    alternate,
    clean_env,
    index_bytes,
    remote_digest,
    report,
    run,
)

KINDS = ("embedded", "distribution")
VIA = {"embedded": "referrers API", "distribution": "tag schema"}


@contextmanager
def registry(kind: str, name: str) -> Iterator[str]:
    """A fresh, empty registry of *kind* on loopback; yields its host."""
    if kind == "distribution":
        with Registry(name) as reg:
            yield reg.host
    else:
        from luff.testing import Registry as Embedded

        with Embedded(process=True) as emb:
            yield emb.host


def push_signed(source: str, mb: float, layers: int, sbom_kb: int) -> tuple[str, set[str]]:
    """Push the index and its 8 referrers to *source*; returns its digest and theirs."""
    from luff.context import Context
    from luff.copy import copy_graph
    from luff.model.address import parse_address
    from luff.stores import open_target
    from luff.testing import random_index
    from tests.images import cosign_signature, sbom

    size = int(mb * 1_000_000 / (len(PLATFORMS) * layers))
    index = random_index(PLATFORMS, layers=layers, size=size)
    ctx = Context()
    try:
        index.push(source, ctx)
        attached = set()
        # One store for all 8, so that on distribution the tag schema settles once, not 8 times.
        with open_target(parse_address(source.rpartition(":")[0]), ctx) as dst:
            for i, subject in enumerate([index, *index.children]):
                for a in (
                    cosign_signature(subject, oci11=True),
                    sbom(subject, sbom_kb * 1000, seed=i),
                ):
                    copy_graph(a.store, a.descriptor, dst, manifest=a.manifest, ctx=ctx)
                    attached.add(str(a.digest))
    finally:
        ctx.close()
    return str(index.digest), attached


def referrers_at(ref: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """``(digest, found by)`` of every referrer ``luff referrers -r --json`` lists at *ref*."""
    p = subprocess.run(
        [LUFF, "referrers", "-r", "--json", ref], capture_output=True, text=True, env=env
    )
    if p.returncode != 0:
        sys.exit(f"bench: luff referrers -r {ref} failed: {p.stderr}")
    found: list[tuple[str, str]] = []

    def walk(node: dict[str, Any]) -> None:
        for r in node.get("referrers", []):
            found.append((r["digest"], r.get("via", "")))
            walk(r)
        for m in node.get("manifests", []):
            walk(m)

    walk(json.loads(p.stdout))
    return found


def bench_kind(kind: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    server = "luff registry serve" if kind == "embedded" else "docker-registry"
    print(f"\n== {kind}: source and target registries are {server}")
    with registry(kind, "src") as src_host:
        source = f"{src_host}/bench/app:v1"
        t0 = time.perf_counter()
        digest, attached = push_signed(source, args.mb, args.layers, args.sbom_kb)
        nbytes = index_bytes(args.mb, args.layers)
        print(
            f"source {source} {digest}: 3 platforms x {args.layers} layers, "
            f"{nbytes / 1e6:.1f} MB, {len(attached)} referrers "
            f"(pushed in {time.perf_counter() - t0:.1f} s)"
        )
        found = referrers_at(source, env)
        if {d for d, _ in found} != attached:
            sys.exit(f"bench: the source lists {found}, expected {sorted(attached)}")

        def timed(name: str, flags: list[str]) -> Callable[[int], Timing]:
            def go(i: int) -> Timing:
                with registry(kind, "dst") as dst_host:
                    ref = f"{dst_host}/bench/{name}-{'w' if i < 0 else ''}{abs(i)}:v1"
                    t = run([LUFF, "copy", *flags, source, ref], env=env)
                    got = remote_digest(ref)
                    if got != digest:
                        sys.exit(f"bench: {ref} has digest {got}, expected {digest}")
                    listed = referrers_at(ref, env)
                    want = attached if flags else set()
                    if sorted(d for d, _ in listed) != sorted(want):
                        sys.exit(f"bench: {ref} lists referrers {listed}, expected {sorted(want)}")
                    if any(via != VIA[kind] for _, via in listed):
                        sys.exit(f"bench: {ref} lists referrers not by {VIA[kind]}: {listed}")
                return t

            return go

        times = alternate(
            {"refs": timed("refs", ["--referrers"]), "plain": timed("plain", [])},
            args.runs,
            warmup=args.warmup,
        )
    ratio = report(times, "plain")
    extra = statistics.median(t.wall for t in times["refs"]) - statistics.median(
        t.wall for t in times["plain"]
    )
    print(
        f"\n{kind}: median ratio referrers/plain {ratio:.2f} (target <= 1.30), "
        f"{extra:+.3f} s; every run checked ({len(attached)} referrers by {VIA[kind]})"
    )
    return {
        "ratio": ratio,
        "extra": extra,
        "times": {n: [vars(t) for t in ts] for n, ts in times.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="measured runs per variant (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded runs per variant first")
    ap.add_argument("--kind", choices=[*KINDS, "both"], default="both", help="registry kind")
    ap.add_argument("--mb", type=float, default=30.0, help="index payload in MB (default 30)")
    ap.add_argument("--layers", type=int, default=2, help="layers per image (default 2)")
    ap.add_argument("--sbom-kb", type=int, default=100, help="size of each SBOM (default 100)")
    ap.add_argument("--json", metavar="FILE", help="also write the raw times as JSON")
    args = ap.parse_args()
    if not Path(LUFF).exists():
        sys.exit(f"bench: {LUFF} not found; run with the venv's python")
    env = clean_env()
    run([LUFF, "version"], env=env)
    kinds = KINDS if args.kind == "both" else (args.kind,)
    results = {}
    with LoadAverage() as load:
        for kind in kinds:
            results[kind] = bench_kind(kind, args, env)
    print()
    for kind, r in results.items():
        print(f"{kind:<13} referrers/plain {r['ratio']:.2f} ({r['extra']:+.3f} s)  target <= 1.30")
    print(f"load average (1 min) during the bench: {load}")
    if args.json:
        raw = {"results": results, "load": load.samples}
        Path(args.json).write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
