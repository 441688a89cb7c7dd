"""Benchmark: what ``luff index append --concurrent`` costs, and 8 appends racing onto one tag.

(a) One writer. A random 3-platform index (one layer of ``--layer-kb`` kB
per image) is pushed to a fresh tag of ``bench/rel`` before each run (not
timed), then one of

- ``luff index append REG/bench/rel:plain-N REG/bench/src-linux-ppc64le:1``
- ``luff index append --concurrent REG/bench/rel:conc-N REG/bench/src-linux-ppc64le:1``

is timed, alternating; every result must hold the 4 platforms. On luff's
embedded registry ``--concurrent`` finds out (one probe write) that the
registry refuses stale writes and then does what a plain append does; on
distribution 2.8, which ignores ``If-Match``, it writes the content first,
moves the tag within half a window, waits one window (``--concurrent-window``,
luff's default 4 s, or ``--window``) and checks that its entry is still
there.

(b) Eight writers. Eight images of eight platforms are in the registry;
eight ``luff index append REG/bench/race:N REG/bench/src-PLATFORM:1``
processes start at once onto one new tag: on the embedded registry with no
flag (its conditional writes make the losers re-read and retry), on
distribution with ``--concurrent``. Reported per run: the time until the
last writer exits, the time at which the tag took its final value (the
bench polls the tag every 50 ms), the entries in the tag and the writers
that exited non-zero. Every entry must be there or its writer must have
failed. For comparison, the same race on distribution without
``--concurrent`` (``--plain-runs``): how many of the 8 entries survive.

The embedded registry is ``luff registry serve`` in its own process (memory
storage); distribution is Debian's ``docker-registry``. One registry per
kind; a new tag per run.

    .venv/bin/python bench/bench_append_race.py [--runs 5] [--kind both] [--window S]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    LUFF,
    PLATFORMS,
    LoadAverage,
    Registry,
    Timing,
    alternate,
    clean_env,
    report,
    run,
)

KINDS = ("embedded", "distribution")
#: The platforms of the eight racing writers.
RACERS = (
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/386",
    "linux/mips64le",
)
EXTRA = "linux/ppc64le"  # appended in part (a); the base holds PLATFORMS
WRITTEN = re.compile(r"written after (\d+) retries and (\d+) rounds")


@contextmanager
def registry(kind: str) -> Iterator[str]:
    """A fresh, empty registry of *kind* on loopback; yields its host."""
    if kind == "distribution":
        with Registry("race") as reg:
            yield reg.host
    else:
        from luff.testing import Registry as Embedded

        with Embedded(process=True) as emb:
            yield emb.host


def src_ref(host: str, platform: str) -> str:
    return f"{host}/bench/src-{platform.replace('/', '-')}:1"


def get_index(ref: str) -> tuple[str, list[str]] | None:
    """The digest and the entries' platforms of the index at ``HOST/REPO:TAG``, or None."""
    from luff.model.mediatypes import ACCEPT

    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            digest = str(r.headers["Docker-Content-Digest"])
            doc = json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    plats = []
    for e in doc.get("manifests", []):
        p = e.get("platform", {})
        plats.append(
            "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
        )
    return digest, sorted(plats)


# --- (a) one writer: --concurrent against a plain append ---------------------------------


def one_writer(
    kind: str, host: str, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    from luff.context import Context
    from luff.testing import random_image, random_index

    size = args.layer_kb * 1000
    base = random_index(PLATFORMS, size=size)
    ctx = Context()
    random_image(EXTRA, size=size).push(src_ref(host, EXTRA), ctx)
    want = sorted([*PLATFORMS, EXTRA])
    window = ["--concurrent-window", str(args.window)] if args.window else []

    def timed(name: str, flags: list[str]) -> Callable[[int], Timing]:
        def go(i: int) -> Timing:
            ref = f"{host}/bench/rel:{name}-{'w' if i < 0 else ''}{abs(i)}"
            base.push(ref, ctx)  # the base, before the clock starts
            t = run([LUFF, "index", "append", *flags, ref, src_ref(host, EXTRA)], env=env)
            got = get_index(ref)
            if got is None or got[1] != want:
                sys.exit(f"bench: {ref} holds {got}, expected {want}")
            return t

        return go

    print(f"\n(a) {kind}: one writer, append 1 image to a 3-platform index")
    times = alternate(
        {"conc": timed("conc", ["--concurrent", *window]), "plain": timed("plain", [])},
        args.runs,
        warmup=args.warmup,
    )
    ctx.close()
    ratio = report(times, "plain")
    extra = statistics.median(t.wall for t in times["conc"]) - statistics.median(
        t.wall for t in times["plain"]
    )
    print(f"\n(a) {kind}: --concurrent/plain {ratio:.2f}, {extra:+.3f} s per append")
    return {
        "ratio": ratio,
        "extra": extra,
        "times": {n: [vars(t) for t in ts] for n, ts in times.items()},
    }


# --- (b) eight writers at once onto one tag ----------------------------------------------


@dataclass
class Race:
    """One race of eight writers."""

    wall: float  # until the last writer exited
    settled: float  # when the tag first held its final value (as polled)
    entries: int  # in the tag at the end
    failed: int  # writers that exited non-zero
    missing_ok: bool  # every missing entry's writer failed
    retries: int  # summed over the writers ("written after N retries and M rounds")
    rounds: int  # extra write-and-check rounds, summed (--concurrent)
    errors: list[str]


def race(host: str, tag: str, flags: list[str], env: dict[str, str]) -> Race:
    ref = f"{host}/bench/race:{tag}"
    seen: list[tuple[float, str]] = []
    stop = threading.Event()

    def poll(t0: float) -> None:
        while not stop.is_set():
            try:
                got = get_index(ref)
            except OSError:
                got = None
            if got is not None and (not seen or seen[-1][1] != got[0]):
                seen.append((time.perf_counter() - t0, got[0]))
            stop.wait(0.05)

    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [LUFF, "index", "append", *flags, ref, src_ref(host, p)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for p in RACERS
    ]
    poller = threading.Thread(target=poll, args=(t0,), daemon=True)
    poller.start()
    errs = [p.communicate(timeout=600)[1] for p in procs]
    wall = time.perf_counter() - t0
    stop.set()
    poller.join()
    final = get_index(ref)
    have = final[1] if final is not None else []
    settled = next((t for t, d in seen if final is not None and d == final[0]), wall)
    codes = [p.returncode for p in procs]
    retries = rounds = 0
    for err in errs:
        for m in WRITTEN.finditer(err):
            retries += int(m.group(1))
            rounds += int(m.group(2)) - 1
    return Race(
        wall=wall,
        settled=settled,
        entries=len(have),
        failed=sum(c != 0 for c in codes),
        missing_ok=all(p in have or c != 0 for p, c in zip(RACERS, codes, strict=True)),
        retries=retries,
        rounds=rounds,
        errors=[e.strip().splitlines()[-1] for e, c in zip(errs, codes, strict=True) if c and e],
    )


def races(
    label: str, host: str, flags: list[str], runs: int, warmup: int, env: dict[str, str]
) -> list[Race]:
    out = []
    for i in range(-warmup, runs):
        r = race(host, f"{label}-{'w' if i < 0 else ''}{abs(i)}", flags, env)
        note = "  (warm-up)" if i < 0 else ""
        print(
            f"  run {i:>2} {label:<6} {r.wall:7.3f} s  tag final at {r.settled:6.3f} s  "
            f"{r.entries}/8 entries  {r.failed} failed  {r.retries} retries  "
            f"{r.rounds} extra rounds{note}",
            flush=True,
        )
        for e in r.errors:
            print(f"           {e}")
        if not r.missing_ok:
            print("           LOST SILENTLY: an entry is missing and its writer exited 0")
        if i >= 0:
            out.append(r)
    return out


def summary(label: str, rs: list[Race]) -> str:
    walls = [r.wall for r in rs]
    return (
        f"{label:<28} {len(rs):>4} {min(walls):7.3f} {statistics.median(walls):7.3f} "
        f"{max(walls):7.3f} {statistics.median(r.settled for r in rs):8.3f}  "
        f"{sum(r.entries for r in rs):>3}/{8 * len(rs):<3} {sum(r.failed for r in rs):>6} "
        f"{sum(r.retries for r in rs):>7} {sum(r.rounds for r in rs):>6} "
        f"{sum(not r.missing_ok for r in rs):>6}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="measured runs (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded runs first")
    ap.add_argument("--plain-runs", type=int, default=0, help="plain races on distribution")
    ap.add_argument("--kind", choices=[*KINDS, "both"], default="both", help="registry kind")
    ap.add_argument("--window", type=float, default=0.0, help="--concurrent-window (luff's)")
    ap.add_argument("--layer-kb", type=int, default=100, help="layer size per image (kB)")
    ap.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    args = ap.parse_args()
    if not Path(LUFF).exists():
        sys.exit(f"bench: {LUFF} not found; run with the venv's python")
    env = clean_env()
    run([LUFF, "version"], env=env)
    kinds = KINDS if args.kind == "both" else (args.kind,)
    window = ["--concurrent-window", str(args.window)] if args.window else []
    one: dict[str, Any] = {}
    eight: dict[str, list[Race]] = {}
    with LoadAverage() as load:
        for kind in kinds:
            with registry(kind) as host:
                from luff.context import Context
                from luff.testing import random_image

                ctx = Context()
                for p in RACERS:
                    random_image(p, size=args.layer_kb * 1000).push(src_ref(host, p), ctx)
                ctx.close()
                one[kind] = one_writer(kind, host, args, env)
                if kind == "embedded":
                    print("\n(b) embedded: 8 writers at once, no flag (conditional writes)")
                    eight["embedded"] = races("emb", host, [], args.runs, args.warmup, env)
                else:
                    print("\n(b) distribution: 8 writers at once with --concurrent")
                    flags = ["--concurrent", *window]
                    eight["distribution --concurrent"] = races(
                        "conc", host, flags, args.runs, args.warmup, env
                    )
                    print("\n(b) distribution: 8 writers at once, no flag (lost updates)")
                    eight["distribution, no flag"] = races(
                        "plain", host, [], args.plain_runs or args.runs, 0, env
                    )

    print("\n(a) one writer: luff index append --concurrent against a plain append")
    for kind, r in one.items():
        print(f"  {kind:<13} --concurrent/plain {r['ratio']:.2f}  ({r['extra']:+.3f} s)")
    print("\n(b) 8 writers onto one tag (wall: until the last writer exits)")
    print(
        f"{'':<28} {'runs':>4} {'min':>7} {'median':>7} {'max':>7} {'final at':>8}  "
        f"{'entries':<7} {'failed':>6} {'retries':>7} {'rounds':>6} {'silent':>6}"
    )
    for label, rs in eight.items():
        print(summary(label, rs))
    print(
        "(final at: median time at which the tag took its final value; rounds: extra "
        "write-and-check rounds; silent: runs that lost an entry whose writer exited 0)"
    )
    print(f"\nload average (1 min) during the bench: {load}")
    if args.json:
        raw = {
            "one_writer": one,
            "races": {k: [asdict(r) for r in rs] for k, rs in eight.items()},
            "load": load.samples,
        }
        Path(args.json).write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
