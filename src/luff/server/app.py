"""The OCI distribution API, served by aiohttp: routing, and the access log.

Everything runs on one event loop; storage calls are short synchronous file
or dictionary operations, and bodies are streamed chunk by chunk, so many
clients upload and download at once without holding blobs in memory. Work
that may take long (hashing a whole blob again to check a sha512 digest,
parsing a manifest, bcrypt) runs in worker threads meanwhile.

The handlers live by concern: :mod:`luff.server.gate` (credentials, the
token endpoint), :mod:`luff.server.blobs` (blobs and uploads),
:mod:`luff.server.manifests` (manifests, tags, referrers); what they share
is in :mod:`luff.server.api`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from luff.limits import DEFAULT_MAX_UPLOADS, DEFAULT_UPLOAD_TIMEOUT
from luff.model.manifest import MAX_MANIFEST
from luff.server.api import API_VERSION, USER_KEY, ApiError, paginate
from luff.server.auth import Access, Authenticator
from luff.server.blobs import Blobs
from luff.server.gate import Gate
from luff.server.manifests import Manifests
from luff.server.storage import Storage

Handler = Callable[[web.Request, "re.Match[str]"], Awaitable[web.StreamResponse]]


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

    def __post_init__(self) -> None:
        self.gate = Gate(self.auth)
        self.blobs = Blobs(self.storage, self.gate, self.upload_timeout, self.max_uploads)
        self.manifests = Manifests(self.storage, self.gate)

    def application(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=MAX_MANIFEST + 1)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        app.cleanup_ctx.append(self.blobs.sweeper)
        return app

    def expire_uploads(self) -> int:
        """Drop the uploads idle for longer than :attr:`upload_timeout`."""
        return self.blobs.expire_uploads()

    # --- routing ----------------------------------------------------------
    def _routes(self) -> list[tuple[re.Pattern[str], dict[str, Handler]]]:
        return [
            (re.compile(r"^/v2/?$"), {"GET": self.ping, "HEAD": self.ping}),
            (re.compile(r"^/v2/_catalog$"), {"GET": self.catalog}),
            (re.compile(r"^/v2/(?P<name>.+)/tags/list$"), {"GET": self.manifests.tags}),
            (
                re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$"),
                {
                    "GET": self.manifests.get_manifest,
                    "HEAD": self.manifests.get_manifest,
                    "PUT": self.manifests.put_manifest,
                    "DELETE": self.manifests.delete_manifest,
                },
            ),
            (re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?$"), {"POST": self.blobs.start_upload}),
            (
                re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[^/]+)$"),
                {
                    "GET": self.blobs.upload_status,
                    "PATCH": self.blobs.patch_upload,
                    "PUT": self.blobs.finish_upload,
                    "DELETE": self.blobs.cancel_upload,
                },
            ),
            (
                re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$"),
                {
                    "GET": self.blobs.get_blob,
                    "HEAD": self.blobs.get_blob,
                    "DELETE": self.blobs.delete_blob,
                },
            ),
            (
                re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$"),
                {"GET": self.manifests.referrers},
            ),
            (re.compile(r"^/token$"), {"GET": self.gate.token, "POST": self.gate.token}),
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

    # --- simple endpoints -------------------------------------------------
    async def ping(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        await self.gate.authorize(request, [])
        return web.json_response({})

    async def catalog(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        await self.gate.authorize(request, [Access("registry", "catalog", "*")])
        repos, headers = paginate(request, self.storage.repositories(), "/v2/_catalog")
        return web.json_response({"repositories": repos}, headers=headers)


def access_logger(stream: Any) -> logging.Logger:
    """A logger that writes access lines to *stream* (not attached to the logging tree)."""
    logger = logging.Logger("luff.server.access")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger
