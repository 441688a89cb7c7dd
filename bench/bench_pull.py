"""Benchmark: `luff pull` of a 3-platform index into an OCI layout vs `skopeo copy --all`.

Starts its own distribution registry (docker-registry) on a free loopback
port, pushes a random 3-platform index (~65 MB of incompressible layers) with
luff, then alternates the two commands, each into a fresh directory, and
prints the median wall times and their ratio (luff / skopeo).

    .venv/bin/python bench/bench_pull.py [--runs 7] [--mb 65] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Registry, busy, loadavg, luff_options, luffs, need

from luff.context import Context
from luff.testing import random_index

# An installed package has its bytecode compiled; make sure luff's is cached here too.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--mb", type=float, default=65.0, help="total layer megabytes")
    ap.add_argument("--jobs", type=int, default=0, help="pass -j N to luff (default: its own)")
    luff_options(ap)
    args = ap.parse_args()
    need("skopeo")
    tools = luffs(args)
    names = [*tools, "skopeo"]
    with tempfile.TemporaryDirectory(prefix="luff-bench-pull-") as tmp:
        work = Path(tmp)
        with Registry("pull") as reg:
            host = reg.host
            per_layer = int(args.mb * 1_000_000 / 6)
            idx = random_index(
                ("linux/amd64", "linux/arm64", "linux/ppc64le"), layers=2, size=per_layer
            )
            ref = f"{host}/bench/app:1"
            ctx = Context()
            idx.push(ref, ctx)
            ctx.close()
            total = sum(len(b) for b in idx.store.blobs.values())
            print(f"registry {host}; index {idx.digest} with {total / 1e6:.1f} MB of blobs")
            policy = work / "policy.json"
            policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
            times: dict[str, list[float]] = {n: [] for n in names}
            with busy(args.busy):
                for i in range(-1, args.runs):  # run -1 warms caches and is not counted
                    k = i % len(names)
                    for who in names[k:] + names[:k]:  # the first of each round rotates
                        out = work / f"{who}-{i}"
                        if who in tools:
                            jobs = ["-j", str(args.jobs)] if args.jobs else []
                            cmd = [tools[who], *jobs, "pull", ref, str(out)]
                        else:
                            cmd = [
                                "skopeo", "--policy", str(policy), "copy", "--all", "-q",
                                "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}:1",
                            ]  # fmt: skip
                        times[who].append(timed(cmd))
                        shutil.rmtree(out)
                    if i < 0:
                        times = {n: [] for n in names}
                        continue
                    print(f"run {i + 1}: " + "  ".join(f"{n} {times[n][-1]:.3f}s" for n in names))
            sm = statistics.median(times["skopeo"])
            print(loadavg())
            for n in tools:
                m = statistics.median(times[n])
                print(f"median {n:<6} pull   {m:.3f} s   ratio to skopeo {m / sm:.2f}x")
            print(f"median skopeo copy   {sm:.3f} s")
            lm = statistics.median(times["luff"])
            print(f"ratio luff/skopeo    {lm / sm:.2f}x  (target <= 1.0)")


if __name__ == "__main__":
    main()
