"""Benchmark: many small blobs, cold: an index of 30 images x 8 layers of 2 KB, luff vs skopeo.

A ``docker-registry`` on loopback holds an OCI index of 30 images (platforms
``linux/amd64/v1`` ... ``v30``), each of 8 random layers of 2 KB and a config:
270 blobs, 31 manifests. Each run copies it into a freshly started, empty
destination registry (nothing to mount, nothing there), alternating the
commands (the first of each round rotates) after one unrecorded warm-up round:

- ``luff copy SRC DST`` at its default ``-j``;
- ``luff -j N copy ...`` for each N of ``--jobs`` (default 2,8,16), to choose
  the default from measurements;
- ``skopeo copy --all``;
- with ``--before PATH``, the other luff at its default ``-j``.

Every copy's digest at the destination is checked. Prints min/median/max
wall time and median CPU, the load average, and the median ratios to
skopeo. Target: luff at its default ``-j`` <= 0.6x skopeo.

    .venv/bin/python bench/bench_small.py [--runs 7] [--jobs 2,8,16] [--before PATH]
"""

from __future__ import annotations

import argparse
import sys
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
    remote_digest,
    report,
    run,
)


def push_index(ref: str, images: int, layers: int, size: int) -> tuple[str, int]:
    """Push the index; returns its digest and the number of distinct blobs."""
    from luff.context import Context
    from luff.testing import random_index

    platforms = [f"linux/amd64/v{i + 1}" for i in range(images)]
    idx = random_index(platforms, layers=layers, size=size)
    ctx = Context()
    try:
        idx.push(ref, ctx)
    finally:
        ctx.close()
    blobs = {b.digest for c in idx.children for b in c.manifest.blobs()}
    return str(idx.digest), len(blobs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="measured runs per command (default 7)")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first")
    ap.add_argument("--images", type=int, default=30, help="images in the index (default 30)")
    ap.add_argument("--layers", type=int, default=8, help="layers per image (default 8)")
    ap.add_argument("--size", type=int, default=2000, help="bytes per layer (default 2000)")
    ap.add_argument(
        "--jobs", default="2,8,16", help="also time luff -j N for these N (default 2,8,16)"
    )
    luff_options(ap)
    args = ap.parse_args()
    skopeo = need("skopeo")
    tools = luffs(args)
    env = clean_env()
    sweep = [int(j) for j in args.jobs.split(",") if j.strip()]

    with Registry("src") as src:
        source = f"{src.host}/bench/small:v1"
        t0 = time.perf_counter()
        digest, nblobs = push_index(source, args.images, args.layers, args.size)
        print(
            f"source {source} {digest}: {args.images} images x {args.layers} layers of "
            f"{args.size} B, {nblobs} blobs (pushed in {time.perf_counter() - t0:.1f} s); "
            f"{loadavg()}",
            flush=True,
        )

        def into_fresh(argv: Callable[[str], list[str]], name: str) -> Callable[[int], Timing]:
            def runner(i: int) -> Timing:
                with Registry("dst") as dst:
                    ref = f"{dst.host}/bench/small:v1"
                    t = run(argv(ref), env=env)
                    if remote_digest(ref) != digest:
                        sys.exit(f"bench: {name} did not copy the index to {ref}")
                return t

            return runner

        runners: dict[str, Callable[[int], Timing]] = {}
        for name, luff in tools.items():
            runners[name] = into_fresh(lambda ref, luff=luff: [luff, "copy", source, ref], name)
        for j in sweep:
            luff = tools["luff"]
            runners[f"luff-j{j}"] = into_fresh(
                lambda ref, j=j, luff=luff: [luff, "-j", str(j), "copy", source, ref], f"-j {j}"
            )
        sk = [skopeo, "copy", "--all", "--quiet", "--src-tls-verify=false"]
        runners["skopeo"] = into_fresh(
            lambda ref: [*sk, "--dest-tls-verify=false", f"docker://{source}", f"docker://{ref}"],
            "skopeo",
        )
        with busy(args.busy):
            times = alternate(runners, args.runs, warmup=args.warmup)
    print(f"\n{loadavg()}")
    ratio = report(times, "skopeo")
    print(f"\nmedian ratio luff (default -j)/skopeo: {ratio:.2f} (target <= 0.60)")


if __name__ == "__main__":
    main()
