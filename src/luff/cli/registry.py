"""``luff registry serve``: the embedded registry in the foreground."""

from __future__ import annotations

import sys

import click

from luff.errors import UsageError
from luff.limits import DEFAULT_MAX_UPLOADS, DEFAULT_UPLOAD_TIMEOUT


@click.group("registry")
def registry() -> None:
    """Run an embedded OCI registry."""


@registry.command("serve")
@click.option(
    "--address",
    default="127.0.0.1:5000",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to listen; port 0 picks a free port (printed on stdout).",
)
@click.option(
    "--storage",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep content in this directory (persists). Default: in memory.",
)
@click.option(
    "--htpasswd",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Require basic auth by the users of this file (bcrypt, {SHA} or {PLAIN}).",
)
@click.option(
    "--token",
    "token",
    is_flag=True,
    help="Bearer-token auth: clients get tokens from this server's /token endpoint.",
)
@click.option(
    "--token-ttl",
    type=click.IntRange(1, 86400),
    default=300,
    show_default=True,
    help="Lifetime of issued tokens, in seconds.",
)
@click.option(
    "--anonymous-pull",
    multiple=True,
    metavar="PREFIX",
    help="Token mode with --htpasswd: anonymous clients may pull repositories named PREFIX… "
    "(repeatable).",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False),
    default=None,
    help="Serve HTTPS with this PEM certificate (chain); needs --tls-key.",
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False), default=None, help="The certificate's PEM key."
)
@click.option(
    "--upload-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_UPLOAD_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Drop a blob upload left idle this long.",
)
@click.option(
    "--max-uploads",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_UPLOADS,
    show_default=True,
    metavar="N",
    help="Blob uploads in progress at once; beyond, new ones get 429.",
)
@click.option("-q", "--quiet", is_flag=True, help="No access log.")
def serve(
    address: str,
    storage: str | None,
    htpasswd: str | None,
    token: bool,
    token_ttl: int,
    anonymous_pull: tuple[str, ...],
    tls_cert: str | None,
    tls_key: str | None,
    upload_timeout: float,
    max_uploads: int,
    quiet: bool,
) -> None:
    """Serve the OCI distribution API until interrupted.

    Prints the address (HOST:PORT) on stdout once listening; logs one line per
    request on stderr.
    """
    from luff.server import RegistryServer

    if anonymous_pull and not token:
        raise UsageError("--anonymous-pull needs --token (and --htpasswd): it grants tokens")
    srv = RegistryServer(
        storage,
        address=address,
        htpasswd=htpasswd,
        token=token,
        token_ttl=token_ttl,
        anonymous_pull=anonymous_pull,
        access_log=None if quiet else sys.stderr,
        tls_cert=tls_cert,
        tls_key=tls_key,
        upload_timeout=upload_timeout,
        max_uploads=max_uploads,
    )
    for line in srv.repairs:
        click.echo(f"luff registry: repaired {storage}: {line}", err=True)

    def ready(s: RegistryServer) -> None:
        where = f"storage {storage}" if storage else "in memory"
        auth = {"none": "no auth", "basic": "basic auth", "token": "token auth"}[s.auth.mode]
        click.echo(f"luff registry listening on {s.url} ({where}, {auth})", err=True)
        click.echo(s.host)
        sys.stdout.flush()

    srv.run(on_ready=ready)
    click.echo("luff registry stopped", err=True)
