"""Who may do what, over HTTP: credentials checked per request, and the token endpoint.

A request whose credentials do not cover the access it needs is answered
401 with a Basic or Bearer challenge (the challenge names the scope to ask
for); ``/token`` issues bearer tokens (GET with Basic auth, or OAuth2 POST).
The credentials and tokens themselves are :class:`~luff.server.auth.Authenticator`'s.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from luff.server.api import USER_KEY, ApiError
from luff.server.auth import Access, Authenticator, scope_string


@dataclass
class Gate:
    """The HTTP side of an :class:`Authenticator`."""

    auth: Authenticator

    def realm(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}/token"

    async def authorize(
        self, request: web.Request, needs: Iterable[Access], wanted: Iterable[Access] = ()
    ) -> None:
        """Raise 401 unless the request's credentials cover *needs*.

        A token-mode challenge also asks for *wanted*: access the request
        makes use of when granted, and does without otherwise.
        """
        needs = list(needs)
        a = self.auth
        if not a.enabled:
            return
        header = request.headers.get("Authorization", "")
        if a.mode == "basic":
            user = await asyncio.to_thread(a.check_basic, header) if header else None
            if user is None:
                raise ApiError(
                    401,
                    "UNAUTHORIZED",
                    "authentication required",
                    headers={"WWW-Authenticate": f'Basic realm="{a.service}"'},
                )
            request[USER_KEY] = user
            return
        ok, user = a.check_bearer(header, needs)
        if ok:
            request[USER_KEY] = user
            return
        challenge = f'Bearer realm="{self.realm(request)}",service="{a.service}"'
        if needs:
            challenge += f',scope="{scope_string([*needs, *wanted])}"'
        if user:
            challenge += ',error="insufficient_scope"'
        raise ApiError(
            401,
            "UNAUTHORIZED",
            "authentication required",
            [{"Type": n.type, "Name": n.name, "Action": n.action} for n in needs] or None,
            headers={"WWW-Authenticate": challenge},
        )

    def allows(self, request: web.Request, needs: Iterable[Access]) -> bool:
        """True when the request's credentials cover *needs* (token mode), without raising."""
        if self.auth.mode != "token":
            return True
        ok, _ = self.auth.check_bearer(request.headers.get("Authorization", ""), needs)
        return ok

    async def token(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        """The token endpoint (GET with Basic auth, or OAuth2 POST)."""
        a = self.auth
        if a.mode != "token":
            raise ApiError(404, "NOT_FOUND", "this registry does not issue tokens")
        refresh = ""
        if request.method == "POST":
            form = await request.post()
            grant = str(form.get("grant_type", ""))
            scopes = str(form.get("scope", "")).split()
            if grant == "password":
                user = str(form.get("username", ""))
                pw = str(form.get("password", ""))
                ok = await asyncio.to_thread(a.check_password_login, user, pw)
                if not ok:
                    raise ApiError(401, "UNAUTHORIZED", "invalid username or password")
                if str(form.get("access_type", "")) == "offline":
                    refresh = a.refresh_token(user)
            elif grant == "refresh_token":
                found = a.refresh_user(str(form.get("refresh_token", "")))
                if found is None:
                    raise ApiError(401, "UNAUTHORIZED", "invalid refresh token")
                user = found
            else:
                raise ApiError(400, "UNSUPPORTED", f"unsupported grant_type {grant!r}")
        else:
            scopes = [s for v in request.query.getall("scope", []) for s in v.split()]
            header = request.headers.get("Authorization", "")
            user = ""
            if header:
                found = await asyncio.to_thread(a.check_basic, header) if a.users else None
                if a.users and found is None:
                    raise ApiError(
                        401,
                        "UNAUTHORIZED",
                        "invalid username or password",
                        headers={"WWW-Authenticate": f'Basic realm="{a.service}"'},
                    )
                user = found or "anonymous"
            if request.query.get("offline_token") == "true" and user:
                refresh = a.refresh_token(user)
        request[USER_KEY] = user or "-"
        tok, ttl = a.issue(user, scopes)
        body: dict[str, Any] = {
            "token": tok,
            "access_token": tok,
            "expires_in": ttl,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "scope": " ".join(scopes),
        }
        if refresh:
            body["refresh_token"] = refresh
        return web.json_response(body)
