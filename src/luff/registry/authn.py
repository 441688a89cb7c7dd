"""The auth layer: the ``Authorization`` header for a set of scopes.

It learns the registry's challenge from the ping (``WWW-Authenticate`` of
``GET /v2/``) and from any later 401, and answers with:

- nothing, for a registry that asks for no credentials;
- ``Basic``, for a registry that asks for it, when there are credentials;
- ``Bearer``, with a token from the realm for exactly the scopes of the
  request. Tokens are fetched once per scope set and kept until shortly
  before they expire; a 401 (a new challenge, ``insufficient_scope``, a
  token the registry no longer takes) fetches a fresh one.

Identity tokens (``identitytoken`` in an auth file) are exchanged with the
OAuth2 ``refresh_token`` grant, as Docker does.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

from luff.errors import AuthError
from luff.model import jsonutil
from luff.record import Record
from luff.registry.auth import Credentials, parse_challenges

#: ``(method, url, headers, body) -> (status, body, error message)``: one token request.
TokenFetch = Callable[[str, str, Mapping[str, str], bytes | None], tuple[int, bytes, str]]

Scopes = tuple[str, ...]


def understood(header: str) -> bool:
    """True when a ``WWW-Authenticate`` header holds a challenge luff can answer."""
    for scheme, params in parse_challenges(header):
        if scheme.lower() == "basic" or (scheme.lower() == "bearer" and params.get("realm")):
            return True
    return False


class _Token(Record):
    value: str
    expires: float

    def __init__(
        self,
        value: str,
        expires: float,
    ) -> None:
        self.value = value
        self.expires = expires


class Authenticator:
    """Credentials and tokens for one registry host."""

    def __init__(
        self, host: str, credentials: Callable[[], Credentials], fetch: TokenFetch
    ) -> None:
        self.host = host
        self._credentials = credentials
        self._fetch = fetch
        self._lock = threading.Lock()
        self._scheme = ""  # "", "basic" or "bearer"
        self._challenge: dict[str, str] = {}
        self._tokens: dict[Scopes, _Token] = {}
        self._fetching: dict[Scopes, threading.Lock] = {}

    @property
    def scheme(self) -> str:
        """The scheme the registry asked for: ``""``, ``"basic"`` or ``"bearer"``."""
        return self._scheme

    def credentials(self) -> Credentials:
        return self._credentials()

    def learn(self, header: str) -> bool:
        """Take the challenge of a ``WWW-Authenticate`` header; True when one was understood."""
        challenges = parse_challenges(header)
        for scheme, params in challenges:
            if scheme.lower() == "bearer" and params.get("realm"):
                with self._lock:
                    self._scheme = "bearer"
                    # A scope in the challenge belongs to the request that was refused.
                    self._challenge = {k: v for k, v in params.items() if k != "scope"}
                return True
        for scheme, _ in challenges:
            if scheme.lower() == "basic":
                with self._lock:
                    self._scheme = "basic"
                return True
        return False

    def header(self, scopes: Scopes) -> str | None:
        """The ``Authorization`` value for a request needing *scopes*, if any."""
        scheme = self._scheme
        if scheme == "basic":
            c = self.credentials()
            return c.basic() if c else None
        if scheme != "bearer":
            return None
        tok = self._valid_token(scopes)
        if tok is None:
            tok = self._refresh(scopes, {}, stale=None)
        return f"Bearer {tok.value}"

    def challenged(self, header: str, scopes: Scopes, sent: str | None) -> bool:
        """React to a 401 with *header*; True when the request should be sent again.

        *sent* is the ``Authorization`` the refused request carried.
        """
        params: dict[str, str] = {}
        for scheme, p in parse_challenges(header):
            if scheme.lower() == "bearer" and p.get("realm"):
                params = p
        if not self.learn(header):
            return False
        if self._scheme == "basic":
            return bool(self.credentials()) and sent is None
        self._refresh(scopes, params, stale=sent)
        return True

    def check_login(self) -> None:
        """On a token registry, fetch a token with no scope: wrong credentials fail here."""
        if self._scheme == "bearer":
            self._refresh((), {}, stale=None, force=True)

    def _valid_token(self, scopes: Scopes) -> _Token | None:
        with self._lock:
            tok = self._tokens.get(scopes)
        return tok if tok is not None and tok.expires > time.monotonic() else None

    def _refresh(
        self, scopes: Scopes, extra: Mapping[str, str], stale: str | None, force: bool = False
    ) -> _Token:
        """A token for *scopes* (plus the scope of a challenge in *extra*), fetched once
        even when several threads ask at the same time."""
        with self._lock:
            lock = self._fetching.setdefault(scopes, threading.Lock())
        with lock:
            tok = self._valid_token(scopes)
            if tok is not None and not force and f"Bearer {tok.value}" != stale:
                return tok  # another thread fetched it meanwhile
            with self._lock:
                params = {**self._challenge, **{k: v for k, v in extra.items() if k == "scope"}}
            tok = self._fetch_token(scopes, params)
            with self._lock:
                self._tokens[scopes] = tok
            return tok

    def _fetch_token(self, scopes: Scopes, params: Mapping[str, str]) -> _Token:
        import urllib.parse

        realm = params.get("realm", "")
        if not realm:
            raise AuthError("the registry asked for a token but named no realm", where=self.host)
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        all_scopes = list(scopes)
        for s in params.get("scope", "").split(" "):
            if s and s not in all_scopes:
                all_scopes.append(s)
        creds = self.credentials()
        headers: dict[str, str] = {}
        if creds.identity_token:
            form = dict(query)
            form.update(
                grant_type="refresh_token",
                refresh_token=creds.identity_token,
                client_id="luff",
                scope=" ".join(all_scopes),
            )
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            status, data, msg = self._fetch(
                "POST", realm, headers, urllib.parse.urlencode(form).encode()
            )
        else:
            query += [("scope", s) for s in all_scopes]
            if creds:
                headers["Authorization"] = creds.basic()
            sep = "&" if "?" in realm else "?"
            url = realm + (sep + urllib.parse.urlencode(query) if query else "")
            status, data, msg = self._fetch("GET", url, headers, None)
        if status in (401, 403):
            who = f"as {creds.username!r}" if creds else "anonymously"
            raise AuthError(f"token server refused to authenticate {who}", where=self.host)
        if status != 200:
            raise AuthError(f"token request failed: {msg}", where=self.host)
        try:
            obj = jsonutil.loads(data, what="token response", where=self.host)
            token = obj.get("token") or obj.get("access_token")
            expires = float(obj.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            raise AuthError("token server sent invalid JSON", where=self.host) from None
        if not token or not isinstance(token, str):
            raise AuthError("token server sent no token", where=self.host)
        if math.isnan(expires):
            expires = 60.0
        return _Token(token, time.monotonic() + max(min(expires, 86400.0) - 10, 5))
