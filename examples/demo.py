"""luff's main job, end to end, on its own embedded registry.

1. start ``luff registry serve`` on a free port;
2. build three per-platform images with luff's library and push each to its
   own repository (as three CI runners would);
3. ``luff index create`` merges them into one multi-platform tag;
4. ``luff index list`` and ``luff digest --json`` show the result;
5. stop the registry.

Run it with ``make demo`` (which installs luff first) or ``python examples/demo.py``.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

from luff.context import Context
from luff.testing import random_image

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")
LUFF = [sys.executable, "-m", "luff"]


def step(n: int, text: str) -> None:
    print(f"\n== {n}. {text}", flush=True)


def luff(*args: str) -> str:
    """Run the luff CLI, echoing the command and its output."""
    print("$ luff " + " ".join(shlex.quote(a) for a in args), flush=True)
    p = subprocess.run([*LUFF, *args], capture_output=True, text=True)
    if p.stdout:
        print(p.stdout, end="" if p.stdout.endswith("\n") else "\n", flush=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit(f"demo: `luff {args[0]} {args[1] if len(args) > 1 else ''}` failed")
    return p.stdout


def main() -> int:
    step(1, "Start an embedded registry: luff registry serve --address 127.0.0.1:0")
    server = subprocess.Popen(
        [*LUFF, "registry", "serve", "--address", "127.0.0.1:0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        host = server.stdout.readline().strip()
        if not host:
            raise SystemExit("demo: the registry did not start")
        print(f"registry listening on http://{host} (content in memory)", flush=True)

        step(2, "Build one image per platform and push each to its own repository")
        ctx = Context()
        sources = []
        for plat in PLATFORMS:
            name = plat.split("/", 1)[1].replace("/", "")
            ref = f"{host}/build/app-{name}:1.0"
            desc = random_image(plat, layers=2, size=64 * 1024).push(ref, ctx)
            print(f"{plat:14} -> {ref.rsplit(':', 1)[0]}@{desc.digest}", flush=True)
            sources.append(ref)

        step(3, "Merge them into one multi-platform tag in another repository")
        target = f"{host}/release/app:1.0"
        luff("index", "create", target, *sources)

        step(4, "Look at the result")
        luff("index", "list", target)
        luff("digest", "--json", target)
    finally:
        step(5, "Stop the registry")
        server.terminate()
        server.wait(10)
        print("registry stopped", flush=True)
    print("\ndemo finished: one tag, three platforms, built from three repositories")
    return 0


if __name__ == "__main__":
    sys.exit(main())
