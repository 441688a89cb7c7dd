"""Shared helpers for the benchmarks in bench/.

- :class:`Registry` starts Debian's ``docker-registry`` on a free loopback
  port with its storage in a temporary directory.
- :func:`push_random_index` pushes a random 3-platform index (about 65 MB
  of incompressible layers by default) with :mod:`luff.testing`.
- :func:`alternate` runs several commands in alternating order and
  :func:`report` prints medians and the median ratio.
- :func:`luff_options` adds ``--luff PATH`` (the luff to measure) and
  ``--before PATH`` (another luff, the old one say, measured in the same run
  as ``before``); :func:`loadavg` is the load average, printed with every result.

Run a bench as ``.venv/bin/python bench/bench_copy.py`` from the repository
root; see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

REGISTRY_BIN = "/usr/bin/docker-registry"
PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")
#: The venv's ``luff`` console script (next to the running interpreter).
LUFF = str(Path(sys.executable).with_name("luff"))


def need(tool: str) -> str:
    """The path of *tool*, or exit with a message naming it."""
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"bench: {tool} is not installed (apt-get install docker-registry skopeo)")
    return path


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """A plain ``docker-registry`` on a free loopback port, storing in a temp dir.

    Use as a context manager; the process and its storage are removed on exit.
    """

    def __init__(self, name: str = "registry") -> None:
        self.name = name
        self.port = 0
        self.dir = Path()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        """Start the registry and wait until ``/v2/`` answers."""
        need(REGISTRY_BIN)
        self.dir = Path(tempfile.mkdtemp(prefix=f"luff-bench-{self.name}-"))
        self.port = free_port()
        cfg = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.dir / "data")}},
            "http": {"addr": self.host, "secret": "luff-bench"},
        }
        conf = self.dir / "config.yml"
        conf.write_text(json.dumps(cfg))  # JSON is YAML
        log = open(self.dir / "registry.log", "wb")  # noqa: SIM115 (owned by the process)
        self._proc = subprocess.Popen([REGISTRY_BIN, "serve", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2)
                return self
            except urllib.error.HTTPError:
                return self
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.stop()
                    sys.exit(f"bench: docker-registry did not start; see {self.dir}/registry.log")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the process and delete its storage."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self.dir != Path() and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def busy(n: int) -> Iterator[None]:
    """*n* processes spinning on the CPU for the block (CPU contention; 0: none)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, n))]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def luff_options(ap: argparse.ArgumentParser) -> None:
    """``--luff PATH``, ``--before PATH`` and ``--busy N``."""
    ap.add_argument(
        "--luff", default=LUFF, metavar="PATH", help="the luff to measure (default: the venv's)"
    )
    ap.add_argument(
        "--before",
        metavar="PATH",
        help="also measure this luff, as 'before' (an older one, in a worktree of its own)",
    )
    ap.add_argument(
        "--busy",
        type=int,
        default=0,
        metavar="N",
        help="keep N processes spinning on the CPU during the runs (contention)",
    )


def luffs(args: argparse.Namespace) -> dict[str, str]:
    """``{"luff": PATH}``, plus ``"before"`` when ``--before`` was given; exits if one is missing."""
    out = {"luff": str(args.luff)}
    if args.before:
        out["before"] = str(args.before)
    for name, path in out.items():
        if not Path(path).exists():
            sys.exit(f"bench: {path} ({name}) not found")
    return out


def loadavg() -> str:
    """The 1, 5 and 15-minute load averages, as text."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def median(ts: Sequence[Timing]) -> float:
    """The median wall time of *ts*."""
    return statistics.median(t.wall for t in ts)


def remote_digest(ref: str) -> str:
    """The ``Docker-Content-Digest`` of ``HOST/REPO:TAG`` (plain HTTP), by a HEAD with urllib."""
    from luff.model.mediatypes import ACCEPT

    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{tag}", method="HEAD", headers={"Accept": ACCEPT}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(r.headers["Docker-Content-Digest"])


def push_random_index(
    address: str,
    *,
    total_mb: float = 65.0,
    layers: int = 2,
    platforms: Sequence[str] = PLATFORMS,
) -> str:
    """Push a random index of ``len(platforms)`` images to *address*; returns its digest.

    The layers hold random (incompressible) bytes, so *total_mb* (10^6 bytes)
    is close to the bytes that go over the wire.
    """
    from luff.context import Context
    from luff.testing import random_index

    size = int(total_mb * 1_000_000 / (len(platforms) * layers))
    index = random_index(tuple(platforms), layers=layers, size=size)
    ctx = Context()
    try:
        index.push(address, ctx)
    finally:
        ctx.close()
    return str(index.digest)


def index_bytes(total_mb: float, layers: int, platforms: Sequence[str] = PLATFORMS) -> int:
    """Approximate payload bytes of :func:`push_random_index` with these arguments."""
    return int(total_mb * 1_000_000 / (len(platforms) * layers)) * len(platforms) * layers


@dataclass
class Timing:
    """One measured run: wall-clock seconds and the CPU seconds (user+sys) of the command."""

    wall: float
    cpu: float


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> Timing:
    """Run *cmd* (output captured), exit the bench if it fails; returns its timing."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(list(cmd), capture_output=True, env=env)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(
            f"bench: command failed ({p.returncode}): {' '.join(cmd)}\n"
            f"{p.stderr.decode(errors='replace')}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(dt, cpu)


def alternate(
    runners: dict[str, Callable[[int], Timing]], runs: int, *, warmup: int = 1
) -> dict[str, list[Timing]]:
    """Call each runner ``runs`` times, rotating which goes first; returns timings per name.

    A runner gets the run number (negative for warm-up runs, which are not
    recorded) and returns its :class:`Timing`.
    """
    names = list(runners)
    times: dict[str, list[Timing]] = {n: [] for n in names}
    for i in range(-warmup, runs):
        k = i % len(names)
        for n in names[k:] + names[:k]:
            t = runners[n](i)
            if i >= 0:
                times[n].append(t)
            note = "  (warm-up)" if i < 0 else ""
            print(f"  run {i:>2} {n:<8} {t.wall:7.3f} s  cpu {t.cpu:6.3f} s{note}", flush=True)
    return times


def report(times: dict[str, list[Timing]], baseline: str, *, nbytes: int = 0) -> float:
    """Print wall min/median/max, median CPU and median ratios against *baseline*.

    Returns the wall-clock median ratio of the first tool that is not the baseline.
    """
    base = statistics.median(t.wall for t in times[baseline])
    first_ratio = 0.0
    print()
    print(
        f"{'tool':<8} {'runs':>4} {'min':>7} {'median':>7} {'max':>7} "
        f"{'MB/s':>6} {'cpu':>6}  ratio (median wall)"
    )
    for name, ts in times.items():
        walls = [t.wall for t in ts]
        med = statistics.median(walls)
        cpu = statistics.median(t.cpu for t in ts)
        mbs = f"{nbytes / med / 1e6:6.1f}" if nbytes else f"{'':>6}"
        ratio = med / base
        if name != baseline and not first_ratio:
            first_ratio = ratio
        print(
            f"{name:<8} {len(ts):>4} {min(walls):7.3f} {med:7.3f} {max(walls):7.3f} "
            f"{mbs} {cpu:6.3f}  {ratio:.2f}x {baseline}"
        )
    return first_ratio


def clean_env() -> dict[str, str]:
    """The environment for tool subprocesses: the current one without proxy settings.

    ``PYTHONDONTWRITEBYTECODE`` is dropped too: an installed luff has compiled
    bytecode, so the warm-up run caches it instead of every run recompiling.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if "proxy" not in k.lower() and k != "PYTHONDONTWRITEBYTECODE"
    }


class LoadAverage:
    """Samples the 1-minute load average every few seconds in a thread, for the report.

    ``with LoadAverage() as load: ...`` then ``str(load)`` is ``"2.9-4.3"``
    (the lowest and highest sample).
    """

    def __init__(self, every: float = 5.0) -> None:
        import threading

        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> LoadAverage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def __str__(self) -> str:
        s = self.samples or [os.getloadavg()[0]]
        return f"{min(s):.1f}-{max(s):.1f}"
