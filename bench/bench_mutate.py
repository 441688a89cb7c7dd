"""Benchmark: add a label and a 1 MB layer to every platform of a 3-platform index, luff vs buildah.

Each run starts a fresh ``docker-registry`` on loopback holding a random
3-platform OCI index (``bench/base:v1``, ``--mb`` MB of layers in all; pushed
before the clock starts), then times one of

- ``luff mutate SRC/bench/base:v1 --label org.example.bench=1 --append DIR -t v1-mut``
- buildah: per platform ``buildah from --arch A [--variant V]``,
  ``buildah config --label``, ``buildah add C DIR /``, ``buildah commit``;
  then ``buildah manifest create``, ``manifest add`` x3 and
  ``manifest push --all`` to ``bench/base:v1-mut`` (``--storage-driver vfs``,
  a fresh temporary ``--root``/``--runroot`` per run, ``--tls-verify=false``),
  the steps timed together.

``DIR`` holds one file of 1 MB of random bytes (the same for both tools).
Runs alternate; every result is checked (3 entries, the label on each
platform's config, one more layer). Then luff is re-run onto its own
result: its plan must upload nothing (``--dry-run --json``: no ``copy`` or
``mount``), and the re-run's time is reported. Target: luff <= 0.5 x buildah.

    .venv/bin/python bench/bench_mutate.py [--runs 5] [--mb 30]

Needs root for buildah (as the CI and this machine run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    LUFF,
    PLATFORMS,
    Registry,
    Timing,
    alternate,
    clean_env,
    need,
    push_random_index,
    report,
    run,
)

LABEL = "org.example.bench=1"


def run_out(cmd: list[str], *, env: dict[str, str]) -> tuple[Timing, str]:
    """Like :func:`common.run`, also returning the command's stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, env=env)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed: {p.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(dt, cpu), p.stdout.decode()


def check_result(ref: str, base_layers: int) -> None:
    """Exit unless every platform of *ref* has the label and one more layer (read by skopeo)."""
    for plat in PLATFORMS:
        os_, arch, *variant = plat.split("/")
        cmd = ["skopeo", "--override-os", os_, "--override-arch", arch]
        if variant:
            cmd += ["--override-variant", variant[0]]
        p = subprocess.run(
            [*cmd, "inspect", "--config", "--tls-verify=false", f"docker://{ref}"],
            capture_output=True,
        )
        if p.returncode != 0:
            sys.exit(f"bench: {ref} ({plat}) is not readable: {p.stderr.decode(errors='replace')}")
        cfg = json.loads(p.stdout)
        labels = (cfg.get("config") or {}).get("Labels") or {}
        if labels.get("org.example.bench") != "1":
            sys.exit(f"bench: {ref} ({plat}) lacks the label: {labels}")
        if len(cfg["rootfs"]["diff_ids"]) != base_layers + 1:
            sys.exit(f"bench: {ref} ({plat}) has {len(cfg['rootfs']['diff_ids'])} layers")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="measured runs per tool (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded runs per tool first")
    ap.add_argument("--rerun", type=int, default=5, help="luff re-runs onto its own result")
    ap.add_argument("--mb", type=float, default=30.0, help="total MB of the base (default 30)")
    ap.add_argument("--layers", type=int, default=2, help="layers per base image (default 2)")
    ap.add_argument("--json", metavar="FILE", help="also write the raw times as JSON")
    args = ap.parse_args()
    buildah = need("buildah")
    need("skopeo")
    if os.geteuid() != 0:
        sys.exit("bench: buildah with --root needs root here; run as root")
    if not Path(LUFF).exists():
        sys.exit(f"bench: {LUFF} not found; run with the venv's python")
    env = clean_env()
    run([LUFF, "version"], env=env)
    benv = {**env, "STORAGE_DRIVER": "vfs"}
    work = Path(tempfile.mkdtemp(prefix="bench-mutate-"))
    payload = work / "layer"
    payload.mkdir()
    (payload / "payload.bin").write_bytes(os.urandom(1_000_000))
    print(f"base: {len(PLATFORMS)} platforms x {args.layers} layers, {args.mb:.0f} MB in all")

    def with_base() -> Registry:
        """A fresh registry holding the base index (pushed before the clock starts)."""
        reg = Registry("src").start()
        push_random_index(f"{reg.host}/bench/base:v1", total_mb=args.mb, layers=args.layers)
        return reg

    def luff_run(i: int) -> Timing:
        reg = with_base()
        try:
            src = f"{reg.host}/bench/base:v1"
            dt = run(
                [LUFF, "mutate", src, "--label", LABEL, "--append", str(payload), "-t", "v1-mut"],
                env=env,
            )
            check_result(f"{reg.host}/bench/base:v1-mut", args.layers)
        finally:
            reg.stop()
        return dt

    def buildah_run(i: int) -> Timing:
        tmp = Path(tempfile.mkdtemp(prefix="bench-buildah-"))
        base = [buildah, "--root", str(tmp / "root"), "--runroot", str(tmp / "run")]
        base += ["--storage-driver", "vfs"]
        tls = "--tls-verify=false"
        reg = with_base()
        try:
            src = f"docker://{reg.host}/bench/base:v1"
            steps = []
            images = []
            for plat in PLATFORMS:
                _, arch, *variant = plat.split("/")
                sel = ["--arch", arch] + (["--variant", variant[0]] if variant else [])
                t, out = run_out([*base, "from", tls, *sel, src], env=benv)
                c = out.strip().splitlines()[-1]
                steps.append(t)
                steps.append(run([*base, "config", "--label", LABEL, c], env=benv))
                steps.append(run([*base, "add", c, str(payload), "/"], env=benv))
                name = f"bench-{arch}{''.join(variant)}"
                steps.append(run([*base, "commit", "-q", c, name], env=benv))
                images.append(name)
            steps.append(run([*base, "manifest", "create", "benchlist"], env=benv))
            for name in images:
                add = [
                    *base,
                    "manifest",
                    "add",
                    "benchlist",
                    f"containers-storage:localhost/{name}:latest",
                ]
                steps.append(run(add, env=benv))
            push = [*base, "manifest", "push", "--all", "--quiet", tls, "benchlist"]
            steps.append(run([*push, f"docker://{reg.host}/bench/base:v1-mut"], env=benv))
            check_result(f"{reg.host}/bench/base:v1-mut", args.layers)
        finally:
            reg.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        return Timing(sum(t.wall for t in steps), sum(t.cpu for t in steps))

    try:
        times = alternate({"luff": luff_run, "buildah": buildah_run}, args.runs, warmup=args.warmup)
        ratio = report(times, "buildah")
        print(f"\nmedian ratio luff/buildah: {ratio:.2f} (target <= 0.50)")

        with Registry("src") as reg:
            push_random_index(f"{reg.host}/bench/base:v1", total_mb=args.mb, layers=args.layers)
            cmd = [LUFF, "mutate", f"{reg.host}/bench/base:v1", "--label", LABEL]
            cmd += ["--append", str(payload), "-t", "v1-mut"]
            run(cmd, env=env)
            p = subprocess.run([*cmd, "--dry-run", "--json"], capture_output=True, env=env)
            plan = json.loads(p.stdout)["plans"][0]
            moved = {a: t for a, t in plan["totals"].items() if a in ("copy", "mount")}
            writes = [m for m in plan["manifests"] if m["action"] != "exists"]
            if moved or [m for m in writes if m["action"] != "tag"]:
                sys.exit(f"bench: re-running the mutate would upload {moved} {writes}")
            reruns = [run(cmd, env=env).wall for _ in range(args.rerun)]
        med = statistics.median(reruns)
        print(
            f"luff re-run onto its own result: uploads nothing; median {med:.3f} s over "
            f"{len(reruns)} runs (min {min(reruns):.3f}, max {max(reruns):.3f})"
        )
        if args.json:
            raw = {n: [[t.wall, t.cpu] for t in ts] for n, ts in times.items()}
            Path(args.json).write_text(
                json.dumps({"times": raw, "ratio": ratio, "rerun": reruns}, indent=2)
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
