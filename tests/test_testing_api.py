"""luff.testing.Registry and the pytest plugin's fixtures, as a library user would use them."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from luff.errors import AuthError
from luff.ops import basic
from luff.testing import Registry, random_image, random_index


def is_up(host: str) -> bool:
    try:
        urllib.request.urlopen(f"http://{host}/v2/", timeout=5)
        return True
    except urllib.error.HTTPError:
        return True  # answered, e.g. 401
    except OSError:
        return False


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_registry_context_manager(process: bool) -> None:
    with Registry(process=process) as reg:
        assert reg.host.startswith("127.0.0.1:")
        assert reg.url == f"http://{reg.host}"
        assert is_up(reg.host)
        desc = random_index(("linux/amd64", "linux/arm64")).push(f"{reg.host}/app:1", reg.context())
        assert basic.digest(f"{reg.host}/app:1", ctx=reg.context()).digest == desc.digest
        host = reg.host
    assert not is_up(host)


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_registry_with_tls(process: bool, tmp_path: Path) -> None:
    from tests.registries import self_signed

    cert, key = self_signed(tmp_path, ["127.0.0.1"])
    with Registry(process=process, tls_cert=cert, tls_key=key, auth="token") as reg:
        assert reg.url == f"https://{reg.host}"
        ctx = reg.context()
        desc = random_image().push(f"{reg.host}/app:1", ctx)
        assert ctx.client(reg.host).scheme == "https"
        assert basic.digest(f"{reg.host}/app:1", ctx=reg.context()).digest == desc.digest
    with pytest.raises(ValueError, match="both"):
        Registry(tls_cert=cert)


@pytest.mark.parametrize("auth", ["basic", "token"])
def test_registry_with_auth(auth: str) -> None:
    with Registry(auth=auth, username="ci", password="pw") as reg:  # type: ignore[arg-type]
        assert (reg.username, reg.password) == ("ci", "pw")
        desc = random_image().push(f"{reg.host}/app:1", reg.context())
        assert basic.ls(f"{reg.host}/app", ctx=reg.context()) == ["1"]
        assert basic.digest(f"{reg.host}/app:1", ctx=reg.context()).digest == desc.digest
        with pytest.raises(AuthError):
            basic.ls(f"{reg.host}/app", ctx=Registry().context())  # no credentials


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_registry_random_password_and_anonymous_pull(process: bool) -> None:
    with Registry(auth="token", anonymous_pull=("pub/",), process=process) as reg:
        assert reg.password and reg.username == "luff"
        random_image().push(f"{reg.host}/pub/app:1", reg.context())
        anon = Registry().context()
        assert basic.ls(f"{reg.host}/pub/app", ctx=anon) == ["1"]
        random_image().push(f"{reg.host}/priv/app:1", reg.context())
        with pytest.raises(AuthError):
            basic.ls(f"{reg.host}/priv/app", ctx=anon)


def test_registry_storage_persists(tmp_path: Path) -> None:
    with Registry(storage=tmp_path / "data") as reg:
        desc = random_image().push(f"{reg.host}/keep:1", reg.context())
    with Registry(storage=tmp_path / "data", process=True) as reg:
        assert basic.digest(f"{reg.host}/keep:1", ctx=reg.context()).digest == desc.digest


def test_registry_log_stream() -> None:
    log = io.StringIO()
    with Registry(log=log) as reg:
        basic.catalog(reg.host, ctx=reg.context())
    assert '"GET /v2/_catalog' in log.getvalue()


def test_bad_auth_mode() -> None:
    with pytest.raises(ValueError):
        Registry(auth="ldap")  # type: ignore[arg-type]


def test_plugin_fixtures(
    luff_registry: Registry, luff_registry_factory: Callable[..., Registry]
) -> None:
    desc = random_image().push(f"{luff_registry.host}/plugin/app:1", luff_registry.context())
    other = luff_registry_factory(auth="basic")
    assert other.host != luff_registry.host
    copied = basic.copy(
        f"{luff_registry.host}/plugin/app:1",
        f"{other.host}/copied:1",
        ctx=other.context(),
    )
    assert copied.digest == desc.digest


def test_plugin_in_a_users_test_suite(tmp_path: Path) -> None:
    """A user's test file uses the fixtures with nothing but luff installed."""
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            from luff.ops import basic
            from luff.testing import random_index

            def test_push(luff_registry):
                ref = f"{luff_registry.host}/myapp:1"
                desc = random_index(["linux/amd64", "linux/arm64"]).push(ref)
                assert basic.digest(ref).digest == desc.digest

            def test_factory(luff_registry_factory):
                reg = luff_registry_factory(auth="token")
                assert reg.host.startswith("127.0.0.1:")
            """
        )
    )
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 passed" in p.stdout
