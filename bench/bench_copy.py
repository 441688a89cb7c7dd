"""Benchmark: copy a 3-platform index (~65 MB) between two local registries, luff vs skopeo.

Starts a ``docker-registry`` on loopback and pushes a random index to it,
then alternates ``luff copy SRC DST`` and
``skopeo copy --all ... docker://SRC docker://DST``. Every run copies into a
fresh repository of a freshly started destination registry (new port, empty
storage), so nothing exists there yet -- not even in another repository:
skopeo keeps a blob-location cache across runs
(``/var/lib/containers/cache/blob-info-cache-v1.boltdb`` as root) and would
otherwise cross-repository-mount the blobs that an earlier run pushed.
Prints the medians and the median ratio luff/skopeo (target: <= 0.85).

    .venv/bin/python bench/bench_copy.py [--runs 5] [--mb 65] [--profile]

``--profile`` also runs ``luff.ops.basic.copy`` once under cProfile (in this
process, into a fresh repository) and prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Registry,
    Timing,
    alternate,
    busy,
    clean_env,
    index_bytes,
    loadavg,
    luff_options,
    luffs,
    need,
    push_random_index,
    remote_digest,
    report,
    run,
)


def profile_copy(src: str, dst: str, top: int) -> None:
    """Run the library copy under cProfile and print the *top* entries.

    cProfile sees one thread only, so every task of the copy's thread pool
    runs under its own profiler and the results are merged with the main
    thread's.
    """
    from concurrent.futures import thread

    from luff.context import Context
    from luff.ops.basic import copy

    profiles: list[cProfile.Profile] = []
    orig_run = thread._WorkItem.run

    def run_profiled(self: Any) -> None:
        p = cProfile.Profile()
        profiles.append(p)
        p.runcall(orig_run, self)

    ctx = Context()
    main_prof = cProfile.Profile()
    thread._WorkItem.run = run_profiled  # type: ignore[method-assign]
    t0 = time.perf_counter()
    try:
        main_prof.runcall(copy, src, dst, ctx=ctx)
    finally:
        thread._WorkItem.run = orig_run  # type: ignore[method-assign]
    dt = time.perf_counter() - t0
    ctx.close()
    print(f"\ncProfile of luff.ops.basic.copy: {dt:.3f} s wall (profiled), {len(profiles)} tasks")
    for key in ("cumulative", "tottime"):
        s = io.StringIO()
        stats = pstats.Stats(main_prof, stream=s)
        for p in profiles:
            stats.add(p)
        stats.sort_stats(key).print_stats(top)
        print(s.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="measured runs per tool (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded runs per tool first")
    ap.add_argument("--mb", type=float, default=65.0, help="index payload in MB (default 65)")
    ap.add_argument("--layers", type=int, default=2, help="layers per image (default 2)")
    ap.add_argument("--jobs", type=int, default=0, help="pass -j N to luff (default: its own)")
    ap.add_argument("--profile", action="store_true", help="also profile one library copy")
    ap.add_argument("--top", type=int, default=30, help="profile entries to print")
    ap.add_argument("--json", metavar="FILE", help="also write the raw times as JSON")
    luff_options(ap)
    args = ap.parse_args()
    skopeo = need("skopeo")
    tools = luffs(args)
    env = clean_env()

    with Registry("src") as src:
        source = f"{src.host}/bench/app:v1"
        t0 = time.perf_counter()
        digest = push_random_index(source, total_mb=args.mb, layers=args.layers)
        nbytes = index_bytes(args.mb, args.layers)
        print(
            f"source {source} {digest}: 3 platforms x {args.layers} layers, "
            f"{nbytes / 1e6:.1f} MB (pushed in {time.perf_counter() - t0:.1f} s)"
        )
        jobs = ["-j", str(args.jobs)] if args.jobs else []

        def timed(tool: str, i: int, cmd: Callable[[str], list[str]]) -> Timing:
            with Registry("dst") as dst:
                ref = f"{dst.host}/bench/{tool}-{'w' if i < 0 else ''}{abs(i)}:v1"
                t = run(cmd(ref), env=env)
                got = remote_digest(ref)
                if got != digest:
                    sys.exit(f"bench: {tool} wrote {ref} with digest {got}, expected {digest}")
            return t

        def luff_run(name: str) -> Callable[[int], Timing]:
            exe = tools[name]
            return lambda i: timed(name, i, lambda ref: [exe, "copy", *jobs, source, ref])

        def skopeo_run(i: int) -> Timing:
            return timed(
                "skopeo",
                i,
                lambda ref: [
                    skopeo,
                    "copy",
                    "--all",
                    "--quiet",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    f"docker://{source}",
                    f"docker://{ref}",
                ],
            )

        runners = {name: luff_run(name) for name in tools}
        with busy(args.busy):
            times = alternate({**runners, "skopeo": skopeo_run}, args.runs, warmup=args.warmup)
        print(f"\n{loadavg()}")
        ratio = report(times, "skopeo", nbytes=nbytes)
        print(f"\nmedian ratio luff/skopeo: {ratio:.2f} (target <= 0.85)")
        if args.json:
            raw = {n: [vars(t) for t in ts] for n, ts in times.items()}
            Path(args.json).write_text(json.dumps({"times": raw, "ratio": ratio}, indent=2))
        if args.profile:
            with Registry("dst") as dst:
                profile_copy(source, f"{dst.host}/bench/profile:v1", args.top)


if __name__ == "__main__":
    main()
