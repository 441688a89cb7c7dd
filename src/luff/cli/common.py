"""Shared CLI plumbing: the context object, output helpers, progress.

Imported by every command, so it imports little itself: the library (the
context, the copy engine, rich) is loaded when a command uses it, and
``luff --help`` or ``luff version`` never loads it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from luff.context import Context
    from luff.copy import Plan, PlanItem, Referrers

F = TypeVar("F", bound=Callable[..., Any])

#: How every ``--platform`` option shows what it takes.
PLATFORM_METAVAR = "OS/ARCH[/VARIANT][:OS.VERSION]"


class State:
    """What the global options set; the :class:`~luff.context.Context` is made when first used."""

    def __init__(
        self,
        verbose: int = 0,
        platform: str | None = None,
        ctx: Context | None = None,
        *,
        jobs: int | None = None,
    ) -> None:
        self.verbose = verbose
        self.platform = platform
        self.jobs = jobs
        self._ctx = ctx
        if ctx is not None:
            self._setup(ctx)

    def _setup(self, ctx: Context) -> None:
        ctx.settings.warn_log = warn
        if self.jobs is not None:
            ctx.settings.jobs = self.jobs

    @property
    def ctx(self) -> Context:
        """The context of this run (made on first use: ``luff version`` needs none)."""
        if self._ctx is None:
            from luff.context import Context

            self._ctx = Context()
            self._setup(self._ctx)
        return self._ctx


def state() -> State:
    """The :class:`State` of the current click invocation."""
    obj = click.get_current_context().find_root().obj
    assert isinstance(obj, State)
    return obj


def plan_hook() -> Callable[[Plan], None] | None:
    """:func:`print_plan` under ``-v``, else None."""
    return print_plan if state().verbose else None


@contextlib.contextmanager
def transfer_progress() -> Iterator[RichProgress | None]:
    """A progress display on a terminal (None in pipes), stopped on the way out."""
    progress = progress_for_tty()
    try:
        yield progress
    finally:
        if progress is not None:
            progress.stop()


def referrer_options(f: F) -> F:
    """``--referrers``, ``--referrers-type`` and ``--referrers-best-effort``."""
    for opt in reversed(
        [
            click.option(
                "--referrers",
                is_flag=True,
                help="Copy what is attached to every manifest too: signatures, SBOMs, "
                "attestations (OCI referrers and cosign's sha256-<hex>.sig/.att/.sbom tags).",
            ),
            click.option(
                "--referrers-type",
                "referrers_types",
                multiple=True,
                metavar="TYPE",
                help="Only referrers of this artifact type (repeatable; implies --referrers).",
            ),
            click.option(
                "--referrers-best-effort",
                is_flag=True,
                help="A malformed or dangling referrers list is reported and passed over "
                "instead of failing (implies --referrers).",
            ),
        ]
    ):
        f = opt(f)
    return f


def referrer_policy(referrers: bool, types: tuple[str, ...], best_effort: bool) -> Referrers | None:
    """The policy the ``--referrers*`` flags ask for (None: no referrers)."""
    if not (referrers or types or best_effort):
        return None
    from luff.plan import Referrers

    return Referrers(types=tuple(types), strict=not best_effort)


_CONCURRENT_HELP = (
    "Safe alongside other luff writers of the same tags (a tag written back, the sha256-<hex> "
    "referrers tags) on a registry that ignores conditional writes (distribution 2.8, most "
    "today): bound the read-to-write time, then wait --concurrent-window seconds and check "
    "that nothing this writer added was lost (luff's registry and layouts refuse stale writes "
    "anyway)."
)


def _concurrent_window(
    ctx: click.Context, param: click.Parameter, value: float | None
) -> float | None:
    if value is not None:  # eager: known before --concurrent is seen
        state().ctx.settings.concurrent_window = value
    return value


def _concurrent(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    settings = state().ctx.settings
    if not value:
        settings.concurrent_window = None  # --concurrent-window alone changes nothing
    elif settings.concurrent_window is None:
        from luff.stores.tagschema import WINDOW

        settings.concurrent_window = WINDOW  # the referrers tag schema's default
    return value


def concurrent_options(f: F) -> F:
    """``--concurrent`` and ``--concurrent-window`` (commands that write to shared tags)."""
    f = click.option(
        "--concurrent-window",
        type=click.FloatRange(0.5, 600),
        default=None,
        metavar="SECONDS",
        is_eager=True,
        callback=_concurrent_window,
        help="The window of --concurrent (default 4 for a tag written back, 2 for referrers "
        "tags): reading to writing takes at most half.",
    )(f)
    return click.option("--concurrent", is_flag=True, callback=_concurrent, help=_CONCURRENT_HELP)(
        f
    )


def annotation_options(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``{KEY: VALUE}`` from repeated ``--annotation KEY=VALUE`` values."""
    from luff.errors import UsageError

    out_: dict[str, str] = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        if not eq or not key:
            raise UsageError(f"--annotation {p!r}: expected KEY=VALUE")
        out_[key] = value
    return out_


def log(message: str) -> None:
    """Print a log line on stderr."""
    click.echo(message, err=True)


def warn(message: str) -> None:
    """Print a warning on stderr (shown with or without -v)."""
    click.echo(f"luff: warning: {message}", err=True)


@contextlib.contextmanager
def _writing_stdout() -> Iterator[Any]:
    """Yield stdout; a closed or failing stdout becomes a one-line error (a closed pipe stays)."""
    from luff.errors import LuffError

    if sys.stdout is None:
        raise LuffError("cannot write the result: standard output is closed")
    try:
        yield sys.stdout
    except BrokenPipeError:
        raise
    except OSError as e:
        raise LuffError(f"cannot write to standard output: {e.strerror or e}") from None


def out(text: str) -> None:
    """Print a result on stdout."""
    with _writing_stdout() as f:
        click.echo(text, file=f)


def out_json(obj: object) -> None:
    """Print *obj* as indented JSON on stdout."""
    import json

    out(json.dumps(obj, indent=2))


def out_bytes(data: bytes) -> None:
    """Write *data* to stdout as is, and flush."""
    with _writing_stdout() as f:
        f.buffer.write(data)
        f.buffer.flush()


def print_plan(plan: Plan) -> None:
    """Write the plan to stderr (``-v``), with the number of concurrent transfers."""
    for line in plan.lines():
        log(line)
    log(f"jobs     {state().ctx.settings.jobs}")


class RichProgress:
    """Transfer progress drawn with rich on a terminal's stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self._p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._total: Any = None

    def planned(self, plan: Plan) -> None:
        total = sum(b.size for b in plan.blobs if b.action in ("copy", "mount"))
        if total:
            self._p.start()
            self._total = self._p.add_task("copying", total=total)

    def advance(self, item: PlanItem, nbytes: int) -> None:
        if self._total is not None:
            self._p.advance(self._total, nbytes)

    def finished(self, item: PlanItem) -> None:
        pass

    def stop(self) -> None:
        self._p.stop()


def progress_for_tty() -> RichProgress | None:
    """A rich progress bar when stderr is a terminal, else None."""
    if sys.stderr.isatty():
        return RichProgress()
    return None
