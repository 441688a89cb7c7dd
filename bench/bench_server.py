"""Benchmark: ``skopeo copy --all`` of a ~65 MB 3-platform index into luff's embedded
registry vs into distribution (Debian's ``docker-registry``).

A source ``docker-registry`` holds a random index (pushed with
:mod:`luff.testing`). Each run starts a fresh, empty destination -- either
``docker-registry`` or ``luff registry serve --storage DIR`` (both store on
disk, both without access logs) -- and times only
``skopeo copy --all docker://SRC docker://DST``. The two alternate (the
first of each round rotates). ``--memory`` adds a third contender: the
embedded registry without ``--storage``.

Prints the medians and the median ratio embedded/distribution
(target: <= 1.5), and checks that every copy kept the index digest.

    .venv/bin/python bench/bench_server.py [--runs 5] [--mb 65] [--memory]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    LUFF,
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


class Embedded:
    """``luff registry serve`` on a free port (disk storage in a temp dir, or memory)."""

    def __init__(self, memory: bool = False, luff: str = LUFF) -> None:
        self.memory = memory
        self.luff = luff
        self.dir = Path(tempfile.mkdtemp(prefix="luff-bench-embedded-"))
        self.host = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Embedded:
        cmd = [self.luff, "registry", "serve", "--address", "127.0.0.1:0", "--quiet"]
        if not self.memory:
            cmd += ["--storage", str(self.dir / "data")]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self._proc.stdout is not None
        self.host = self._proc.stdout.readline().strip()
        if not self.host:
            sys.exit("bench: luff registry serve did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(30)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="measured runs per registry (default 5)")
    ap.add_argument("--mb", type=float, default=65.0, help="index payload in MB (default 65)")
    ap.add_argument("--layers", type=int, default=2, help="layers per image (default 2)")
    ap.add_argument("--memory", action="store_true", help="also time the in-memory storage")
    luff_options(ap)
    args = ap.parse_args()
    skopeo = need("skopeo")
    tools = luffs(args)
    env = clean_env()

    with Registry("source") as src:
        print(f"pushing a {args.mb:g} MB 3-platform index to {src.host} ...", flush=True)
        digest = push_random_index(f"{src.host}/bench/app:v1", total_mb=args.mb, layers=args.layers)
        print(f"source index {digest}", flush=True)

        def copy_into(start: Callable[[], object]) -> Callable[[int], Timing]:
            def runner(i: int) -> Timing:
                with start() as dst:  # type: ignore[attr-defined]
                    t = run(
                        [
                            skopeo,
                            "copy",
                            "--all",
                            "--quiet",
                            "--src-tls-verify=false",
                            "--dest-tls-verify=false",
                            f"docker://{src.host}/bench/app:v1",
                            f"docker://{dst.host}/bench/copy:v1",
                        ],
                        env=env,
                    )
                    got = remote_digest(f"{dst.host}/bench/copy:v1")
                    if got != digest:
                        sys.exit(f"bench: digest changed in {dst.host}: {got} != {digest}")
                return t

            return runner

        runners = {
            "distrib": copy_into(lambda: Registry("dest")),
            "embedded": copy_into(lambda: Embedded(luff=tools["luff"])),
        }
        if "before" in tools:
            runners["emb-old"] = copy_into(lambda: Embedded(luff=tools["before"]))
        if args.memory:
            runners["emb-mem"] = copy_into(lambda: Embedded(memory=True))
        print(f"\nskopeo copy --all into a fresh registry, {args.runs} runs each:", flush=True)
        with busy(args.busy):
            times = alternate(runners, args.runs)
    print(f"\n{loadavg()}")
    ratio = report(times, "distrib", nbytes=index_bytes(args.mb, args.layers))
    verdict = "meets" if ratio <= 1.5 else "MISSES"
    print(f"\nembedded/distribution median ratio {ratio:.2f} ({verdict} the target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
