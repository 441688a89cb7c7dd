"""The registry fixtures start and luff talks to each of them."""

from __future__ import annotations

import pytest

from luff.context import Context
from luff.errors import AuthError
from luff.ops import basic
from luff.testing import random_image


def test_plain(registry, ctx: Context) -> None:
    img = random_image()
    img.push(f"{registry.host}/smoke/plain:1", ctx)
    assert basic.digest(f"{registry.host}/smoke/plain:1", ctx=ctx).digest == img.digest


@pytest.mark.parametrize("kind", ["auth_registry", "token_registry"])
def test_auth(kind: str, request: pytest.FixtureRequest, auth_ctx: Context, ctx: Context) -> None:
    reg = request.getfixturevalue(kind)
    img = random_image()
    img.push(f"{reg.host}/smoke/auth:1", auth_ctx)
    assert basic.digest(f"{reg.host}/smoke/auth:1", ctx=auth_ctx).digest == img.digest
    with pytest.raises(AuthError):
        basic.digest(f"{reg.host}/smoke/auth:1", ctx=ctx)
