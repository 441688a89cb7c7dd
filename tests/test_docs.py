"""The documentation is tested: every example on every page runs, and its output must match.

How a page's examples are run and compared: tests/docs_harness.py. What each
page needs first (registries, images, files): tests/docs_pages.py.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_harness import (
    ROOT,
    RUN_LANGS,
    Block,
    ExampleFailed,
    Page,
    matches,
    normalize,
    pages,
    parse_blocks,
    split_console,
)
from tests.docs_pages import SETUPS, run_page

PAGES = pages()


@pytest.mark.parametrize("page", PAGES)
def test_page_examples(page: str, tmp_path: Path) -> None:
    """Every console, shell and Python example of the page runs and prints what it shows."""
    run_page(page, tmp_path)


def test_every_page_with_examples_is_collected() -> None:
    assert "README.md" in PAGES
    assert len([p for p in PAGES if p.startswith("docs/")]) >= 20
    missing = sorted(set(SETUPS) - set(PAGES))
    assert not missing, f"set-ups for pages that do not exist: {missing}"


def test_code_blocks_say_what_they_are() -> None:
    """A fence without a language could be an untested shell example: each must name one."""
    bare = [b.where for p in PAGES for b in parse_blocks(p, (ROOT / p).read_text()) if not b.lang]
    assert not bare, f"code blocks without a language (use text, console, sh, python…): {bare}"


def test_skipped_examples_are_few_and_say_why() -> None:
    skipped = [
        b
        for p in PAGES
        for b in parse_blocks(p, (ROOT / p).read_text())
        if b.skip is not None and b.lang in RUN_LANGS
    ]
    assert all(b.skip and b.skip != "(no reason given)" for b in skipped)
    run = [
        b
        for p in PAGES
        for b in parse_blocks(p, (ROOT / p).read_text())
        if b.skip is None and b.lang in RUN_LANGS
    ]
    assert len(skipped) * 5 < len(run), [b.where for b in skipped]


# --- the harness itself: it must notice drift --------------------------------------------------


def test_normalize_and_match() -> None:
    shown = normalize("localhost:5000/app@sha256:0a25…  oci-manifest   linux/amd64  477\n", [])
    printed = normalize(
        "localhost:41623/app@sha256:" + "ab" * 32 + "  oci-manifest linux/amd64 477\n", []
    )
    assert shown == printed == ["localhost:<port>/app@sha256:… oci-manifest linux/amd64 477"]
    assert matches(["a", "…", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "…"], ["a"])
    assert matches(["total copy: …"], ["total copy: 9 (14.6 kB)"])
    assert not matches(["a", "b"], ["a", "c"])
    assert not matches(["a"], ["a", "b"])
    assert normalize("created 2026-12-02T00:54:58Z", []) == ["created <time>"]


def test_console_blocks_split_into_commands() -> None:
    block = Block("p.md", 1, "console", {}, "$ luff a \\\n    b\nout 1\nout 2\n$ luff c\n")
    cmds = split_console(block)
    assert [c.text for c in cmds] == ["luff a \\\n    b", "luff c"]
    assert cmds[0].expected == "out 1\nout 2"
    assert cmds[0].line == 2 and cmds[1].line == 6


def test_skip_markers() -> None:
    text = (
        '!!! note "Not tested: needs Docker Hub"\n    ```console\n    $ luff ls ubuntu\n    ```\n'
        "> **Not tested:** needs a network\n\n```sh\nluff copy a b\n```\n"
        "```python\nprint(1)\n```\n"
    )
    blocks = parse_blocks("p.md", text)
    assert [b.skip for b in blocks] == ["needs Docker Hub", "needs a network", None]
    assert blocks[0].text == "$ luff ls ubuntu\n"


def test_a_drifted_output_fails(tmp_path: Path) -> None:
    page = Page("p.md", tmp_path)
    block = Block("p.md", 1, "console", {}, "$ luff version\n9.9.9\n")
    with pytest.raises(ExampleFailed, match=r"p.md:2: `luff version` printed something else"):
        page.run([block])
    failing = Block("p.md", 1, "console", {}, "$ luff digest nothing-here:1\n")
    with pytest.raises(ExampleFailed, match="exited 1"):
        page.run([failing])
    shown_error = Block(
        "p.md", 1, "console", {}, "$ luff digest oci:./nothing\nluff: error: oci:./nothing: …\n"
    )
    page.run([shown_error])


def test_names_are_substituted_both_ways(tmp_path: Path) -> None:
    page = Page("p.md", tmp_path, names={"localhost:5000": "127.0.0.1:41623"})
    assert page.to_real("luff ls localhost:5000/app") == "luff ls 127.0.0.1:41623/app"
    assert page.to_real("localhost:50001/x") == "localhost:50001/x"
    assert page.to_shown("127.0.0.1:41623/app@sha256:…") == "localhost:5000/app@sha256:…"


# --- the API reference: every public name has a docstring ---------------------------------------

PUBLIC_MODULES = [
    "luff.index",
    "luff.referrers",
    "luff.mutate",
    "luff.ops.basic",
    "luff.ops.layout",
    "luff.ops.verify",
    "luff.copy",
    "luff.plan",
    "luff.context",
    "luff.errors",
    "luff.model.address",
    "luff.model.descriptor",
    "luff.model.digest",
    "luff.model.manifest",
    "luff.model.matching",
    "luff.model.mediatypes",
    "luff.model.platform",
    "luff.model.reference",
    "luff.model.referrers",
    "luff.model.jsonutil",
    "luff.stores",
    "luff.stores.base",
    "luff.testing",
    "luff.server",
]


def _public_names(mod: object) -> list[str]:
    names = getattr(mod, "__all__", None)
    if names is not None:
        return list(names)
    return [
        n
        for n, o in vars(mod).items()
        if not n.startswith("_")
        and (inspect.isclass(o) or inspect.isfunction(o))
        and getattr(o, "__module__", None) == getattr(mod, "__name__", None)
    ]


def test_public_names_have_docstrings() -> None:
    """What the API reference shows: modules, classes, functions, public methods and properties."""
    missing = []
    for name in PUBLIC_MODULES:
        mod = importlib.import_module(name)
        if not inspect.getdoc(mod):
            missing.append(name)
        for n in _public_names(mod):
            obj = getattr(mod, n)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not inspect.getdoc(obj):
                missing.append(f"{name}.{n}")
            if inspect.isclass(obj):
                for an, attr in vars(obj).items():
                    if an.startswith("_"):
                        continue
                    fn = (
                        attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
                    )
                    if (
                        inspect.isfunction(fn) or isinstance(attr, property)
                    ) and not inspect.getdoc(getattr(obj, an)):
                        missing.append(f"{name}.{n}.{an}")
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)


def test_api_pages_name_every_public_module() -> None:
    text = "\n".join(p.read_text() for p in (ROOT / "docs/reference/api").glob("*.md"))
    shown = set(re.findall(r"^::: ([\w.]+)", text, re.M))
    assert set(PUBLIC_MODULES) <= shown | {"luff.model.jsonutil"}, set(PUBLIC_MODULES) - shown


# --- shell completion ---------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_is_produced(shell: str) -> None:
    luff = Path(sys.executable).parent / "luff"
    p = subprocess.run(
        [str(luff)],
        env={"_LUFF_COMPLETE": f"{shell}_source", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert "_LUFF_COMPLETE" in p.stdout and "luff" in p.stdout


def test_completion_lists_lazy_commands_and_options() -> None:
    luff = Path(sys.executable).parent / "luff"
    env = {"_LUFF_COMPLETE": "bash_complete", "COMP_WORDS": "luff in", "COMP_CWORD": "1"}
    p = subprocess.run([str(luff)], env=env, capture_output=True, text=True, timeout=60)
    assert "plain,index" in p.stdout, p.stdout
    env = {
        "_LUFF_COMPLETE": "bash_complete",
        "COMP_WORDS": "luff index create --dr",
        "COMP_CWORD": "3",
    }
    p = subprocess.run([str(luff)], env=env, capture_output=True, text=True, timeout=60)
    assert "plain,--dry-run" in p.stdout, p.stdout


def test_cli_reference_sees_the_lazy_commands() -> None:
    """mkdocs-click lists a group's loaded commands; docs/hooks.py loads the lazy ones first."""
    import importlib.util

    import click

    from luff.cli.main import _LAZY, cli

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs/hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    hooks.on_config({})
    assert set(_LAZY) <= set(cli.commands)
    ctx = click.Context(cli, info_name="luff")
    assert sorted(cli.commands) == cli.list_commands(ctx)
    text = (ROOT / "docs/reference/cli.md").read_text()
    assert ":module: luff.cli.main" in text and ":command: cli" in text
