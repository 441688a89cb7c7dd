"""Benchmark: one big blob (300 MB), single stream, against the ``curl | sha256sum`` floor.

A ``docker-registry`` on loopback holds an image whose one layer is 300 MB of
random bytes. In one run, alternating (the first of each round rotates),
after one unrecorded warm-up round:

- ``floor``: ``curl -s URL | sha256sum`` of the blob (no disk write, the hash
  in a second process); ``floor-ossl`` the same with ``openssl dgst -sha256``
  (coreutils' sha256sum hashes at about 300 MB/s here, OpenSSL at 1.2-1.6 GB/s
  with the CPU's SHA instructions, as luff's hashlib does);
- registry -> OCI layout, verified: ``luff pull SRC DIR`` and
  ``skopeo copy docker://SRC oci:DIR:v1`` (a fresh directory each run);
- registry -> registry: ``luff copy SRC DST`` and ``skopeo copy`` into a
  freshly started, empty destination registry each run.

Prints min/median/max wall time, MB/s and median CPU per command, the load
average, and the ratios to the floor. Targets: ``luff pull`` <= 1.2x the
floor. ``--before PATH`` also times another luff (the old one) as ``*-before``.

    .venv/bin/python bench/bench_big.py [--runs 7] [--mb 300] [--before PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import zlib
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
    median,
    need,
    remote_digest,
    run,
)


def push_big(ref: str, nbytes: int) -> tuple[str, str, str]:
    """Push an image whose one layer is about *nbytes* random bytes; returns
    ``(image digest, layer digest, layer sha256 hex)``."""
    from luff.context import Context
    from luff.model import mediatypes as mt
    from luff.model.manifest import Manifest
    from luff.stores.memory import MemoryStore
    from luff.testing import Image

    store = MemoryStore()
    # Random bytes in a gzip stream of stored (uncompressed) blocks: a real gzip header
    # keeps skopeo from compressing the layer, which would change its digest.
    z = zlib.compressobj(0, zlib.DEFLATED, 31)
    data = z.compress(os.urandom(nbytes)) + z.flush()
    layer = store.add_blob(data, mt.OCI_LAYER_GZIP)
    del data
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [str(layer.digest)]},
    }
    config = store.add_blob(json.dumps(cfg).encode(), mt.OCI_CONFIG)
    m = Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": config.to_dict(),
            "layers": [layer.to_dict()],
        }
    )
    store.push_manifest(m)
    ctx = Context()
    try:
        Image(m.descriptor(), m, store).push(ref, ctx)
    finally:
        ctx.close()
    return str(m.digest), str(layer.digest), layer.digest.hex


def touch_pages(work: Path, nbytes: int) -> None:
    """Write and delete *nbytes* of file data (untimed) before each run.

    On this VM the first write into memory the guest has not touched for a
    while costs about 3 s of system time per GB (the host backs the pages as
    they are touched); freed pages are cheap again. Without this, whichever
    command runs right after another one's files were deleted wins.
    """
    block = bytes(1 << 20)
    path = work / "pages"
    with open(path, "wb") as f:
        for _ in range(nbytes // len(block) + 1):
            f.write(block)
    path.unlink()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="measured runs per command (default 7)")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first")
    ap.add_argument("--mb", type=float, default=300.0, help="blob size in MB (default 300)")
    ap.add_argument("--no-registry", action="store_true", help="skip registry -> registry")
    luff_options(ap)
    args = ap.parse_args()
    skopeo = need("skopeo")
    need("curl")
    need("sha256sum")
    tools = luffs(args)
    env = clean_env()
    nbytes = int(args.mb * 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="luff-bench-big-"))
    policy = work / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))

    try:
        with Registry("src") as src:
            source = f"{src.host}/bench/big:v1"
            digest, layer, layer_hex = push_big(source, nbytes)
            url = f"http://{src.host}/v2/bench/big/blobs/{layer}"
            print(f"source {source} {digest}: one layer of {nbytes / 1e6:.0f} MB; {loadavg()}")

            def floor(i: int) -> Timing:
                out = work / "floor.txt"
                t = run(
                    ["bash", "-c", f"set -o pipefail; curl -sf '{url}' | sha256sum > '{out}'"],
                    env=env,
                )
                if out.read_text().split()[0] != layer_hex:
                    sys.exit("bench: curl | sha256sum gave another digest")
                return t

            def to_layout(argv: Callable[[Path], list[str]], name: str) -> Callable[[int], Timing]:
                def runner(i: int) -> Timing:
                    out = work / f"{name}-{i + 10}"
                    t = run(argv(out), env=env)
                    blob = out / "blobs" / "sha256" / layer_hex
                    if not blob.exists():
                        sys.exit(f"bench: {name} did not write the layer {layer}")
                    if i == 0 and file_sha256(blob) != layer_hex:
                        sys.exit(f"bench: {name} wrote another blob")
                    shutil.rmtree(out)
                    return t

                return runner

            def to_registry(argv: Callable[[str], list[str]]) -> Callable[[int], Timing]:
                def runner(i: int) -> Timing:
                    with Registry("dst") as dst:
                        ref = f"{dst.host}/bench/big:v1"
                        t = run(argv(ref), env=env)
                        if remote_digest(ref) != digest:
                            sys.exit(f"bench: {ref} does not hold the image")
                    return t

                return runner

            def floor_ossl(i: int) -> Timing:
                out = work / "floor-ossl.txt"
                t = run(
                    [
                        "bash",
                        "-c",
                        f"set -o pipefail; curl -sf '{url}' | openssl dgst -sha256 -r > '{out}'",
                    ],
                    env=env,
                )
                if out.read_text().split()[0] != layer_hex:
                    sys.exit("bench: curl | openssl dgst gave another digest")
                return t

            runners: dict[str, Callable[[int], Timing]] = {"floor": floor}
            if shutil.which("openssl"):
                runners["floor-ossl"] = floor_ossl
            warm = {}
            for name, luff in tools.items():
                sfx = "" if name == "luff" else "-before"
                runners[f"pull{sfx}"] = to_layout(
                    lambda out, luff=luff: [luff, "pull", source, str(out)], f"pull{sfx}"
                )
            skopeo_oci = [skopeo, "--policy", str(policy), "copy", "-q", "--src-tls-verify=false"]
            runners["skopeo-oci"] = to_layout(
                lambda out: [*skopeo_oci, f"docker://{source}", f"oci:{out}:v1"], "skopeo-oci"
            )
            if not args.no_registry:
                for name, luff in tools.items():
                    sfx = "" if name == "luff" else "-before"
                    runners[f"copy{sfx}"] = to_registry(
                        lambda ref, luff=luff: [luff, "copy", source, ref]
                    )
                skopeo_reg = [skopeo, "copy", "-q", "--src-tls-verify=false"]
                runners["skopeo"] = to_registry(
                    lambda ref: [
                        *skopeo_reg,
                        "--dest-tls-verify=false",
                        f"docker://{source}",
                        f"docker://{ref}",
                    ]
                )
            for name, runner in runners.items():

                def warmed(i: int, runner: Callable[[int], Timing] = runner) -> Timing:
                    touch_pages(work, nbytes)
                    return runner(i)

                warm[name] = warmed
            with busy(args.busy):
                times = alternate(warm, args.runs, warmup=args.warmup)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{loadavg()}")
    base = median(times["floor"])
    print(
        f"{'command':<14} {'runs':>4} {'min':>7} {'median':>7} {'max':>7} {'MB/s':>7} "
        f"{'cpu':>7}  ratio to the floor"
    )
    for name, ts in times.items():
        walls = [t.wall for t in ts]
        med = median(ts)
        cpu = statistics.median(t.cpu for t in ts)
        print(
            f"{name:<14} {len(ts):>4} {min(walls):7.3f} {med:7.3f} {max(walls):7.3f} "
            f"{nbytes / med / 1e6:7.1f} {cpu:7.3f}  {med / base:.2f}x"
        )
    print("\ntarget: luff pull (registry -> layout, verified) <= 1.20x curl | sha256sum")
    if "floor-ossl" in times:
        f2 = median(times["floor-ossl"])
        for name in ("pull", "copy"):
            if name in times:
                print(f"{name} against curl | openssl dgst: {median(times[name]) / f2:.2f}x")
    if "before" in tools:
        for what in ("pull", "copy"):
            if f"{what}-before" in times:
                a, b = median(times[what]), median(times[f"{what}-before"])
                print(f"after/before {what:<5} {a / b:.2f}  ({a:.3f} s vs {b:.3f} s)")


if __name__ == "__main__":
    main()
