"""Blobs over HTTP: downloads (with ranges), deletes, and uploads.

Uploads are monolithic (POST with a digest), chunked (PATCH, then PUT) or
mounts from another repository. What a client controls is bounded: uploads
in progress by ``max_uploads`` (then ``429 TOOMANYREQUESTS``) and by an
idle timeout; bodies are streamed into storage chunk by chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from luff.limits import DEFAULT_MAX_UPLOADS, DEFAULT_UPLOAD_TIMEOUT
from luff.model.digest import Digest
from luff.server.api import MAX_NAME, NAME_RE, ApiError, check_name, head_response, parse_digest
from luff.server.auth import Access
from luff.server.gate import Gate
from luff.server.storage import Storage, Upload


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


@dataclass
class Blobs:
    """The blob and upload handlers over a :class:`Storage`."""

    storage: Storage
    gate: Gate
    upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT
    max_uploads: int = DEFAULT_MAX_UPLOADS
    _busy: set[str] = field(default_factory=set)

    async def sweeper(self, app: web.Application) -> AsyncIterator[None]:
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

    async def get_blob(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = check_name(m["name"])
        await self.gate.authorize(request, [Access("repository", name, "pull")])
        d = parse_digest(m["digest"])
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
            return await head_response(request, headers, size)
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
        name = check_name(m["name"])
        await self.gate.authorize(request, [Access("repository", name, "delete")])
        d = parse_digest(m["digest"])
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

    async def _complete(
        self, request: web.Request, name: str, up: Upload, digest: Digest
    ) -> web.Response:
        """Receive the request body as the last bytes of *up*, then :meth:`_finish` it.

        The upload is busy meanwhile, and dropped when anything fails.
        """
        self._busy.add(up.id)
        try:
            await self._receive(request, up)
            return await self._finish(name, up, digest)
        except BaseException:
            self.storage.cancel_upload(up)
            raise
        finally:
            self._busy.discard(up.id)

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
        name = check_name(m["name"])
        q = request.query
        src = q.get("from", "") if q.get("mount") else ""
        # A mount reads the source: ask for that too, as distribution does, so that
        # clients following the challenge get a token that lets the mount happen.
        wanted = []
        if src and len(src) <= MAX_NAME and NAME_RE.match(src):
            wanted.append(Access("repository", src, "pull"))
        await self.gate.authorize(request, [Access("repository", name, "push")], wanted)
        st = self.storage
        if q.get("mount"):
            d = parse_digest(q["mount"])
            src = q.get("from", "")
            if (
                src
                and NAME_RE.match(src)
                and st.has_blob(src, d)
                and self.gate.allows(request, [Access("repository", src, "pull")])
            ):
                st.link_blob(name, d)
                return self._blob_created(name, d)
            # Mount refused: fall through to an ordinary upload session.
        elif q.get("digest"):
            d = parse_digest(q["digest"])
            return await self._complete(request, name, self._new_upload(name), d)
        up = self._new_upload(name)
        return web.Response(status=202, headers=self._upload_headers(name, up))

    async def _upload(self, request: web.Request, m: re.Match[str]) -> tuple[str, Upload]:
        """The repository and the upload in progress a request names, once it may push there."""
        name = check_name(m["name"])
        await self.gate.authorize(request, [Access("repository", name, "push")])
        uid = m["id"]
        up = self.storage.uploads.get(uid)
        if up is None or up.repository != name:
            raise ApiError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        if uid in self._busy:
            raise ApiError(409, "BLOB_UPLOAD_INVALID", "another request is writing to this upload")
        up.touch()
        return name, up

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
        name, up = await self._upload(request, m)
        return web.Response(status=204, headers=self._upload_headers(name, up))

    async def patch_upload(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name, up = await self._upload(request, m)
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
        name, up = await self._upload(request, m)
        if not request.query.get("digest"):
            raise ApiError(400, "DIGEST_INVALID", "the digest query parameter is required")
        d = parse_digest(request.query["digest"])
        self._check_content_range(request, name, up)
        return await self._complete(request, name, up, d)

    async def cancel_upload(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        _, up = await self._upload(request, m)
        self.storage.cancel_upload(up)
        return web.Response(status=204)
