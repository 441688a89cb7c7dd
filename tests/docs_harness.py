"""Run the examples of a Markdown page and compare their output with what the page shows.

The conventions (docs/contributing.md describes them for writers):

- A ```` ```console ```` block is a shell session: each ``$ `` line is a command
  (a line ending in ``\\`` continues it), the lines up to the next ``$ `` are
  its expected output (stdout and stderr, as a terminal shows them). A command
  must exit 0 unless its expected output shows a ``luff: error:`` line. A
  command ending in `` &`` runs in the background until the page ends; ``export
  NAME=VALUE`` sets a variable for the page's later commands.
- A ```` ```sh ```` (or ``bash``/``shell``) block is a script: it must exit 0;
  its output is not compared.
- A ```` ```python ```` block runs in one namespace per page; a ```` ```text
  title="Output" ```` block right after it is its expected stdout. A python
  block with ``title="NAME.py"`` is written to the file NAME.py instead.
- Any other block with ``title="FILE"`` (a spec file, an SBOM) is written to FILE
  in the page's directory before the blocks after it run.
- A block whose nearest non-blank line above says ``Not tested: REASON`` (in an
  admonition title, ``!!! note "Not tested: needs Docker Hub"``, or in a quote,
  ``> **Not tested:** needs Docker Hub``) is not run; the reader sees why.

Registry names shown on a page (``localhost:5000``, ``build.internal:5000``)
are replaced by the hosts of embedded registries the page's set-up started
(tests/docs_pages.py), in commands, code and files; in the output the hosts
are turned back into the names. When comparing, digests (``sha256:`` and at
least 4 hex digits, optionally ``…``) become ``sha256:…``, ports of known hosts
``:<port>``, RFC 3339 times ``<time>``, runs of spaces one space. An expected
line that is just ``…`` matches any number of lines; one ending in `` …``
matches any line that starts with what comes before.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import select
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGS = {"sh", "bash", "shell"}
RUN_LANGS = {"console", "python", *SHELL_LANGS}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_SKIP = re.compile(r"Not tested:\**\s*(?P<reason>[^\"*]*)")


@dataclass
class Block:
    """One fenced code block of a page."""

    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    attrs: dict[str, str]
    text: str
    skip: str | None = None  # the reason, when marked "Not tested"
    indent: str = ""

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def title(self) -> str:
        return self.attrs.get("title", "")


def parse_blocks(page: str, text: str) -> list[Block]:
    """The fenced code blocks of *text* (Markdown), with their skip markers."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = lines[i].strip()
            lead = len(lines[i]) - len(lines[i].lstrip())
            if (
                close.startswith(fence[0] * len(fence))
                and not close.strip(fence[0])
                and lead <= len(indent) + 3
            ):
                break
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        lang = info.split(None, 1)[0] if info else ""
        attrs = dict(_ATTR.findall(info))
        skip = None
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and (s := _SKIP.search(lines[j])):
            skip = s["reason"].strip() or "(no reason given)"
        blocks.append(Block(page, start + 1, lang, attrs, "\n".join(body) + "\n", skip, indent))
    return blocks


# --- comparing output -------------------------------------------------------------------------

_DIGEST = re.compile(r"sha256([:-])[0-9a-f]{4,64}…?")
_SHORT = re.compile(r"(?<![\w:-])[0-9a-f]{12}(?!\w)")  # a digest's first 12 digits
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
_SPACES = re.compile(r"[ \t]+")


def normalize(text: str, hosts: list[str]) -> list[str]:
    """*text* as compared: placeholders for digests, ports and times, spaces collapsed."""
    names = sorted({"127.0.0.1", "localhost", *(h.rsplit(":", 1)[0] for h in hosts)}, key=len)
    port = re.compile(
        r"(?<![\w.-])(" + "|".join(re.escape(n) for n in reversed(names)) + r"):\d+(?!\d)"
    )
    out = []
    for line in text.splitlines():
        line = _DIGEST.sub(r"sha256\1…", line)
        line = _SHORT.sub("<short>", line)
        line = port.sub(r"\1:<port>", line)
        line = _TIME.sub("<time>", line)
        out.append(_SPACES.sub(" ", line).rstrip())
    while out and not out[-1]:
        out.pop()
    while out and not out[0]:
        out.pop(0)
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line, with ``…`` lines matching any number of lines and `` …`` endings prefixes."""

    def line_ok(e: str, a: str) -> bool:
        return a.startswith(e[:-2]) if e.endswith(" …") else e == a

    def go(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i] == "…":
            return any(go(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and line_ok(expected[i], actual[j]) and go(i + 1, j + 1)

    return go(0, 0)


class ExampleFailed(AssertionError):
    """An example did not run, or printed something else than its page shows."""


# --- running a page ---------------------------------------------------------------------------


@dataclass
class Command:
    """One ``$ `` command of a console block and the output the page shows for it."""

    line: int
    text: str
    expected: str


def split_console(block: Block) -> list[Command]:
    """The commands of a console block, each with its expected output."""
    cmds: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if line.strip():
                raise ExampleFailed(f"{block.where}: output before the first '$ ' line: {line!r}")
            i += 1
            continue
        start = i
        cmd = line[2:]
        while cmd.endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd + "\n" + lines[i]
        out: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].startswith("$ "):
            out.append(lines[i])
            i += 1
        cmds.append(Command(block.line + 1 + start, cmd, "\n".join(out)))
    return cmds


@dataclass
class Page:
    """A page's examples run in one directory with its registries; see the module doc."""

    path: str
    workdir: Path
    names: dict[str, str] = field(default_factory=dict)  # shown name -> real host
    env: dict[str, str] = field(default_factory=dict)
    ran: int = 0
    skipped: list[str] = field(default_factory=list)
    record: bool = False  # print what each example printed instead of comparing
    log: list[str] = field(default_factory=list)
    # with record: (first line, number of lines, new text, indent) of outputs that differ
    fills: list[tuple[int, int, str, str]] = field(default_factory=list)
    _background: list[subprocess.Popen[str]] = field(default_factory=list)
    _namespace: dict[str, object] = field(default_factory=dict)

    # substitution of the names a page shows by the hosts of the registries started for it

    def to_real(self, text: str) -> str:
        for name in sorted(self.names, key=len, reverse=True):
            text = re.sub(
                r"(?<![\w.-])" + re.escape(name) + r"(?![\w-]|\.\w|:\d)", self.names[name], text
            )
        return text

    def to_shown(self, text: str) -> str:
        for name, host in self.names.items():
            text = re.sub(re.escape(host) + r"(?!\d)", name, text)
        return text.replace(str(self.workdir), "~")

    def isolation(self) -> dict[str, str]:
        """The page's directory is its home: no credentials of the user running the tests."""
        home = str(self.workdir)
        return {
            "HOME": home,
            "DOCKER_CONFIG": f"{home}/.docker",
            "XDG_RUNTIME_DIR": f"{home}/.run",
            "XDG_CONFIG_HOME": f"{home}/.config",
            "REGISTRY_AUTH_FILE": "",
        }

    def command_env(self) -> dict[str, str]:
        bindir = str(Path(sys.executable).parent)
        return {
            **os.environ,
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.isolation(),
            **self.env,
        }

    def run(self, blocks: list[Block]) -> None:
        """Run every block in order; raise ExampleFailed at the first difference."""
        try:
            for n, block in enumerate(blocks):
                if block.skip is not None:
                    if block.lang in RUN_LANGS:
                        self.skipped.append(f"{block.where}: {block.skip}")
                    continue
                if block.lang == "python" and not block.title:
                    nxt = blocks[n + 1] if n + 1 < len(blocks) else None
                    out = nxt if nxt and nxt.title == "Output" else None
                    self.run_python(block, out)
                elif block.title and block.title != "Output":
                    self.write_file(block)
                elif block.lang == "console":
                    for cmd in split_console(block):
                        self.run_command(block, cmd)
                elif block.lang in SHELL_LANGS:
                    self.run_script(block)
        finally:
            self.stop_background()

    def write_file(self, block: Block) -> None:
        path = self.workdir / block.title
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_real(block.text))

    def fail(self, where: str, what: str, expected: str, actual: str) -> ExampleFailed:
        hosts = list(self.names)
        e, a = normalize(expected, hosts), normalize(actual, hosts)
        diff = "\n".join(difflib.unified_diff(e, a, "page shows", "command printed", lineterm=""))
        return ExampleFailed(f"{where}: {what}\n{diff or actual}")

    def compare(
        self, where: str, what: str, expected: str, actual: str, span: tuple[int, str] = (0, "")
    ) -> None:
        hosts = list(self.names)
        ok = matches(normalize(expected, hosts), normalize(actual, hosts))
        if self.record:
            short = abbreviate(actual)
            self.log.append(f"--- {where} {what}{'' if ok else ' (differs)'}\n{short}")
            if not ok and span[0]:
                n = len(expected.splitlines())
                self.fills.append((span[0], n, short, span[1]))
            return
        if not ok:
            raise self.fail(where, what, expected, actual)

    def run_command(self, block: Block, cmd: Command) -> None:
        where = f"{block.page}:{cmd.line}"
        self.ran += 1
        text = cmd.text.strip()
        if m := re.fullmatch(r"export (\w+)=(.*)", text):
            self.env[m[1]] = self.to_real(" ".join(shlex.split(m[2])))
            return
        real = self.to_real(text)
        if text.endswith("&"):
            self.start_background(where, real[:-1].rstrip(), cmd)
            return
        p = subprocess.run(
            ["bash", "-o", "pipefail", "-c", real],
            cwd=self.workdir,
            env=self.command_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=180,
        )
        actual = self.to_shown(p.stdout)
        if p.returncode != 0 and "luff: error:" not in cmd.expected and not self.record:
            raise self.fail(where, f"`{text}` exited {p.returncode}", cmd.expected, actual)
        first_out = cmd.line + text.count("\n") + 1
        self.compare(
            where,
            f"`{text}` printed something else",
            cmd.expected,
            actual,
            (first_out, block.indent),
        )

    def start_background(self, where: str, real: str, cmd: Command) -> None:
        p = subprocess.Popen(
            ["bash", "-c", "exec " + real],
            cwd=self.workdir,
            env=self.command_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._background.append(p)
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], 20)
        first = p.stdout.readline() if ready else ""
        if not first:
            raise ExampleFailed(f"{where}: `{cmd.text}` printed nothing within 20 s")
        if cmd.expected.strip():
            self.compare(where, "background command", cmd.expected, self.to_shown(first))

    def stop_background(self) -> None:
        for p in self._background:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()
        self._background.clear()

    def run_script(self, block: Block) -> None:
        self.ran += 1
        p = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", self.to_real(block.text)],
            cwd=self.workdir,
            env=self.command_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        if p.returncode != 0:
            raise ExampleFailed(
                f"{block.where}: script exited {p.returncode}:\n{self.to_shown(p.stdout)}"
            )

    def run_python(self, block: Block, out: Block | None) -> None:
        self.ran += 1
        code = compile(self.to_real(block.text), block.where, "exec")
        buf = io.StringIO()
        env = {**self.isolation(), **self.env}
        with _chdir(self.workdir), _environ(env), contextlib.redirect_stdout(buf):
            try:
                exec(code, self._namespace)
            except Exception as e:
                raise ExampleFailed(f"{block.where}: {type(e).__name__}: {e}") from e
        if out is not None:
            text = out.text if out.text.strip() else ""
            self.compare(
                block.where,
                "Python printed something else",
                text,
                self.to_shown(buf.getvalue()),
                (out.line + 1, out.indent),
            )


def abbreviate(text: str) -> str:
    """*text* with digests cut to 12 digits and ``…``, tables re-aligned (to write pages)."""
    text = re.sub(r"(sha256[:-][0-9a-f]{12})[0-9a-f]{52}", r"\1…", text)
    text = re.sub(r"^DIGEST {51}( {2,})", r"DIGEST\1", text, flags=re.M)
    text = re.sub(r"^(\S+ +)DIGEST {51}( {2,})", r"\1DIGEST\2", text, flags=re.M)
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def fill(path: Path, fills: list[tuple[int, int, str, str]]) -> None:
    """Write recorded outputs into the page at *path* (bottom up, so line numbers hold)."""
    lines = path.read_text().splitlines()
    for first, n, text, indent in sorted(fills, reverse=True):
        new = [(indent + t) if t else t for t in text.splitlines()] if text else []
        # keep the blank lines that ended the old output (before the next command)
        old = lines[first - 1 : first - 1 + n]
        while old and not old[-1].strip():
            new.append(old.pop())
        lines[first - 1 : first - 1 + n] = new
    path.write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pages() -> list[str]:
    """Every page whose examples the tests run: README.md and docs/**/*.md."""
    found = [
        "README.md",
        *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").rglob("*.md"))),
    ]
    return found
