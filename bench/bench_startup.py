"""Benchmark: what a luff run costs when there is nothing to do.

Start-up and no-op runs, the common case in CI (re-runs, checks). In one
run, alternating (the first command of each round rotates), after one
unrecorded warm-up round:

- ``python -c pass`` with the venv's interpreter: the floor;
- ``luff --help`` and ``luff version``;
- a warm copy: ``luff copy SRC DST`` onto a DST that already holds the
  index, against ``skopeo copy --all`` of the same onto the same;
- a warm ``luff index create DST/bench/idx:v1 SRC/... x3`` onto a tag that
  already holds that index.

SRC and DST are two ``docker-registry`` instances on loopback; the index has
3 platforms with 2 small layers each. Prints min/median/max wall time and
median CPU per command, the load average, and the ratios the targets are
stated in: ``--help`` and ``version`` against ``python -c pass`` (target:
<= 0.08 s, about 6x), the warm copy against skopeo (target: <= 1.0x), the
warm index create (target: <= 0.15 s). ``--before PATH`` times another luff
(the old one) in the same rounds, as ``*-before``.

    .venv/bin/python bench/bench_startup.py [--runs 21] [--before ../luff-before/.venv/bin/luff]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PLATFORMS,
    Registry,
    Timing,
    alternate,
    busy,
    clean_env,
    loadavg,
    luff_options,
    luffs,
    median,
    need,
    push_random_index,
    remote_digest,
    run,
)


def push_sources(host: str) -> list[str]:
    """One small image per platform in *host*; returns their references."""
    from luff.context import Context
    from luff.testing import random_image

    refs = []
    ctx = Context()
    try:
        for plat in PLATFORMS:
            ref = f"{host}/bench/img-{plat.replace('/', '-')}:v1"
            random_image(plat, layers=2, size=20_000).push(ref, ctx)
            refs.append(ref)
    finally:
        ctx.close()
    return refs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21, help="measured runs per command (default 21)")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first")
    luff_options(ap)
    args = ap.parse_args()
    skopeo = need("skopeo")
    tools = luffs(args)
    env = clean_env()
    python = str(Path(tools["luff"]).with_name("python"))
    if not Path(python).exists():
        python = sys.executable

    with Registry("src") as src, Registry("dst") as dst:
        source, target = f"{src.host}/bench/app:v1", f"{dst.host}/bench/app:v1"
        digest = push_random_index(source, total_mb=0.12)
        sources = push_sources(src.host)
        index = f"{dst.host}/bench/idx:v1"
        for luff in tools.values():  # fill the targets, and compile each luff's bytecode
            run([luff, "copy", source, target], env=env)
            run([luff, "index", "create", index, *sources], env=env)
        if remote_digest(target) != digest:
            sys.exit("bench: the warm copy's target does not hold the source")
        print(f"source {source} {digest}; target {target}; {loadavg()}", flush=True)

        def cmd(argv: list[str]) -> object:
            return lambda i: run(argv, env=env)

        runners = {"pass": cmd([python, "-c", "pass"])}
        for name, luff in tools.items():
            sfx = "" if name == "luff" else "-before"
            runners[f"help{sfx}"] = cmd([luff, "--help"])
            runners[f"version{sfx}"] = cmd([luff, "version"])
            runners[f"copy{sfx}"] = cmd([luff, "copy", source, target])
            runners[f"index{sfx}"] = cmd([luff, "index", "create", index, *sources])
        skopeo_copy = [
            skopeo, "copy", "--all", "--quiet", "--src-tls-verify=false",
            "--dest-tls-verify=false", f"docker://{source}", f"docker://{target}",
        ]  # fmt: skip
        runners["skopeo"] = cmd(skopeo_copy)
        with busy(args.busy):
            times: dict[str, list[Timing]] = alternate(runners, args.runs, warmup=args.warmup)  # type: ignore[arg-type]
        if remote_digest(target) != digest:
            sys.exit("bench: the target changed")

    print(f"\n{loadavg()}")
    print(f"{'command':<16} {'runs':>4} {'min':>7} {'median':>7} {'max':>7} {'cpu':>7}")
    for name, ts in times.items():
        walls = [t.wall for t in ts]
        cpu = statistics.median(t.cpu for t in ts)
        print(
            f"{name:<16} {len(ts):>4} {min(walls):7.3f} {median(ts):7.3f} {max(walls):7.3f} "
            f"{cpu:7.3f}"
        )
    floor = median(times["pass"])
    sk = median(times["skopeo"])
    print()
    for name in tools:
        sfx = "" if name == "luff" else "-before"
        h, v = median(times[f"help{sfx}"]), median(times[f"version{sfx}"])
        c, x = median(times[f"copy{sfx}"]), median(times[f"index{sfx}"])
        print(
            f"{name:<6}: --help {h:.3f} s ({h / floor:.1f}x python -c pass), "
            f"version {v:.3f} s ({v / floor:.1f}x); warm copy {c:.3f} s "
            f"({c / sk:.2f}x skopeo's {sk:.3f} s); warm index create {x:.3f} s"
        )
    print(
        "targets: --help, version <= 0.08 s (about 6x python -c pass); warm copy <= 1.00x skopeo;"
    )
    print("         warm index create <= 0.15 s")
    if "before" in tools:
        for what in ("help", "version", "copy", "index"):
            a, b = median(times[what]), median(times[f"{what}-before"])
            print(f"after/before {what:<8} {a / b:.2f}  ({a:.3f} s vs {b:.3f} s)")


if __name__ == "__main__":
    main()
