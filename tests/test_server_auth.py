"""Authentication of the embedded registry: htpasswd (basic) and bearer tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from luff.context import Context
from luff.errors import AuthError, UsageError
from luff.ops import basic
from luff.registry.auth import ANONYMOUS, Credentials, parse_challenges
from luff.server import RegistryServer
from luff.server.auth import hash_password, load_htpasswd
from luff.testing import random_image

pool = urllib3.PoolManager(retries=False, timeout=30)


def basic_header(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def ctx_for(host: str, user: str, password: str) -> Context:
    creds = Credentials(user, password)
    return Context(credentials=lambda h: creds if h == host else ANONYMOUS, backoff=0.01)


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    p = tmp_path / "htpasswd"
    p.write_text(
        "# users\n"
        f"bob:{hash_password('bcrypt-pw', 'bcrypt')}\n"
        # what Apache's htpasswd -B writes: the $2y$ prefix
        f"amy:{hash_password('apache-pw', 'bcrypt', rounds=4).replace('$2b$', '$2y$', 1)}\n"
        f"sam:{hash_password('sha-pw', 'sha')}\n"
        "\n"
        "pat:{PLAIN}plain-pw\n"
    )
    return p


@pytest.fixture
def basic_server(htpasswd: Path) -> Iterator[RegistryServer]:
    with RegistryServer(address="127.0.0.1:0", htpasswd=htpasswd) as srv:
        yield srv


@pytest.fixture
def token_server(htpasswd: Path) -> Iterator[RegistryServer]:
    with RegistryServer(
        address="127.0.0.1:0", htpasswd=htpasswd, token=True, anonymous_pull=("public/",)
    ) as srv:
        yield srv


# --- htpasswd ------------------------------------------------------------------


def test_htpasswd_rejects_unsupported_hashes(tmp_path: Path) -> None:
    p = tmp_path / "h"
    p.write_text("old:$apr1$abc$def\n")
    with pytest.raises(UsageError, match="unsupported hash"):
        load_htpasswd(p)
    p.write_text("no-colon\n")
    with pytest.raises(UsageError, match="USER:HASH"):
        load_htpasswd(p)


def openssl_passwd(scheme: str, password: str) -> str:
    return subprocess.run(
        ["openssl", "passwd", f"-{scheme}", password], capture_output=True, text=True, check=True
    ).stdout.strip()


UNVERIFIABLE = {
    "apr1": lambda: openssl_passwd("apr1", "pw"),  # Apache MD5, htpasswd's default
    "md5-crypt": lambda: openssl_passwd("1", "pw"),
    "sha256-crypt": lambda: openssl_passwd("5", "pw"),
    "sha512-crypt": lambda: openssl_passwd("6", "pw"),
    "des-crypt": lambda: "abNANd1rDfiNc",  # htpasswd -d: crypt(3), unprefixed
    "bcrypt-truncated": lambda: hash_password("pw", rounds=4)[:-5],
    "bcrypt-2x": lambda: hash_password("pw", rounds=4).replace("$2b$", "$2x$", 1),
    "sha-not-base64": lambda: "{SHA}not-a-sha1",
    "ssha": lambda: "{SSHA}aGVsbG8gd29ybGQgdGhpcyBpcyBzYWx0",
    "argon2": lambda: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    "unprefixed-text": lambda: "some-password",
    "empty": lambda: "",
}


@pytest.mark.parametrize("kind", sorted(UNVERIFIABLE))
def test_serve_refuses_htpasswd_lines_it_cannot_verify(tmp_path: Path, kind: str) -> None:
    """One line naming the file and line, exit 2, before serving: never a 500 per request."""
    p = tmp_path / "htpasswd"
    p.write_text(
        f"# users\nok:{hash_password('pw', rounds=4)}\nbad:{UNVERIFIABLE[kind]()}\n"
        "also-ok:{PLAIN}pw\n"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "luff",
            "registry",
            "serve",
            "--address",
            "127.0.0.1:0",
            "--htpasswd",
            str(p),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"luff: error: {p}:3: unsupported hash for user 'bad'"), lines
    assert "bcrypt" in lines[0]
    assert r.stdout == ""  # never got to listen


def test_users_given_in_python_are_checked_too() -> None:
    with pytest.raises(UsageError, match="user 'x'"):
        RegistryServer(address="127.0.0.1:0", users={"x": "plain-text"})
    with RegistryServer(address="127.0.0.1:0", users={"x": hash_password("pw", "plain")}) as srv:
        assert pool.request("GET", f"{srv.url}/v2/", headers=basic_header("x", "pw")).status == 200
        assert (
            pool.request("GET", f"{srv.url}/v2/", headers=basic_header("x", "{PLAIN}pw")).status
            == 401
        )


def test_bcrypt_is_a_runtime_dependency() -> None:
    """`pip install luff` (no extras) brings bcrypt: what htpasswd -B writes, and what
    hash_password() makes by default, work without the test extras."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in requires("luff") or []]
    runtime = {r.name.lower() for r in reqs if r.marker is None}
    assert "bcrypt" in runtime, reqs


def test_basic_auth_challenge(basic_server: RegistryServer) -> None:
    r = pool.request("GET", f"{basic_server.url}/v2/")
    assert r.status == 401
    assert json.loads(r.data)["errors"][0]["code"] == "UNAUTHORIZED"
    [(scheme, params)] = parse_challenges(r.headers["WWW-Authenticate"])
    assert scheme == "Basic"
    assert params["realm"]


@pytest.mark.parametrize(
    ("user", "password"),
    [("bob", "bcrypt-pw"), ("amy", "apache-pw"), ("sam", "sha-pw"), ("pat", "plain-pw")],
)
def test_basic_auth_users(basic_server: RegistryServer, user: str, password: str) -> None:
    url = f"{basic_server.url}/v2/"
    assert pool.request("GET", url, headers=basic_header(user, password)).status == 200
    assert pool.request("GET", url, headers=basic_header(user, "wrong")).status == 401
    ctx = ctx_for(basic_server.host, user, password)
    desc = random_image().push(f"{basic_server.host}/app:{user}", ctx)
    assert basic.digest(f"{basic_server.host}/app:{user}", ctx=ctx).digest == desc.digest


def test_basic_auth_wrong_password_in_luff(basic_server: RegistryServer) -> None:
    ctx = ctx_for(basic_server.host, "bob", "nope")
    with pytest.raises(AuthError):
        basic.ls(f"{basic_server.host}/app", ctx=ctx)
    anon = Context(credentials=lambda h: ANONYMOUS)
    with pytest.raises(AuthError):
        basic.ls(f"{basic_server.host}/app", ctx=anon)


# --- tokens -------------------------------------------------------------------


def _token(srv: RegistryServer, *scopes: str, headers: dict[str, str] | None = None) -> str:
    q = urllib.parse.urlencode([("service", "luff-registry"), *(("scope", s) for s in scopes)])
    r = pool.request("GET", f"{srv.url}/token?{q}", headers=headers or {})
    assert r.status == 200, r.data
    body = json.loads(r.data)
    assert body["token"] == body["access_token"]
    assert body["expires_in"] > 0
    return str(body["token"])


def test_token_challenge_points_at_own_realm(token_server: RegistryServer) -> None:
    r = pool.request("GET", f"{token_server.url}/v2/app/tags/list")
    assert r.status == 401
    [(scheme, params)] = parse_challenges(r.headers["WWW-Authenticate"])
    assert scheme == "Bearer"
    assert params["realm"] == f"{token_server.url}/token"
    assert params["service"] == "luff-registry"
    assert params["scope"] == "repository:app:pull"


def test_token_scopes_are_enforced(token_server: RegistryServer) -> None:
    creds = basic_header("bob", "bcrypt-pw")
    pull = _token(token_server, "repository:app:pull", headers=creds)
    url = f"{token_server.url}/v2/app/blobs/uploads/"
    r = pool.request("POST", url, headers={"Authorization": f"Bearer {pull}"})
    assert r.status == 401
    challenge = dict(parse_challenges(r.headers["WWW-Authenticate"]))["Bearer"]
    assert challenge["error"] == "insufficient_scope"
    assert challenge["scope"] == "repository:app:push"
    push = _token(token_server, "repository:app:pull,push", headers=creds)
    r = pool.request("POST", url, headers={"Authorization": f"Bearer {push}"})
    assert r.status == 202
    # a token for another repository does not help
    r = pool.request(
        "POST",
        f"{token_server.url}/v2/other/blobs/uploads/",
        headers={"Authorization": f"Bearer {push}"},
    )
    assert r.status == 401
    r = pool.request("GET", f"{token_server.url}/v2/", headers={"Authorization": "Bearer junk"})
    assert r.status == 401


def test_mount_challenge_asks_for_the_source_repository(token_server: RegistryServer) -> None:
    """A client that follows the challenge of a mount gets a token the mount works with."""
    creds = basic_header("bob", "bcrypt-pw")
    push = _token(token_server, "repository:src:push", headers=creds)
    data = b"mounted blob"
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    r = pool.request(
        "POST",
        f"{token_server.url}/v2/src/blobs/uploads/?digest={d}",
        body=data,
        headers={"Authorization": f"Bearer {push}"},
    )
    assert r.status == 201
    url = f"{token_server.url}/v2/dst/blobs/uploads/?mount={d}&from=src"
    r = pool.request("POST", url)
    assert r.status == 401
    scope = dict(parse_challenges(r.headers["WWW-Authenticate"]))["Bearer"]["scope"]
    assert scope.split(" ") == ["repository:dst:push", "repository:src:pull"]
    tok = _token(token_server, *scope.split(" "), headers=creds)
    r = pool.request("POST", url, headers={"Authorization": f"Bearer {tok}"})
    assert r.status == 201
    # a token without pull on the source still may upload: the mount falls back
    tok = _token(token_server, "repository:dst:push", headers=creds)
    r = pool.request("POST", url, headers={"Authorization": f"Bearer {tok}"})
    assert r.status == 202


def test_token_endpoint_checks_passwords(token_server: RegistryServer) -> None:
    q = "service=luff-registry&scope=repository:app:pull"
    r = pool.request("GET", f"{token_server.url}/token?{q}", headers=basic_header("bob", "bad"))
    assert r.status == 401


def test_anonymous_token_only_pulls_public(token_server: RegistryServer) -> None:
    owner = ctx_for(token_server.host, "pat", "plain-pw")
    random_image().push(f"{token_server.host}/public/app:1", owner)
    random_image().push(f"{token_server.host}/private/app:1", owner)
    anon = Context(credentials=lambda h: ANONYMOUS, backoff=0.01)
    assert basic.ls(f"{token_server.host}/public/app", ctx=anon) == ["1"]
    with pytest.raises(AuthError):
        basic.ls(f"{token_server.host}/private/app", ctx=anon)
    with pytest.raises(AuthError):
        random_image().push(f"{token_server.host}/public/app:2", anon)


def test_luff_token_flow_push_pull_copy_mount(token_server: RegistryServer) -> None:
    h = token_server.host
    ctx = ctx_for(h, "bob", "bcrypt-pw")
    desc = random_image(layers=2).push(f"{h}/team/app:1", ctx)
    copied = basic.copy(f"{h}/team/app:1", f"{h}/team/copy:1", ctx=ctx)
    assert copied.digest == desc.digest
    assert basic.ls(f"{h}/team/copy", ctx=ctx) == ["1"]
    assert basic.catalog(h, ctx=ctx) == ["team/app", "team/copy"]
    basic.delete(f"{h}/team/copy:1", ctx=ctx)
    assert basic.ls(f"{h}/team/copy", ctx=ctx) == []


def test_refresh_token_grants(token_server: RegistryServer) -> None:
    url = f"{token_server.url}/token"
    q = "service=luff-registry&offline_token=true&scope=repository:app:pull"
    r = pool.request("GET", f"{url}?{q}", headers=basic_header("sam", "sha-pw"))
    refresh = json.loads(r.data)["refresh_token"]
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh,
        "service": "luff-registry",
        "scope": "repository:app:pull,push",
        "client_id": "test",
    }
    r = pool.request_encode_body("POST", url, fields=form, encode_multipart=False)
    assert r.status == 200
    tok = json.loads(r.data)["access_token"]
    up = pool.request(
        "POST",
        f"{token_server.url}/v2/app/blobs/uploads/",
        headers={"Authorization": f"Bearer {tok}"},
    )
    assert up.status == 202
    form["refresh_token"] = "forged"
    r = pool.request_encode_body("POST", url, fields=form, encode_multipart=False)
    assert r.status == 401
    pw = {"grant_type": "password", "username": "pat", "password": "plain-pw", "scope": ""}
    r = pool.request_encode_body("POST", url, fields=pw, encode_multipart=False)
    assert r.status == 200
    pw["password"] = "wrong"
    r = pool.request_encode_body("POST", url, fields=pw, encode_multipart=False)
    assert r.status == 401


def test_luff_identity_token(token_server: RegistryServer) -> None:
    """luff's refresh-token (identity token) path against the server's OAuth2 endpoint."""
    url = f"{token_server.url}/token?service=luff-registry&offline_token=true"
    r = pool.request("GET", url, headers=basic_header("bob", "bcrypt-pw"))
    creds = Credentials(username="<token>", identity_token=json.loads(r.data)["refresh_token"])
    h = token_server.host
    ctx = Context(credentials=lambda host: creds if host == h else ANONYMOUS)
    desc = random_image().push(f"{h}/ident/app:1", ctx)
    assert basic.digest(f"{h}/ident/app:1", ctx=ctx).digest == desc.digest


def test_tokens_expire(htpasswd: Path) -> None:
    with RegistryServer(address="127.0.0.1:0", htpasswd=htpasswd, token=True, token_ttl=1) as srv:
        tok = _token(srv, "repository:app:pull", headers=basic_header("pat", "plain-pw"))
        auth = {"Authorization": f"Bearer {tok}"}
        assert pool.request("GET", f"{srv.url}/v2/", headers=auth).status == 200
        time.sleep(1.5)
        assert pool.request("GET", f"{srv.url}/v2/", headers=auth).status == 401


def test_token_mode_without_users_grants_everyone() -> None:
    with RegistryServer(address="127.0.0.1:0", token=True) as srv:
        anon = Context(credentials=lambda h: ANONYMOUS, backoff=0.01)
        desc = random_image().push(f"{srv.host}/open/app:1", anon)
        assert basic.digest(f"{srv.host}/open/app:1", ctx=anon).digest == desc.digest


def test_token_endpoint_absent_without_token_mode(basic_server: RegistryServer) -> None:
    assert pool.request("GET", f"{basic_server.url}/token").status == 404
