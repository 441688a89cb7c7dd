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

from common import Registry, need

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
    args = ap.parse_args()
    need("skopeo")
    luff = str(Path(sys.executable).parent / "luff")
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
            times: dict[str, list[float]] = {"luff": [], "skopeo": []}
            for i in range(-1, args.runs):  # run -1 warms caches and is not counted
                order = ("luff", "skopeo") if i % 2 == 0 else ("skopeo", "luff")
                for who in order:
                    out = work / f"{who}-{i}"
                    if who == "luff":
                        jobs = ["-j", str(args.jobs)] if args.jobs else []
                        cmd = [luff, *jobs, "pull", ref, str(out)]
                    else:
                        cmd = [
                            "skopeo", "--policy", str(policy), "copy", "--all", "-q",
                            "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}:1",
                        ]  # fmt: skip
                    times[who].append(timed(cmd))
                    shutil.rmtree(out)
                if i < 0:
                    times = {"luff": [], "skopeo": []}
                    continue
                print(
                    f"run {i + 1}: luff {times['luff'][-1]:.3f}s  skopeo {times['skopeo'][-1]:.3f}s"
                )
            lm, sm = statistics.median(times["luff"]), statistics.median(times["skopeo"])
            print(f"median luff pull     {lm:.3f} s")
            print(f"median skopeo copy   {sm:.3f} s")
            print(f"ratio luff/skopeo    {lm / sm:.2f}x  (target <= 1.0)")


if __name__ == "__main__":
    main()
