"""Which modules a command imports: a quick start is a short list, checked here by name.

Each command runs in a fresh interpreter (``luff.cli.main.main``, as the
console script does) that writes ``sys.modules`` to a file on its way out.
No timings: a module that should not be loaded fails the test wherever it
is imported from.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from luff.cli.main import _LAZY, cli

_RUN = """
import atexit, sys
out, sys.argv = sys.argv[1], ["luff", *sys.argv[2:]]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from luff.cli.main import main
main()
"""

#: Never needed to print help or a version.
_LIBRARY = (
    "urllib3",
    "ssl",
    "_ssl",
    "http.client",
    "rich",
    "aiohttp",
    "jq",
    "yaml",
    "dataclasses",
    "json",
    "hashlib",
    "luff.context",
    "luff.copy",
    "luff.plan",
    "luff.stores",
    "luff.registry",
    "luff.ops",
    "luff.model",
    "luff.server",
)


def imported(tmp_path: Path, *args: str, stdin: str = "") -> set[str]:
    """The modules loaded by ``luff ARGS`` (which must succeed)."""
    out = tmp_path / f"modules-{len(list(tmp_path.iterdir()))}.txt"
    p = subprocess.run(
        [sys.executable, "-c", _RUN, str(out), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return set(out.read_text().split())


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The modules of *names* (packages with their submodules) that were loaded."""
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("version",),
        ("--version",),
        ("copy", "--help"),
        ("index", "--help"),
        ("registry", "--help"),
        ("registry", "serve", "--help"),
    ],
)
def test_help_and_version_load_no_library(tmp_path: Path, args: tuple[str, ...]) -> None:
    modules = imported(tmp_path, *args)
    forbidden = _LIBRARY if args[0] != "index" else _LIBRARY[:7]
    assert loaded(modules, forbidden) == []


def test_the_help_of_commands_not_loaded_is_their_own() -> None:
    """``luff --help`` lists lazily loaded commands by the short help kept in ``_LAZY``."""
    ctx = click.Context(cli)
    for name, (_, _, short) in _LAZY.items():
        cmd = cli.get_command(ctx, name)
        assert cmd is not None
        assert cmd.get_short_help_str(1000) == short, name


def test_the_default_jobs_of_the_cli_and_the_library_agree() -> None:
    from luff.context import Settings

    jobs = next(p for p in cli.params if p.name == "jobs")
    assert jobs.default == Settings().jobs


#: Never needed by a copy between plain-HTTP (loopback) registries.
_NOT_FOR_PLAIN_HTTP = (
    "ssl",
    "_ssl",
    "socket",
    "urllib3",
    "http.client",
    "encodings.idna",
    "rich",
    "aiohttp",
    "jq",
    "yaml",
    "email",
    "dataclasses",
    "pathlib",
    "subprocess",
    "luff.server",
    "luff.ops.index",
)


def test_a_plain_http_copy_loads_no_tls_and_a_warm_one_no_threads(tmp_path: Path) -> None:
    from luff.testing import Registry, random_index

    with Registry() as a, Registry() as b:
        src, dst = f"{a.host}/imports/app:1", f"{b.host}/imports/app:1"
        random_index(size=2000).push(src)
        cold = imported(tmp_path, "copy", src, dst)
        assert loaded(cold, _NOT_FOR_PLAIN_HTTP) == []
        assert "hashlib" in cold and "concurrent.futures" in cold  # blobs, in threads
        warm = imported(tmp_path, "copy", src, dst)  # the target has it: two requests
        assert loaded(warm, _NOT_FOR_PLAIN_HTTP) == []
        assert loaded(warm, ("hashlib", "concurrent", "luff.threadpool", "logging")) == []
