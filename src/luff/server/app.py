"""The OCI distribution API, served by aiohttp.

Everything runs on one event loop; storage calls are short synchronous file
or dictionary operations, and bodies are streamed chunk by chunk, so many
clients upload and download at once without holding blobs in memory. Work
that may take long (hashing a whole blob again to check a sha512 digest,
parsing a manifest, bcrypt) runs in worker threads meanwhile.

What a client controls is bounded: manifests by :data:`MAX_MANIFEST` bytes
and :data:`MAX_JSON_DEPTH` levels of nesting, uploads in progress by
``max_uploads`` (then ``429 TOOMANYREQUESTS``) and by an idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from luff.errors import LuffError
from luff.model import mediatypes as mt
from luff.model.digest import Digest
from luff.model.manifest import MAX_MANIFEST, Manifest
from luff.server.auth import Access, Authenticator, scope_string
from luff.server.storage import Storage, Upload

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MAX_NAME = 255
#: Manifests nested deeper than this (arrays and objects) are refused as invalid.
#: Real manifests nest about 5 levels; the bound keeps parsing far from recursion limits.
MAX_JSON_DEPTH = 64
#: An upload untouched for this many seconds is dropped (its slot and file freed).
DEFAULT_UPLOAD_TIMEOUT = 600.0
#: Uploads in progress at once; beyond, starting one answers 429 TOOMANYREQUESTS.
DEFAULT_MAX_UPLOADS = 1000

try:  # aiohttp >= 3.12 wants typed keys for request storage
    from aiohttp.web import RequestKey

    USER_KEY: Any = RequestKey("luff_user", str)
except ImportError:  # pragma: no cover
    USER_KEY = "luff_user"

Handler = Callable[[web.Request, "re.Match[str]"], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answered with the distribution error JSON."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = headers or {}

    def response(self, head: bool = False) -> web.Response:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        body = json.dumps({"errors": [err]}).encode()
        hdrs = {API_VERSION[0]: API_VERSION[1], **self.headers}
        if head:
            hdrs["Content-Length"] = "0"
            return web.Response(status=self.status, headers=hdrs)
        return web.Response(
            status=self.status, body=body, content_type="application/json", headers=hdrs
        )


def _digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except LuffError as e:
        raise ApiError(400, "DIGEST_INVALID", str(e), {"digest": text}) from None


def _name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise ApiError(400, "NAME_INVALID", "invalid repository name", {"name": name})
    return name


_JSON_SPECIAL = re.compile(rb'[\[\]{}"]')
_STRING_TAIL = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def json_too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text *data* nests arrays/objects more than *limit* deep.

    Brackets inside strings do not count. Text that is not JSON may answer
    either way; the parser refuses it afterwards.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    pos = 0
    search = _JSON_SPECIAL.search
    while (m := search(data, pos)) is not None:
        c = data[m.start()]
        pos = m.end()
        if c == 0x22:  # a string: skip to its closing quote
            s = _STRING_TAIL.match(data, pos)
            if s is None:
                return False  # unterminated: not JSON
            pos = s.end()
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _parse_manifest(data: bytes, ctype: str) -> Manifest:
    if json_too_deep(data):
        raise ApiError(
            400,
            "MANIFEST_INVALID",
            f"manifest JSON nests deeper than {MAX_JSON_DEPTH} levels",
        )
    try:
        return Manifest.parse(data, ctype)
    except LuffError as e:
        raise ApiError(400, "MANIFEST_INVALID", str(e)) from None
    except RecursionError:  # pragma: no cover - json_too_deep keeps well below the limit
        raise ApiError(400, "MANIFEST_INVALID", "manifest JSON nests too deep") from None


def _entity_tags(header: str) -> list[str] | None:
    """The entity tags of an ``If-Match``/``If-None-Match`` header; None for ``*``.

    Weak tags keep their ``W/`` prefix (they never match strongly).
    """
    if header.strip() == "*":
        return None
    out = []
    for part in header.split(","):
        part = part.strip()
        weak = part.startswith("W/")
        if weak:
            part = part[2:]
        if len(part) >= 2 and part[0] == part[-1] == '"':
            part = part[1:-1]
        if part:
            out.append(("W/" if weak else "") + part)
    return out


def _page(request: web.Request, items: list[str], path: str) -> tuple[list[str], dict[str, str]]:
    """Apply ``n``/``last``; returns the page and a ``Link`` header when more follow."""
    last = request.query.get("last")
    if last:
        items = [i for i in items if i > last]
    n_text = request.query.get("n")
    if n_text is None or n_text == "":
        return items, {}
    try:
        n = int(n_text)
        if n < 0:
            raise ValueError
    except ValueError:
        raise ApiError(400, "PAGINATION_NUMBER_INVALID", "invalid number of results") from None
    if len(items) <= n:
        return items, {}
    page = items[:n]
    if not page:
        return page, {}
    q = urllib.parse.urlencode({"n": n, "last": page[-1]})
    return page, {"Link": f'<{path}?{q}>; rel="next"'}


def _range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` of a single ``bytes=`` range; None means the whole blob."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None  # unsupported forms (several ranges) get the whole blob
    if m.group(1) == "":
        length = int(m.group(2))
        if length == 0:
            raise ApiError(416, "RANGE_INVALID", "range not satisfiable")
        return max(0, size - length), size
    start = int(m.group(1))
    end = int(m.group(2)) + 1 if m.group(2) else size
    if start >= size or end <= start:
        raise ApiError(
            416,
            "RANGE_INVALID",
            "range not satisfiable",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, min(end, size)


class AccessLog(AbstractAccessLogger):
    """One line per request: client, user, request line, status, bytes, duration."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        user = request.get(USER_KEY) or "-"
        when = _now()
        line = (
            f'{request.remote or "-"} - {user} [{when}] "{request.method} {request.path_qs} '
            f'HTTP/{request.version.major}.{request.version.minor}" {response.status} '
            f"{response.body_length} {time * 1000:.1f}ms"
        )
        self.logger.info(line)


def _now() -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z")


@dataclass
class RegistryApp:
    """The request handlers over a :class:`Storage` and an :class:`Authenticator`."""

    storage: Storage
    auth: Authenticator = field(default_factory=Authenticator)
    upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT
    max_uploads: int = DEFAULT_MAX_UPLOADS
    _busy: set[str] = field(default_factory=set)

    def application(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=MAX_MANIFEST + 1)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        app.cleanup_ctx.append(self._sweeper)
        return app

    async def _sweeper(self, app: web.Application) -> AsyncIterator[None]:
        """Drop idle uploads now and then, also when nobody starts new ones."""

        async def sweep() -> None:
            interval = max(0.05, min(self.upload_timeout / 4, 60.0))
            while True:
                await asyncio.sleep(interval)
                self.expire_uploads()

        task = asyncio.ensure_future(sweep())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def expire_uploads(self) -> int:
        """Drop the uploads idle for longer than :attr:`upload_timeout`."""
        return self.storage.expire_uploads(self.upload_timeout, self._busy)

    # --- routing ----------------------------------------------------------
    def _routes(self) -> list[tuple[re.Pattern[str], dict[str, Handler]]]:
        return [
            (re.compile(r"^/v2/?$"), {"GET": self.ping, "HEAD": self.ping}),
            (re.compile(r"^/v2/_catalog$"), {"GET": self.catalog}),
            (re.compile(r"^/v2/(?P<name>.+)/tags/list$"), {"GET": self.tags}),
            (
                re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$"),
                {
                    "GET": self.get_manifest,
                    "HEAD": self.get_manifest,
                    "PUT": self.put_manifest,
                    "DELETE": self.delete_manifest,
                },
            ),
            (re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?$"), {"POST": self.start_upload}),
            (
                re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[^/]+)$"),
                {
                    "GET": self.upload_status,
                    "PATCH": self.patch_upload,
                    "PUT": self.finish_upload,
                    "DELETE": self.cancel_upload,
                },
            ),
            (
                re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$"),
                {"GET": self.get_blob, "HEAD": self.get_blob, "DELETE": self.delete_blob},
            ),
            (
                re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$"),
                {"GET": self.referrers},
            ),
            (re.compile(r"^/token$"), {"GET": self.token, "POST": self.token}),
        ]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """Route *request* and turn :class:`ApiError` into error JSON."""
        path = request.path
        head = request.method == "HEAD"
        try:
            for pattern, methods in self._routes_cache:
                m = pattern.match(path)
                if m is None:
                    continue
                handler = methods.get(request.method)
                if handler is None:
                    raise ApiError(
                        405,
                        "UNSUPPORTED",
                        f"method {request.method} not allowed",
                        headers={"Allow": ", ".join(methods)},
                    )
                resp = await handler(request, m)
                if path.startswith("/v2"):
                    resp.headers.setdefault(*API_VERSION)
                return resp
            raise ApiError(404, "NOT_FOUND", "not found")
        except ApiError as e:
            return e.response(head)

    @property
    def _routes_cache(self) -> list[tuple[re.Pattern[str], dict[str, Handler]]]:
        cached: list[tuple[re.Pattern[str], dict[str, Handler]]] | None = getattr(
            self, "_routes_list", None
        )
        if cached is None:
            cached = self._routes()
            self._routes_list = cached
        return cached

    # --- auth -------------------------------------------------------------
    def _realm(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}/token"

    async def _authorize(
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
        challenge = f'Bearer realm="{self._realm(request)}",service="{a.service}"'
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

    def _allows(self, request: web.Request, needs: Iterable[Access]) -> bool:
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

    # --- simple endpoints -------------------------------------------------
    async def ping(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        await self._authorize(request, [])
        return web.json_response({})

    async def catalog(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        await self._authorize(request, [Access("registry", "catalog", "*")])
        repos, headers = _page(request, self.storage.repositories(), "/v2/_catalog")
        return web.json_response({"repositories": repos}, headers=headers)

    async def tags(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        await self._authorize(request, [Access("repository", name, "pull")])
        if not self.storage.has_repository(name):
            raise ApiError(404, "NAME_UNKNOWN", "repository name not known to registry")
        tags, headers = _page(request, self.storage.tags(name), f"/v2/{name}/tags/list")
        return web.json_response({"name": name, "tags": tags}, headers=headers)

    # --- blobs ------------------------------------------------------------
    async def get_blob(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        await self._authorize(request, [Access("repository", name, "pull")])
        d = _digest(m["digest"])
        st = self.storage
        size = st.blob_size(d) if st.has_blob(name, d) else None
        if size is None:
            raise ApiError(404, "BLOB_UNKNOWN", "blob unknown to registry", {"digest": str(d)})
        headers = {
            "Docker-Content-Digest": str(d),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{d}"',
            "Cache-Control": "max-age=31536000",
        }
        if request.method == "HEAD":
            resp = web.StreamResponse(status=200, headers=headers)
            resp.content_length = size
            await resp.prepare(request)
            return resp
        path = st.blob_path(d)
        if path is not None:
            # sendfile, with Range and conditional requests handled by aiohttp
            return web.FileResponse(path, headers=headers)
        start, end = 0, size
        status = 200
        rng = request.headers.get("Range")
        if rng:
            r = _range(rng, size)
            if r is not None:
                start, end = r
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = end - start
        await resp.prepare(request)
        for chunk in st.read_blob(d, start, end):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def delete_blob(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        await self._authorize(request, [Access("repository", name, "delete")])
        d = _digest(m["digest"])
        if not self.storage.unlink_blob(name, d):
            raise ApiError(404, "BLOB_UNKNOWN", "blob unknown to registry", {"digest": str(d)})
        return web.Response(status=202, headers={"Docker-Content-Digest": str(d)})

    # --- uploads ----------------------------------------------------------
    def _upload_headers(self, name: str, up: Upload) -> dict[str, str]:
        return {
            "Location": f"/v2/{name}/blobs/uploads/{up.id}",
            "Range": f"0-{max(up.offset - 1, 0)}",
            "Docker-Upload-UUID": up.id,
        }

    def _blob_created(self, name: str, d: Digest) -> web.Response:
        return web.Response(
            status=201,
            headers={
                "Location": f"/v2/{name}/blobs/{d}",
                "Docker-Content-Digest": str(d),
            },
        )

    async def _receive(self, request: web.Request, up: Upload) -> int:
        """Stream the request body into *up*; returns the number of bytes.

        The upload's file is open only during this call.
        """
        n = 0
        try:
            async for chunk in request.content.iter_any():
                up.write(chunk)
                n += len(chunk)
        finally:
            up.release()
        return n

    async def _finish(self, name: str, up: Upload, digest: Digest) -> web.Response:
        """Check *up* against *digest* and store it (the caller marks it busy)."""
        if digest.algorithm == "sha256":
            ok = up.matches(digest)  # hashed while written
        else:  # hash the whole blob again, off the event loop
            ok = await asyncio.to_thread(up.matches, digest)
        if not ok:
            self.storage.cancel_upload(up)
            raise ApiError(
                400,
                "DIGEST_INVALID",
                "provided digest did not match uploaded content",
                {"digest": str(digest)},
            )
        self.storage.commit_upload(up, digest)
        return self._blob_created(name, digest)

    def _new_upload(self, name: str) -> Upload:
        """A new upload, unless :attr:`max_uploads` are in progress (then 429)."""
        st = self.storage
        if len(st.uploads) >= self.max_uploads:
            self.expire_uploads()
        if len(st.uploads) >= self.max_uploads:
            idle = [u.touched for u in st.uploads.values() if u.id not in self._busy]
            wait = self.upload_timeout - (time.monotonic() - min(idle)) if idle else 60
            raise ApiError(
                429,
                "TOOMANYREQUESTS",
                f"too many uploads in progress (the limit is {self.max_uploads}): finish or "
                f"cancel some, or retry later (idle uploads expire after "
                f"{self.upload_timeout:g} s)",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return st.new_upload(name)

    async def start_upload(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        q = request.query
        src = q.get("from", "") if q.get("mount") else ""
        # A mount reads the source: ask for that too, as distribution does, so that
        # clients following the challenge get a token that lets the mount happen.
        wanted = []
        if src and len(src) <= MAX_NAME and NAME_RE.match(src):
            wanted.append(Access("repository", src, "pull"))
        await self._authorize(request, [Access("repository", name, "push")], wanted)
        st = self.storage
        if q.get("mount"):
            d = _digest(q["mount"])
            src = q.get("from", "")
            if (
                src
                and NAME_RE.match(src)
                and st.has_blob(src, d)
                and self._allows(request, [Access("repository", src, "pull")])
            ):
                st.link_blob(name, d)
                return self._blob_created(name, d)
            # Mount refused: fall through to an ordinary upload session.
        elif q.get("digest"):
            d = _digest(q["digest"])
            up = self._new_upload(name)
            self._busy.add(up.id)
            try:
                await self._receive(request, up)
                return await self._finish(name, up, d)
            except BaseException:
                st.cancel_upload(up)
                raise
            finally:
                self._busy.discard(up.id)
        up = self._new_upload(name)
        return web.Response(status=202, headers=self._upload_headers(name, up))

    def _get_upload(self, name: str, uid: str) -> Upload:
        up = self.storage.uploads.get(uid)
        if up is None or up.repository != name:
            raise ApiError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        if uid in self._busy:
            raise ApiError(409, "BLOB_UPLOAD_INVALID", "another request is writing to this upload")
        up.touch()
        return up

    def _check_content_range(self, request: web.Request, name: str, up: Upload) -> int | None:
        """Validate ``Content-Range`` against the upload's offset; the chunk length or None."""
        cr = request.headers.get("Content-Range")
        if not cr:
            return None
        mm = re.fullmatch(r"\s*(?:bytes\s+)?(\d+)-(\d+)(?:/(?:\d+|\*))?\s*", cr)
        if not mm:
            raise ApiError(400, "BLOB_UPLOAD_INVALID", f"invalid Content-Range {cr!r}")
        start, end = int(mm.group(1)), int(mm.group(2))
        if start != up.offset or end < start:
            raise ApiError(
                416,
                "BLOB_UPLOAD_INVALID",
                f"chunk {start}-{end} does not continue the upload at offset {up.offset}",
                headers=self._upload_headers(name, up),
            )
        length = end - start + 1
        cl = request.content_length
        if cl is not None and cl != length:
            raise ApiError(
                400,
                "BLOB_UPLOAD_INVALID",
                f"Content-Range {cr!r} does not match Content-Length {cl}",
            )
        return length

    async def upload_status(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        await self._authorize(request, [Access("repository", name, "push")])
        up = self._get_upload(name, m["id"])
        return web.Response(status=204, headers=self._upload_headers(name, up))

    async def patch_upload(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        await self._authorize(request, [Access("repository", name, "push")])
        up = self._get_upload(name, m["id"])
        expect = self._check_content_range(request, name, up)
        self._busy.add(up.id)
        try:
            got = await self._receive(request, up)
        finally:
            self._busy.discard(up.id)
        if expect is not None and got != expect:
            self.storage.cancel_upload(up)
            raise ApiError(
                400, "BLOB_UPLOAD_INVALID", f"chunk has {got} bytes, Content-Range said {expect}"
            )
        return web.Response(status=202, headers=self._upload_headers(name, up))

    async def finish_upload(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        await self._authorize(request, [Access("repository", name, "push")])
        up = self._get_upload(name, m["id"])
        if not request.query.get("digest"):
            raise ApiError(400, "DIGEST_INVALID", "the digest query parameter is required")
        d = _digest(request.query["digest"])
        self._check_content_range(request, name, up)
        self._busy.add(up.id)
        try:
            await self._receive(request, up)
            return await self._finish(name, up, d)
        except BaseException:
            self.storage.cancel_upload(up)
            raise
        finally:
            self._busy.discard(up.id)

    async def cancel_upload(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        await self._authorize(request, [Access("repository", name, "push")])
        up = self._get_upload(name, m["id"])
        self.storage.cancel_upload(up)
        return web.Response(status=204)

    # --- manifests --------------------------------------------------------
    def _lookup(self, name: str, ref: str) -> tuple[Digest, str]:
        st = self.storage
        if ":" in ref:
            d = _digest(ref)
        else:
            if not TAG_RE.match(ref):
                # No manifest can have an invalid tag: unknown (as the spec's conformance
                # suite expects), not a malformed request.
                raise ApiError(
                    404, "MANIFEST_UNKNOWN", "manifest unknown (invalid tag)", {"tag": ref}
                )
            found = st.get_tag(name, ref)
            if found is None:
                if not st.has_repository(name):
                    raise ApiError(404, "NAME_UNKNOWN", "repository name not known to registry")
                raise ApiError(404, "MANIFEST_UNKNOWN", "manifest unknown", {"tag": ref})
            d = found
        media = st.manifest_type(name, d)
        if media is None:
            raise ApiError(404, "MANIFEST_UNKNOWN", "manifest unknown", {"digest": str(d)})
        return d, media

    async def get_manifest(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        await self._authorize(request, [Access("repository", name, "pull")])
        d, media = self._lookup(name, m["ref"])
        data = self.storage.blob_bytes(d)
        headers = {"Docker-Content-Digest": str(d), "ETag": f'"{d}"'}
        if request.method == "HEAD":
            resp = web.StreamResponse(status=200, headers={**headers, "Content-Type": media})
            resp.content_length = len(data)
            await resp.prepare(request)
            return resp
        return web.Response(body=data, headers={**headers, "Content-Type": media})

    async def _read_manifest(self, request: web.Request) -> bytes:
        cl = request.content_length
        if cl is not None and cl > MAX_MANIFEST:
            raise ApiError(413, "SIZE_INVALID", f"manifest larger than {MAX_MANIFEST} bytes")
        parts = []
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
            if total > MAX_MANIFEST:
                raise ApiError(413, "SIZE_INVALID", f"manifest larger than {MAX_MANIFEST} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def put_manifest(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        await self._authorize(request, [Access("repository", name, "push")])
        ref = m["ref"]
        by_digest = ":" in ref
        if not by_digest and not TAG_RE.match(ref):
            raise ApiError(400, "MANIFEST_INVALID", "invalid tag", {"tag": ref})
        data = await self._read_manifest(request)
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        man = await asyncio.to_thread(_parse_manifest, data, ctype)
        # From here to the tag update nothing awaits: the precondition check and
        # the update are atomic with respect to other requests.
        if mt.is_manifest(ctype) and ctype != man.media_type:
            raise ApiError(
                400,
                "MANIFEST_INVALID",
                f"Content-Type {ctype} does not match the manifest's mediaType {man.media_type}",
            )
        if by_digest:
            want = _digest(ref)
            d = Digest.of(data, want.algorithm)
            if d != want:
                raise ApiError(
                    400,
                    "DIGEST_INVALID",
                    "manifest digest did not match the reference",
                    {"digest": ref, "computed": str(d)},
                )
        else:
            d = Digest.of(data)
        st = self.storage
        if by_digest:
            current = d if st.manifest_type(name, d) is not None else None
        else:
            current = st.get_tag(name, ref)
        self._check_preconditions(request, ref, current)
        self._check_references(name, man)
        st.put_small_blob(d, data)
        st.link_manifest(name, d, man.media_type)
        st.link_blob(name, d)
        if not by_digest:
            st.set_tag(name, ref, d)
        headers = {
            "Location": f"/v2/{name}/manifests/{d}",
            "Docker-Content-Digest": str(d),
        }
        subject = man.subject
        if subject is not None:
            st.add_referrer(name, subject.digest, _referrer_descriptor(man, d))
            headers["OCI-Subject"] = str(subject.digest)
        return web.Response(status=201, headers=headers)

    def _check_preconditions(self, request: web.Request, ref: str, current: Digest | None) -> None:
        """``If-Match``/``If-None-Match`` of a manifest PUT against *current* (RFC 9110 13.2.2).

        The entity tag of a manifest is its quoted digest (the ``ETag`` of GET/HEAD).
        """
        what = f"tag {ref}" if ":" not in ref else f"manifest {ref}"
        cur = str(current) if current is not None else None
        headers = {"ETag": f'"{cur}"'} if cur else {}
        detail = {"reference": ref, "current": cur}
        if_match = request.headers.get("If-Match")
        if if_match is not None:
            tags = _entity_tags(if_match)
            if cur is None or (tags is not None and cur not in tags):
                if cur is None:
                    msg = f"precondition failed: {what} does not exist (If-Match)"
                else:
                    msg = (
                        f"precondition failed: {what} moved: it is now {cur}, "
                        f"not what If-Match names"
                    )
                raise ApiError(412, "PRECONDITION_FAILED", msg, detail, headers)
        if_none = request.headers.get("If-None-Match")
        if if_none is not None and cur is not None:
            tags = _entity_tags(if_none)
            if tags is None or cur in tags or f"W/{cur}" in tags:
                raise ApiError(
                    412,
                    "PRECONDITION_FAILED",
                    f"precondition failed: {what} already exists ({cur}) (If-None-Match)",
                    detail,
                    headers,
                )

    def _check_references(self, name: str, man: Manifest) -> None:
        st = self.storage
        missing: list[str] = []
        if man.is_index:
            for child in man.manifests:
                if st.manifest_type(name, child.digest) is None:
                    missing.append(str(child.digest))
        else:
            for b in man.blobs():
                if b.urls and b.media_type == mt.DOCKER_FOREIGN_LAYER:
                    continue  # foreign layers live elsewhere
                if not st.has_blob(name, b.digest):
                    missing.append(str(b.digest))
        if missing:
            raise ApiError(
                400,
                "MANIFEST_BLOB_UNKNOWN",
                f"manifest references {len(missing)} unknown blob(s), e.g. {missing[0]}",
                {"digest": missing[0], "missing": missing},
            )

    async def delete_manifest(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        await self._authorize(request, [Access("repository", name, "delete")])
        ref = m["ref"]
        st = self.storage
        if ":" not in ref:
            if not TAG_RE.match(ref) or not st.delete_tag(name, ref):
                raise ApiError(404, "MANIFEST_UNKNOWN", "manifest unknown", {"tag": ref})
            return web.Response(status=202)
        d, media = self._lookup(name, ref)
        try:
            subject = Manifest.parse(st.blob_bytes(d), media).subject
        except LuffError:
            subject = None
        # Crash-safe order: tags, then the manifest (unlink_manifest does both), then
        # its referrer entry; whatever a crash leaves, DiskStorage.repair removes.
        st.unlink_manifest(name, d)
        if subject is not None:
            st.remove_referrer(name, subject.digest, d)
        st.unlink_blob(name, d)
        return web.Response(status=202)

    # --- referrers --------------------------------------------------------
    async def referrers(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = _name(m["name"])
        await self._authorize(request, [Access("repository", name, "pull")])
        d = _digest(m["digest"])
        entries = self.storage.referrers(name, d)
        headers = {}
        want = request.query.get("artifactType")
        if want:
            entries = [e for e in entries if e.get("artifactType") == want]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
        return web.Response(
            body=json.dumps(body).encode(),
            headers={**headers, "Content-Type": mt.OCI_INDEX},
        )


def _referrer_descriptor(man: Manifest, d: Digest) -> dict[str, Any]:
    obj = man.json
    desc: dict[str, Any] = {"mediaType": man.media_type, "digest": str(d), "size": man.size}
    at = obj.get("artifactType")
    if not at and not man.is_index:
        at = man.config.media_type
    if at:
        desc["artifactType"] = at
    if obj.get("annotations"):
        desc["annotations"] = obj["annotations"]
    return desc


def access_logger(stream: Any) -> logging.Logger:
    """A logger that writes access lines to *stream* (not attached to the logging tree)."""
    logger = logging.Logger("luff.server.access")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger
