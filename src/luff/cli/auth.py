"""``luff auth login|logout``."""

from __future__ import annotations

import sys

import click

from luff.cli.common import log, state
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
