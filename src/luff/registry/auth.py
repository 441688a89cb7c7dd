"""Credentials and authentication challenges.

Credentials are looked up the way Docker and podman do: podman's
``auth.json`` (``REGISTRY_AUTH_FILE``, then ``$XDG_RUNTIME_DIR/containers``,
then ``~/.config/containers``), then Docker's ``config.json``
(``$DOCKER_CONFIG`` or ``~/.docker``) with ``credHelpers``, ``credsStore``
and ``auths``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from luff.errors import AuthError, UsageError
from luff.model import jsonutil
from luff.record import Record, setfields

if TYPE_CHECKING:
    from pathlib import Path

DOCKER_HUB_KEY = "https://index.docker.io/v1/"


class Credentials(Record, frozen=True):
    """A user name and secret, or an identity (refresh) token."""

    username: str
    password: str
    identity_token: str

    def __init__(
        self,
        username: str = "",
        password: str = "",
        identity_token: str = "",
    ) -> None:
        setfields(
            self,
            username=username,
            password=password,
            identity_token=identity_token,
        )

    def basic(self) -> str:
        """The value of a Basic ``Authorization`` header."""
        import base64

        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __bool__(self) -> bool:
        return bool(self.username or self.password or self.identity_token)


ANONYMOUS = Credentials()


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """Parse a ``WWW-Authenticate`` header into ``[(scheme, params)]``.

    Handles quoted values with commas and several challenges in one header.
    """
    out: list[tuple[str, dict[str, str]]] = []
    token = re.compile(
        r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,\s]*))?\s*,?'
    )
    pos = 0
    scheme = ""
    params: dict[str, str] = {}
    while pos < len(header):
        m = token.match(header, pos)
        if not m or m.end() == pos:
            break
        name, value = m.group(1), m.group(2)
        if value is None:
            # Either a new scheme or a token68; a scheme may be followed by params.
            if scheme:
                out.append((scheme, params))
            scheme, params = name, {}
        else:
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[name.lower()] = value
        pos = m.end()
    if scheme:
        out.append((scheme, params))
    return out


# --- config files -----------------------------------------------------------


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    from pathlib import Path

    base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(base) / "config.json"


def podman_auth_paths() -> list[Path]:
    """Podman/containers auth files, most specific first."""
    from pathlib import Path

    paths = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        paths.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    paths.append(Path.home() / ".config" / "containers" / "auth.json")
    return paths


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise AuthError(f"cannot read {path}: {e.strerror}") from None
    try:
        obj = jsonutil.loads(text, what="auth file", where=str(path)) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise AuthError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(obj, dict):
        raise AuthError(f"{path}: not a JSON object")
    return obj


def _keys_for(host: str) -> Iterator[str]:
    yield host
    if host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        yield DOCKER_HUB_KEY
        yield "docker.io"
        yield "index.docker.io"
        yield "registry-1.docker.io"


def _match_auths(auths: dict[str, Any], host: str) -> dict[str, Any] | None:
    if not isinstance(auths, dict):
        return None
    for key in _keys_for(host):
        if key in auths and isinstance(auths[key], dict):
            return dict(auths[key])
    for key, val in auths.items():
        # Entries may be written as URLs: "https://host/v1/".
        k = re.sub(r"^https?://", "", key).split("/", 1)[0]
        if k == host and isinstance(val, dict):
            return dict(val)
    return None


def _from_entry(entry: dict[str, Any], where: str) -> Credentials:
    if entry.get("identitytoken"):
        return Credentials(
            username=str(entry.get("username", "<token>")),
            identity_token=str(entry["identitytoken"]),
        )
    if entry.get("auth"):
        try:
            import base64

            raw = base64.b64decode(entry["auth"]).decode()
        except Exception:
            raise AuthError(f"{where}: 'auth' is not base64 of user:password") from None
        user, sep, pw = raw.partition(":")
        if not sep:
            raise AuthError(f"{where}: 'auth' is not base64 of user:password")
        return Credentials(user, pw)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")))
    return ANONYMOUS


def run_helper(helper: str, host: str) -> Credentials:
    """Ask ``docker-credential-HELPER get`` for *host*'s credentials."""
    import subprocess

    exe = f"docker-credential-{helper}"
    for key in _keys_for(host):
        try:
            p = subprocess.run(
                [exe, "get"], input=key.encode(), capture_output=True, timeout=30, check=False
            )
        except FileNotFoundError:
            raise AuthError(f"credential helper {exe} not found on PATH") from None
        except subprocess.TimeoutExpired:
            raise AuthError(f"credential helper {exe} timed out") from None
        if p.returncode != 0:
            continue  # "credentials not found in native keychain"
        try:
            obj = jsonutil.loads(p.stdout, what=f"output of {exe}")
            if not isinstance(obj, dict):
                raise ValueError(obj)
        except ValueError:
            raise AuthError(f"credential helper {exe} printed invalid JSON") from None
        user, secret = obj.get("Username", ""), obj.get("Secret", "")
        if user == "<token>":
            return Credentials(username=user, identity_token=secret)
        return Credentials(user, secret)
    return ANONYMOUS


def lookup(host: str) -> Credentials:
    """Credentials for *host* from the config files, or anonymous."""
    for path in podman_auth_paths():
        entry = _match_auths(_load(path).get("auths", {}), host)
        if entry is not None:
            creds = _from_entry(entry, str(path))
            if creds:
                return creds
    path = docker_config_path()
    cfg = _load(path)
    helpers = cfg.get("credHelpers") or {}
    if isinstance(helpers, dict):
        for key in _keys_for(host):
            if key in helpers:
                return run_helper(str(helpers[key]), host)
    entry = _match_auths(cfg.get("auths", {}), host)
    if cfg.get("credsStore"):
        creds = run_helper(str(cfg["credsStore"]), host)
        if creds:
            return creds
    if entry is not None:
        return _from_entry(entry, str(path))
    return ANONYMOUS


def _write_atomic(path: Path, obj: dict[str, Any]) -> None:
    """Replace the file at *path* atomically (a temporary file beside it, then a rename).

    A symlinked auth file (dotfiles kept in a repository, a mounted secret)
    stays a link: the file it points to is replaced, as Docker does, and
    keeps its mode (a new file gets 0600).
    """
    import stat
    import tempfile
    from pathlib import Path

    try:
        target = Path(os.path.realpath(path)) if path.is_symlink() else path
    except OSError as e:
        raise AuthError(f"cannot resolve {path}: {e.strerror}") from None
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o600
    except OSError as e:
        raise AuthError(f"cannot read {target}: {e.strerror}") from None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    except OSError as e:
        raise AuthError(f"cannot write {target}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent="\t")
            f.write("\n")
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise AuthError(f"cannot write {target}: {e.strerror}") from None
        raise


def login_config_path() -> Path:
    """Where ``luff auth login`` writes: ``REGISTRY_AUTH_FILE`` if set, else Docker's."""
    from pathlib import Path

    env = os.environ.get("REGISTRY_AUTH_FILE")
    return Path(env) if env else docker_config_path()


def _store_key(host: str) -> str:
    return (
        DOCKER_HUB_KEY if host in ("docker.io", "registry-1.docker.io", "index.docker.io") else host
    )


def save(host: str, creds: Credentials) -> Path:
    """Store *creds* for *host*; returns the file written."""
    path = login_config_path()
    cfg = _load(path)
    auths = cfg.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise UsageError(f"{path}: 'auths' is not an object")
    raw = f"{creds.username}:{creds.password}".encode()
    import base64

    auths[_store_key(host)] = {"auth": base64.b64encode(raw).decode()}
    _write_atomic(path, cfg)
    return path


def remove(host: str) -> bool:
    """Forget *host*'s credentials; True when something was removed."""
    path = login_config_path()
    cfg = _load(path)
    auths = cfg.get("auths", {})
    removed = False
    for key in list(auths) if isinstance(auths, dict) else []:
        if key in set(_keys_for(host)) or re.sub(r"^https?://", "", key).split("/")[0] == host:
            del auths[key]
            removed = True
    if removed:
        _write_atomic(path, cfg)
    return removed


# --- credentials given for one run (--creds) ----------------------------------------

# A registry host as Docker tells one: with a dot or a port, or localhost.
_HOST_RE = re.compile(
    r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:.]+\])(?::\d+)?"
    r"|[A-Za-z0-9-]+:\d+"
)


def parse_inline(value: str, option: str = "--creds") -> tuple[str, Credentials]:
    """``[HOST=]USER:PASSWORD`` as ``(HOST or "", credentials)``."""
    host = ""
    left, eq, rest = value.partition("=")
    if eq and _HOST_RE.fullmatch(left):
        host, value = left, rest
    user, colon, password = value.partition(":")
    if not colon or not user:
        raise UsageError(f"{option}: expected [HOST=]USER:PASSWORD")
    return host, Credentials(user, password)


def inline_lookup(
    given: list[tuple[str, Credentials]], fallback: Callable[[str], Credentials] | None = None
) -> Callable[[str], Credentials]:
    """A credential lookup that answers with *given* (``[(HOST or "", credentials)]``):
    the entry for the host, else the one without a host, else *fallback* (the files)."""
    table = {h: c for h, c in given if h}
    default = next((c for h, c in given if not h), None)
    rest = fallback or lookup

    def find(host: str) -> Credentials:
        for key in _keys_for(host):
            if key in table:
                return table[key]
        return default if default is not None else rest(host)

    return find
