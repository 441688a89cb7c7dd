"""The ``luff`` command line: thin wrappers over the library."""

from __future__ import annotations

import atexit
import os
import signal
import sys
from typing import Any, NoReturn

import click

from luff import __version__
from luff.cli.common import (
    PLATFORM_METAVAR,
    State,
    concurrent_options,
    log,
    out,
    out_bytes,
    out_json,
    plan_hook,
    referrer_options,
    referrer_policy,
    state,
    transfer_progress,
)
from luff.errors import LuffError, UsageError

# Only click and luff.cli.common are imported here: each command imports the
# operations it runs, so ``luff --help`` and ``luff version`` load no library
# code (tests/test_imports.py checks the module lists).


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C so that staged and temporary files are removed."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


# Commands defined in other modules, imported only when used (a quicker start):
# name -> (module, attribute, the short help ``luff --help`` shows without importing it;
# tests/test_imports.py checks that it is the command's own).
_LAZY = {
    "auth": ("luff.cli.auth", "auth", "Log in to or out of a registry."),
    "index": (
        "luff.cli.index",
        "index",
        "Create, append to, filter and list multi-platform indexes.",
    ),
    "layout": ("luff.cli.layout", "layout", "Stage images in OCI image layouts on disk."),
    "mutate": (
        "luff.cli.mutate",
        "mutate",
        "Change the config, annotations and layers of every platform of REF at once.",
    ),
    "pull": ("luff.cli.layout", "pull", "Pull REF into a layout directory or archive at PATH."),
    "push": (
        "luff.cli.layout",
        "push",
        "Push the layout or archive at PATH (or PATH:TAG) to TARGET.",
    ),
    "referrers": (
        "luff.cli.referrers",
        "referrers",
        "List what is attached to REF: signatures, SBOMs, attestations.",
    ),
    "attach": (
        "luff.cli.referrers",
        "attach",
        "Attach FILE... to REF as an OCI 1.1 artifact (its subject is REF's manifest).",
    ),
    "registry": ("luff.cli.registry", "registry", "Run an embedded OCI registry."),
}


class LuffGroup(click.Group):
    """Turns expected errors into one line and an exit code; loads commands when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_LAZY})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, without importing the commands not loaded yet."""
        limit = formatter.width - 6 - max(len(n) for n in self.list_commands(ctx))
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name)
            if cmd is not None:
                if not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit)))
            else:
                # Shortened as click shortens a command's own help.
                stand_in = click.Command(name, help=_LAZY[name][2])
                rows.append((name, stand_in.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _LAZY:
            import importlib

            module, attr, _ = _LAZY[cmd_name]
            cmd = getattr(importlib.import_module(module), attr)
            self.add_command(cmd, cmd_name)
            _add_global_options(self, only=cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LuffError as e:
            verbose = isinstance(ctx.obj, State) and ctx.obj.verbose > 0
            if verbose:
                import traceback

                traceback.print_exc()
            click.echo(f"luff: error: {e}", err=True)
            sys.exit(e.exit_code)
        except Terminated:
            click.echo("luff: terminated", err=True)
            sys.exit(128 + signal.SIGTERM)
        except KeyboardInterrupt:
            click.echo("luff: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(1)
        except OSError as e:
            # A file-system failure that no operation translated (unwritable path, full disk).
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"luff: error: {where}{e.strerror or e}", err=True)
            sys.exit(1)


@click.group(cls=LuffGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--insecure",
    "insecure",
    multiple=True,
    metavar="HOST",
    help="Use unverified TLS, or plain HTTP, for HOST (repeatable). Loopback hosts are "
    "treated so without it.",
)
@click.option("-v", "--verbose", count=True, help="Show the plan, retries and error details.")
@click.option(
    "--platform",
    metavar=PLATFORM_METAVAR,
    help="Choose the image of this platform from an index (config, copy, digest, manifest); "
    "a single OS or architecture word (arm64, windows) works as in docker.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Concurrent transfers.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up on a registry that does not connect or answer within SECONDS (default 30).",
)
@click.option("--ca-file", metavar="FILE", help="Also trust the CA certificates in FILE (PEM).")
@click.option(
    "--creds",
    multiple=True,
    metavar="[HOST=]USER:PASSWORD",
    help="Credentials for this run only, for every registry the command uses (or for HOST); "
    "nothing is written. Repeatable.",
)
@click.option("--creds-stdin", is_flag=True, help="Read --creds' USER:PASSWORD from stdin.")
@click.version_option(__version__, prog_name="luff")
@click.pass_context
def cli(
    ctx: click.Context,
    insecure: tuple[str, ...],
    verbose: int,
    platform: str | None,
    jobs: int,
    timeout: float | None,
    ca_file: str | None,
    creds: tuple[str, ...],
    creds_stdin: bool,
) -> None:
    """Assemble and ship multi-platform container images from images anywhere."""
    st = State(verbose=verbose, platform=platform, jobs=jobs)
    if insecure:
        st.ctx.settings.add_insecure(insecure)
    if timeout is not None or ca_file or creds or creds_stdin:
        from luff.cli import auth as trust

        trust.set_timeout(st.ctx.settings, timeout)
        trust.set_ca_file(st.ctx.settings, ca_file)
        trust.set_inline_creds(st.ctx.settings, creds, creds_stdin)
    if verbose:
        st.ctx.settings.log = log
    ctx.obj = st
    if platform:
        from luff.model.platform import Platform

        Platform.parse(platform)  # fail early on a bad platform


@cli.command()
@click.argument("source")
@click.argument("target")
@click.option("-a", "--all-tags", is_flag=True, help="Copy every tag of the repository.")
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Concurrent transfers."
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar=PLATFORM_METAVAR,
    help="Copy only this platform's image of an index; given more than once, a new index "
    "of just those platforms.",
)
@referrer_options
@concurrent_options
@click.option("--json", "as_json", is_flag=True, help="Print the descriptor as JSON.")
def copy(
    source: str,
    target: str,
    all_tags: bool,
    jobs: int | None,
    platforms: tuple[str, ...],
    referrers: bool,
    referrers_types: tuple[str, ...],
    referrers_best_effort: bool,
    concurrent: bool,
    concurrent_window: float | None,
    as_json: bool,
) -> None:
    """Copy an image or index from SOURCE to TARGET, keeping its digest.

    A registry TARGET without a tag means TARGET:latest; TARGET@DIGEST pushes by digest.
    """
    from luff.model.address import parse_address
    from luff.ops import basic

    st = state()
    if jobs:
        st.ctx.settings.jobs = jobs
    wanted = list(platforms) or ([st.platform] if st.platform else [])
    policy = referrer_policy(referrers, referrers_types, referrers_best_effort)
    with transfer_progress() as progress:
        if all_tags:
            if len(wanted) > 1:
                raise UsageError("--all-tags copies each tag as it is; give one --platform at most")
            for t, d in basic.copy_all_tags(
                source,
                target,
                platform=wanted[0] if wanted else None,
                referrers=policy,
                ctx=st.ctx,
                progress=progress,
                on_plan=plan_hook(),
            ).items():
                out(f"{target}:{t}@{d.digest}")
            return
        desc = basic.copy(
            source,
            target,
            platforms=wanted,
            referrers=policy,
            ctx=st.ctx,
            progress=progress,
            on_plan=plan_hook(),
        )
    if as_json:
        out_json(desc.to_dict())
    else:
        out(parse_address(target).pinned(desc.digest))


_PLATFORM_METAVAR = PLATFORM_METAVAR


@cli.command()
@click.argument("ref")
@click.option(
    "--platform", metavar=_PLATFORM_METAVAR, help="The manifest of this platform's image."
)
def manifest(ref: str, platform: str | None) -> None:
    """Print the manifest of REF, byte for byte."""
    from luff.ops import basic

    st = state()
    data = basic.manifest(ref, platform=platform or st.platform, ctx=st.ctx)
    out_bytes(_with_tty_newline(data))


@cli.command()
@click.argument("ref")
@click.option(
    "--platform",
    metavar=_PLATFORM_METAVAR,
    help="The image of this platform, for an index (default: this machine's).",
)
def config(ref: str, platform: str | None) -> None:
    """Print the config blob of the image at REF (of --platform, for an index)."""
    from luff.ops import basic

    st = state()
    data = basic.config(ref, platform=platform or st.platform, ctx=st.ctx)
    out_bytes(_with_tty_newline(data))


@cli.command()
@click.argument("ref")
@click.option("--platform", metavar=_PLATFORM_METAVAR, help="This platform's image, for an index.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole descriptor.")
def digest(ref: str, platform: str | None, as_json: bool) -> None:
    """Print the digest of REF (of --platform's image, for an index)."""
    from luff.ops import basic

    st = state()
    desc = basic.digest(ref, platform=platform or st.platform, ctx=st.ctx)
    if as_json:
        out_json(desc.to_dict())
    else:
        out(str(desc.digest))


@cli.command()
@click.argument("ref", metavar="REPO@DIGEST")
def blob(ref: str) -> None:
    """Write the blob REPO@DIGEST to stdout, verified."""
    import tempfile

    from luff.ops import basic

    st = state()
    # Spooled to a temporary file: nothing reaches stdout before the digest is checked.
    with basic.blob(ref, ctx=st.ctx) as stream, tempfile.TemporaryFile() as tmp:
        while chunk := stream.read(1 << 20):
            tmp.write(chunk)
        tmp.seek(0)
        while chunk := tmp.read(1 << 20):
            out_bytes(chunk)


def _with_tty_newline(data: bytes) -> bytes:
    """*data* exactly (its digest must match), plus a newline on a terminal for the prompt."""
    if sys.stdout is not None and sys.stdout.isatty() and not data.endswith(b"\n"):
        return data + b"\n"
    return data


@cli.command("ls")
@click.argument("repository")
def ls_(repository: str) -> None:
    """List the tags of REPOSITORY (or the ref.names of oci:DIR or an archive)."""
    from luff.ops import basic

    for t in basic.ls(repository, ctx=state().ctx):
        out(t)


@cli.command()
@click.argument("registry")
def catalog(registry: str) -> None:
    """List the repositories of REGISTRY."""
    from luff.ops import basic

    for r in basic.catalog(registry, ctx=state().ctx):
        out(r)


@cli.command()
@click.argument("ref")
@click.argument("tag")
def tag(ref: str, tag: str) -> None:
    """Add TAG to the manifest at REF, in the same repository."""
    from luff.model.address import parse_address
    from luff.ops import basic

    desc = basic.tag(ref, tag, ctx=state().ctx)
    out(f"{parse_address(ref).with_tag(tag)}@{desc.digest}")


@cli.command()
@click.argument("ref", metavar="REPOSITORY:TAG")
def untag(ref: str) -> None:
    """Remove the tag REPOSITORY:TAG, and nothing else (the manifest stays)."""
    from luff.ops import basic

    basic.untag(ref, ctx=state().ctx)
    log(f"untagged {ref}")


@cli.command()
@click.argument("ref")
def delete(ref: str) -> None:
    """Delete the manifest at REF (a tag is resolved to its digest)."""
    from luff.model.address import parse_address
    from luff.ops import basic

    desc = basic.delete(ref, ctx=state().ctx)
    log(f"deleted {parse_address(ref).pinned(desc.digest)}")


@cli.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(ref: str, as_json: bool) -> None:
    """Re-read and re-hash REF and everything it points at, each digest once.

    Works on any address (registry, oci:, oci-archive:, docker-archive:).
    Prints one line per missing, corrupt or invalid manifest or blob
    (KIND DIGEST (ROLE of PARENT): MESSAGE), then a summary, on stdout; exits
    1 when there is any.
    """
    from luff.ops import verify as verifying

    report = verifying.verify(ref, ctx=state().ctx)
    if as_json:
        out_json(report.to_dict())
    else:
        for p in report.problems:
            out(p.line())
        out(report.summary())
    if not report.ok:
        n = len(report.problems)
        raise LuffError(
            f"{n} missing, corrupt or invalid {'item' if n == 1 else 'items'}", where=ref
        )


@cli.command()
def version() -> None:
    """Print luff's version."""
    out(__version__)


def _verbose_here(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:
        st = state()
        st.verbose += value
        st.ctx.settings.log = log


def _insecure_here(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    if value:
        state().ctx.settings.add_insecure(value)


def _jobs_here(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value:
        state().ctx.settings.jobs = value


def _trust_here(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """--timeout, --ca-file, --creds and --creds-stdin given after the command name."""
    if value is None or value == () or value is False:
        return
    from luff.cli import auth as trust

    settings = state().ctx.settings
    if param.name == "timeout":
        trust.set_timeout(settings, float(value))
    elif param.name == "ca_file":
        trust.set_ca_file(settings, str(value))
    else:
        creds = tuple(value) if param.name == "creds" else ()
        trust.set_inline_creds(settings, creds, param.name == "creds_stdin")


# Options that also follow a command's name (as crane's persistent flags do).
_TRUST_OPTIONS = (
    click.Option(
        ["--timeout"],
        type=click.FloatRange(min=0, min_open=True),
        metavar="SECONDS",
        expose_value=False,
        callback=_trust_here,
        help="Same as luff --timeout SECONDS.",
    ),
    click.Option(
        ["--ca-file"],
        metavar="FILE",
        expose_value=False,
        callback=_trust_here,
        help="Same as luff --ca-file FILE.",
    ),
    click.Option(
        ["--creds"],
        multiple=True,
        metavar="[HOST=]USER:PASSWORD",
        expose_value=False,
        callback=_trust_here,
        help="Same as luff --creds.",
    ),
    click.Option(
        ["--creds-stdin"],
        is_flag=True,
        expose_value=False,
        callback=_trust_here,
        help="Same as luff --creds-stdin.",
    ),
)


# Commands that transfer blobs, and so take -j after their name too.
_TRANSFERS = {
    "copy",
    "pull",
    "push",
    "index create",
    "index append",
    "index filter",
    "layout append",
    "layout fill",
    "attach",
    "mutate",
    "verify",
}


def _add_global_options(group: click.Group, prefix: str = "", only: str = "") -> None:
    """Accept -v, --insecure, --timeout, --ca-file and --creds (and -j where it matters)
    after the command name too, as crane's persistent flags (on *group*'s command *only*,
    when given)."""
    for name, cmd in group.commands.items():
        if only and name != only:
            continue
        if isinstance(cmd, click.Group):
            _add_global_options(cmd, f"{prefix}{name} ")
            continue
        names = {o for p in cmd.params for o in getattr(p, "opts", [])}
        if f"{prefix}{name}" in _TRANSFERS and "-j" not in names:
            cmd.params.append(
                click.Option(
                    ["-j", "--jobs"],
                    type=click.IntRange(1, 64),
                    default=None,
                    expose_value=False,
                    callback=_jobs_here,
                    help="Concurrent transfers (same as luff -j).",
                )
            )
        if "-v" not in names and "--verbose" not in names:
            cmd.params.append(
                click.Option(
                    ["-v", "--verbose"],
                    count=True,
                    expose_value=False,
                    callback=_verbose_here,
                    help="Show details (same as luff -v).",
                )
            )
        if "--insecure" not in names:
            cmd.params.append(
                click.Option(
                    ["--insecure"],
                    multiple=True,
                    metavar="HOST",
                    expose_value=False,
                    callback=_insecure_here,
                    help="Same as luff --insecure HOST.",
                )
            )
        cmd.params += [o for o in _TRUST_OPTIONS if not names & set(o.opts)]


_add_global_options(cli)


def main() -> None:
    """Entry point of the ``luff`` script; ends the process (use ``cli`` to embed)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli(prog_name="luff")
        code: object = 0
    except SystemExit as e:
        code = e.code
    _exit(code)


def _exit(code: object) -> NoReturn:
    """Exit with *code* (as ``sys.exit`` takes it), skipping the interpreter's teardown.

    Tearing down every imported module costs about 15 ms, a tenth of a short
    command. atexit handlers (with them, pending ``weakref.finalize``
    callbacks) still run, then the output is flushed. Worker threads have
    ended by now, unless a second interrupt cut short the wait for them.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        sys.stderr.write(f"{code}\n")
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that descriptor closed
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or 1
    os._exit(status)
