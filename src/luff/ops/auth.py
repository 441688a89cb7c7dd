"""Logging in and out of registries."""

from __future__ import annotations

from pathlib import Path

from luff.context import Context, default_context
from luff.errors import UsageError
from luff.model.reference import Reference
from luff.registry import auth as authmod


def _host(registry: str) -> Reference:
    host = registry.removeprefix("docker://").removeprefix("https://").removeprefix("http://")
    host = host.rstrip("/")
    if not host or "/" in host:
        raise UsageError(f"{registry}: name a registry host, e.g. ghcr.io or localhost:5000")
    return Reference.parse(f"{host}/x")


def login(registry: str, username: str, password: str, *, ctx: Context | None = None) -> Path:
    """Verify *username*/*password* against *registry*, then save them; returns the file."""
    ctx = ctx or default_context()
    ref = _host(registry)
    creds = authmod.Credentials(username, password)
    probe = Context(ctx.settings, credentials=lambda _h: creds)
    try:
        probe.client(ref.api_host).check_login()
    finally:
        probe.close()
    return authmod.save(ref.registry, creds)


def logout(registry: str) -> bool:
    """Remove stored credentials of *registry*; True when there were some."""
    return authmod.remove(_host(registry).registry)
