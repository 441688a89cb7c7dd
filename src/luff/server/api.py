"""What every handler of the distribution API shares: errors, names, digests, paging.

An :class:`ApiError` is answered with the distribution error JSON; the
checks here raise it for a malformed repository name or digest or a bad
``n`` (page size).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

from aiohttp import web

from luff.errors import LuffError
from luff.model.digest import Digest

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MAX_NAME = 255

try:  # aiohttp >= 3.12 wants typed keys for request storage
    from aiohttp.web import RequestKey

    USER_KEY: Any = RequestKey("luff_user", str)
except ImportError:  # pragma: no cover
    USER_KEY = "luff_user"


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


def parse_digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except LuffError as e:
        raise ApiError(400, "DIGEST_INVALID", str(e), {"digest": text}) from None


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise ApiError(400, "NAME_INVALID", "invalid repository name", {"name": name})
    return name


def paginate(request: web.Request, items: list[str], path: str) -> tuple[list[str], dict[str, str]]:
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


async def head_response(
    request: web.Request, headers: dict[str, str], length: int
) -> web.StreamResponse:
    """The answer to a HEAD: status 200, *headers* and a Content-Length of *length*."""
    resp = web.StreamResponse(status=200, headers=headers)
    resp.content_length = length
    await resp.prepare(request)
    return resp
