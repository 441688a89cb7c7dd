"""mkdocs hooks: load luff's lazily imported commands before the CLI reference is rendered.

mkdocs-click lists a group's ``commands`` when it has any, and ``luff``
loads most of its commands only when asked for (``LuffGroup.get_command``),
so without this the reference would show only the eagerly defined ones.
"""

from __future__ import annotations

from typing import Any

import click


def on_config(config: Any) -> Any:
    from luff.cli.main import cli

    ctx = click.Context(cli, info_name="luff")
    for name in cli.list_commands(ctx):
        cli.get_command(ctx, name)
    return config
