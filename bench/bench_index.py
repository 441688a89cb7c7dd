"""Benchmark: assemble 3 per-platform images (~65 MB) into an index, luff vs buildah.

Starts a ``docker-registry`` on loopback holding three single-platform
images (``bench/app-amd64``, ``app-arm64``, ``app-armv7``), then alternates

- ``luff index create DST/bench/app:v1 SRC/bench/app-amd64:v1 …`` and
- ``buildah manifest create`` + ``buildah manifest add`` x3 +
  ``buildah manifest push --all`` (``STORAGE_DRIVER=vfs``, a fresh temporary
  ``--root``/``--runroot`` per run, ``--tls-verify=false``), timed together.

Every run writes to a freshly started, empty destination registry, so the
runs are cold (nothing to mount, nothing already there). Afterwards luff is
re-run onto a filled target (``--rerun`` times) to time the no-op path.
Prints medians, the median ratio luff/buildah (target: <= 1.0) and the
re-run median (target: < 0.5 s).

    .venv/bin/python bench/bench_index.py [--runs 5] [--mb 65]

Needs root for buildah (as the CI and this machine run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Registry,
    Timing,
    alternate,
    busy,
    clean_env,
    loadavg,
    luff_options,
    luffs,
    need,
    report,
    run,
)

PLATFORMS = {"amd64": "linux/amd64", "arm64": "linux/arm64", "armv7": "linux/arm/v7"}


def push_sources(host: str, total_mb: float, layers: int) -> tuple[list[str], int]:
    """Push one random image per platform; returns their references and total layer bytes."""
    from luff.context import Context
    from luff.testing import random_image

    size = int(total_mb * 1_000_000 / (len(PLATFORMS) * layers))
    refs = []
    ctx = Context()
    try:
        for name, plat in PLATFORMS.items():
            ref = f"{host}/bench/app-{name}:v1"
            random_image(plat, layers=layers, size=size).push(ref, ctx)
            refs.append(ref)
    finally:
        ctx.close()
    return refs, size * layers * len(PLATFORMS)


def check_index(ref: str, want: int) -> None:
    """Exit unless *ref* is an index of *want* entries (read with skopeo)."""
    import subprocess

    p = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
    )
    if p.returncode != 0:
        sys.exit(f"bench: {ref} is not readable: {p.stderr.decode(errors='replace')}")
    doc = json.loads(p.stdout)
    if len(doc.get("manifests", [])) != want:
        sys.exit(f"bench: {ref} has {len(doc.get('manifests', []))} entries, expected {want}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="measured runs per tool (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded runs per tool first")
    ap.add_argument("--rerun", type=int, default=7, help="re-runs onto the filled target")
    ap.add_argument("--mb", type=float, default=65.0, help="total layer MB (default 65)")
    ap.add_argument("--layers", type=int, default=2, help="layers per image (default 2)")
    ap.add_argument("--json", metavar="FILE", help="also write the raw times as JSON")
    luff_options(ap)
    args = ap.parse_args()
    buildah = need("buildah")
    need("skopeo")
    if os.geteuid() != 0:
        sys.exit("bench: buildah with --root needs root here; run as root")
    tools = luffs(args)
    env = clean_env()
    # An installed luff has compiled bytecode; don't time compiling it on every start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for exe in tools.values():
        run([exe, "version"], env=env)
    benv = {**env, "STORAGE_DRIVER": "vfs"}

    with Registry("src") as src:
        t0 = time.perf_counter()
        sources, nbytes = push_sources(src.host, args.mb, args.layers)
        print(
            f"sources on {src.host}: {len(sources)} images x {args.layers} layers, "
            f"{nbytes / 1e6:.1f} MB (pushed in {time.perf_counter() - t0:.1f} s)"
        )

        def luff_run(exe: str) -> Callable[[int], Timing]:
            def runner(i: int) -> Timing:
                with Registry("dst") as dst:
                    ref = f"{dst.host}/bench/app:v1"
                    dt = run([exe, "index", "create", ref, *sources], env=env)
                    check_index(ref, len(sources))
                return dt

            return runner

        def buildah_run(i: int) -> Timing:
            tmp = Path(tempfile.mkdtemp(prefix="bench-buildah-"))
            base = [buildah, "--root", str(tmp / "root"), "--runroot", str(tmp / "run")]
            tls = "--tls-verify=false"
            try:
                with Registry("dst") as dst:
                    ref = f"{dst.host}/bench/app:v1"
                    steps = [run([*base, "manifest", "create", "benchlist"], env=benv)]
                    for s in sources:
                        add = [*base, "manifest", "add", tls, "benchlist", f"docker://{s}"]
                        steps.append(run(add, env=benv))
                    push = [*base, "manifest", "push", "--all", "--quiet", tls, "benchlist"]
                    steps.append(run([*push, f"docker://{ref}"], env=benv))
                    check_index(ref, len(sources))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return Timing(sum(t.wall for t in steps), sum(t.cpu for t in steps))

        runners = {name: luff_run(exe) for name, exe in tools.items()}
        with busy(args.busy):
            times = alternate({**runners, "buildah": buildah_run}, args.runs, warmup=args.warmup)
        print(f"\n{loadavg()}")
        ratio = report(times, "buildah", nbytes=nbytes)
        print(f"\nmedian ratio luff/buildah (cold): {ratio:.2f} (target <= 1.00)")

        with Registry("dst") as dst:
            ref = f"{dst.host}/bench/app:v1"
            creates = {n: [exe, "index", "create", ref, *sources] for n, exe in tools.items()}
            for create in creates.values():
                run(create, env=env)
            all_reruns: dict[str, list[float]] = {n: [] for n in tools}
            for _ in range(args.rerun):  # alternating
                for n, create in creates.items():
                    all_reruns[n].append(run(create, env=env).wall)
        for n, rr in all_reruns.items():
            med = statistics.median(rr)
            print(
                f"{n} re-run onto the filled target: median {med:.3f} s over {len(rr)} runs "
                f"(min {min(rr):.3f}, max {max(rr):.3f}; target < 0.5 s)"
            )
        reruns = all_reruns["luff"]
        if args.json:
            raw = {n: [[t.wall, t.cpu] for t in ts] for n, ts in times.items()}
            Path(args.json).write_text(
                json.dumps({"times": raw, "ratio": ratio, "rerun": reruns}, indent=2)
            )


if __name__ == "__main__":
    main()
