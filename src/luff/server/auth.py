"""Authentication of the embedded registry: htpasswd users and bearer tokens.

Two modes:

- **basic**: every request carries ``Authorization: Basic``; the user must be
  in the htpasswd file. Any valid user may do anything.
- **token**: the registry answers 401 with a ``Bearer`` challenge whose realm
  is its own ``/token`` endpoint. That endpoint hands out opaque tokens for
  the scopes asked for (to users of the htpasswd file when one is given,
  else to anyone), and also implements the OAuth2 ``password`` and
  ``refresh_token`` grants, so identity-token flows can be tested.

htpasswd entries may be bcrypt (``$2y$``/``$2a$``/``$2b$``, what
``htpasswd -B`` writes and what the distribution registry accepts),
``{SHA}`` (base64 SHA-1, ``htpasswd -s``) or ``{PLAIN}`` followed by the
password in clear. Any other entry (Apache MD5 ``$apr1$``, SHA-crypt,
unprefixed crypt(3) hashes, garbage) is refused when the file is loaded, so
no request can meet a hash luff cannot verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from luff.errors import UsageError


@dataclass(frozen=True)
class Access:
    """One granted or needed scope item, e.g. ``repository``, ``app``, ``pull``."""

    type: str
    name: str
    action: str

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{self.action}"


def parse_scope(scope: str) -> list[Access]:
    """``repository:name:pull,push`` -> one :class:`Access` per action."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and kind and name):
        return []
    return [Access(kind, name, a) for a in actions.split(",") if a]


def scope_string(needs: Iterable[Access]) -> str:
    """The challenge ``scope`` parameter for *needs* (actions grouped per resource)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for a in needs:
        acts = grouped.setdefault((a.type, a.name), [])
        if a.action not in acts:
            acts.append(a.action)
    return " ".join(f"{t}:{n}:{','.join(acts)}" for (t, n), acts in grouped.items())


def hash_password(password: str, scheme: str = "bcrypt", *, rounds: int = 10) -> str:
    """An htpasswd hash of *password*: ``bcrypt`` (default; cost *rounds*), ``sha`` or ``plain``."""
    if scheme == "bcrypt":
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()
    if scheme == "sha":
        return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    if scheme == "plain":
        return "{PLAIN}" + password
    raise UsageError(f"unknown password scheme {scheme!r}")


_BCRYPT_RE = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_SHA_RE = re.compile(r"\{SHA\}[A-Za-z0-9+/]{27}=")
SUPPORTED = "bcrypt (htpasswd -B), {SHA} (htpasswd -s) or {PLAIN}password"


def hash_problem(hashed: str) -> str | None:
    """Why luff cannot verify passwords against the htpasswd value *hashed*; None if it can."""
    if _BCRYPT_RE.fullmatch(hashed) or _SHA_RE.fullmatch(hashed) or hashed.startswith("{PLAIN}"):
        return None
    if hashed.startswith("$2"):
        what = "a malformed bcrypt hash"
    elif hashed.startswith("{SHA}"):
        what = "a malformed {SHA} hash (expected base64 of 20 bytes)"
    elif hashed.startswith("$apr1$"):
        what = "Apache MD5 ($apr1$), which is not supported"
    elif re.match(r"\$[156]\$", hashed):
        what = f"{hashed[:3]} crypt (MD5/SHA-crypt), which is not supported"
    elif scheme := re.match(r"\$[^$]*\$|\{[^}]*\}", hashed):
        what = f"an unknown hash scheme {scheme.group()}"
    elif not hashed:
        what = "an empty hash"
    else:
        what = "not a hash luff can verify (crypt(3)? plain text needs the {PLAIN} prefix)"
    return f"{what}; use {SUPPORTED}"


def check_password(password: str, hashed: str) -> bool:
    """True when *password* matches the htpasswd *hashed* value (False for unknown schemes)."""
    if _BCRYPT_RE.fullmatch(hashed):
        try:
            return bool(bcrypt.checkpw(password.encode(), hashed.encode()))
        except ValueError:
            return False
    if _SHA_RE.fullmatch(hashed):
        want = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
        return hmac.compare_digest(want, hashed[5:])
    if hashed.startswith("{PLAIN}"):
        return hmac.compare_digest(password.encode(), hashed[7:].encode())
    return False


def load_htpasswd(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read ``user:hash`` lines (blank lines and ``#`` comments skipped).

    A line whose hash luff cannot verify is a :class:`UsageError` naming the
    file and line.
    """
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UsageError(f"cannot read htpasswd file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not an htpasswd file (not text)") from None
    users: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise UsageError(f"{path}:{n}: expected USER:HASH")
        problem = hash_problem(hashed)
        if problem:
            raise UsageError(f"{path}:{n}: unsupported hash for user {user!r}: {problem}")
        users[user] = hashed
    return users


@dataclass
class _Token:
    user: str
    access: frozenset[Access]
    expires: float


@dataclass
class Authenticator:
    """Checks credentials and tokens; thread-safe.

    *users* maps user names to htpasswd hashes. With ``token=False`` and no
    users, everything is allowed.
    """

    users: Mapping[str, str] = field(default_factory=dict)
    token: bool = False
    token_ttl: int = 300
    anonymous_pull: tuple[str, ...] = ()
    service: str = "luff-registry"
    _ok: dict[str, str] = field(default_factory=dict, repr=False)
    _tokens: dict[str, _Token] = field(default_factory=dict, repr=False)
    _refresh: dict[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def enabled(self) -> bool:
        return self.token or bool(self.users)

    @property
    def mode(self) -> str:
        """``none``, ``basic`` or ``token``."""
        return "token" if self.token else "basic" if self.users else "none"

    def check_basic(self, header: str) -> str | None:
        """The user of a valid ``Basic`` header, else None. Successes are cached."""
        if not header.lower().startswith("basic "):
            return None
        key = hashlib.sha256(header.encode()).hexdigest()
        with self._lock:
            if key in self._ok:
                return self._ok[key]
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = raw.partition(":")
        if not sep:
            return None
        hashed = self.users.get(user)
        if hashed is None or not check_password(password, hashed):
            return None
        with self._lock:
            self._ok[key] = user
        return user

    def issue(self, user: str, scopes: Iterable[str]) -> tuple[str, int]:
        """A new token for *user* (``""``: anonymous) granting *scopes*; ``(token, ttl)``.

        Users get everything they ask for. Anonymous clients get everything
        when there are no users, else only ``pull`` on repositories whose
        names start with one of :attr:`anonymous_pull`.
        """
        access = frozenset(
            a
            for s in scopes
            for a in parse_scope(s)
            if user
            or not self.users
            or (a.action == "pull" and a.type == "repository" and self._public(a.name))
        )
        tok = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            for k in [k for k, t in self._tokens.items() if t.expires < now]:
                del self._tokens[k]
            self._tokens[tok] = _Token(user, access, now + self.token_ttl)
        return tok, self.token_ttl

    def _public(self, name: str) -> bool:
        return any(name.startswith(p) for p in self.anonymous_pull)

    def refresh_token(self, user: str) -> str:
        """A long-lived refresh (identity) token for *user*."""
        tok = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[tok] = user
        return tok

    def refresh_user(self, token: str) -> str | None:
        """The user a refresh token was issued to."""
        with self._lock:
            return self._refresh.get(token)

    def check_password_login(self, user: str, password: str) -> bool:
        """True when *user*/*password* are valid (always, when there are no users)."""
        if not self.users:
            return True
        hashed = self.users.get(user)
        return hashed is not None and check_password(password, hashed)

    def check_bearer(self, header: str, needs: Iterable[Access]) -> tuple[bool, str]:
        """``(allowed, user)`` for a ``Bearer`` header and the access needed."""
        if not header.lower().startswith("bearer "):
            return False, ""
        with self._lock:
            t = self._tokens.get(header[7:].strip())
        if t is None or t.expires < time.monotonic():
            return False, ""
        for need in needs:
            if need in t.access:
                continue
            if Access(need.type, need.name, "*") in t.access:
                continue
            return False, t.user
        return True, t.user
