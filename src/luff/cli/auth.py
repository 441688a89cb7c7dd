"""``luff auth login|logout``, and the global options about trust and credentials."""

from __future__ import annotations

import sys

import click

from luff.cli.common import log, state
from luff.context import Settings
from luff.errors import UsageError
from luff.ops.auth import login, logout


@click.group()
def auth() -> None:
    """Log in to or out of a registry."""


@auth.command("login")
@click.argument("registry")
@click.option("-u", "--username", required=True, help="User name.")
@click.option("-p", "--password", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def login_cmd(registry: str, username: str, password: str | None, password_stdin: bool) -> None:
    """Check credentials against REGISTRY and store them."""
    if password_stdin:
        if password:
            raise UsageError("use either --password or --password-stdin")
        if sys.stdin is None:
            raise UsageError("--password-stdin: standard input is closed")
        password = sys.stdin.readline().rstrip("\r\n")
    elif password:
        log(
            "luff: warning: a password given with -p is visible to other users of this "
            "machine (ps, shell history); use --password-stdin"
        )
    if not password:
        raise UsageError("no password given (use --password-stdin)")
    path = login(registry, username, password, ctx=state().ctx)
    log(f"logged in to {registry} (credentials saved in {path})")


@auth.command("logout")
@click.argument("registry")
def logout_cmd(registry: str) -> None:
    """Forget the stored credentials of REGISTRY."""
    if logout(registry):
        log(f"logged out of {registry}")
    else:
        log(f"not logged in to {registry}")


# --- global options: --timeout, --ca-file, --creds, --creds-stdin --------------------------


def set_timeout(settings: Settings, seconds: float | None) -> None:
    """``--timeout SECONDS``: how long to wait for a peer to connect or answer."""
    if seconds is not None:
        settings.timeout = seconds


def set_ca_file(settings: Settings, path: str | None) -> None:
    """``--ca-file FILE``: CAs trusted besides the system's (checked here, before any request)."""
    if path is None:
        return
    import ssl

    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as e:
        why = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise UsageError(f"--ca-file {path}: no CA certificate could be loaded: {why}") from None
    settings.ca_file = path


def set_inline_creds(settings: Settings, values: tuple[str, ...], from_stdin: bool) -> None:
    """``--creds [HOST=]USER:PASSWORD`` (repeatable) and ``--creds-stdin``: credentials for
    this run only, used for every registry the command talks to (or HOST only), instead of
    the auth files; nothing is written."""
    from luff.registry.auth import inline_lookup, parse_inline

    given = [parse_inline(v) for v in values]
    if from_stdin:
        if sys.stdin is None:
            raise UsageError("--creds-stdin: standard input is closed")
        line = sys.stdin.readline().rstrip("\r\n")
        given.append(parse_inline(line, "--creds-stdin"))
    if given:
        settings.credentials = inline_lookup(given, settings.credentials)
