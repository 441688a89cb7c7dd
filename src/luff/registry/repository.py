"""The distribution API of one repository: every ``/v2/<name>/...`` path is here.

:class:`Repository` speaks HTTP and returns bytes, headers and streams; it
does not parse manifests or check digests of what it reads (the store
above does, see :class:`luff.stores.registry.RegistryStore`), except the
``Docker-Content-Digest`` a registry answers a write with.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, BinaryIO

from luff import cancel
from luff.errors import NotFound, RegistryError, TransportError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, is_digest
from luff.model.manifest import MAX_MANIFEST
from luff.record import Record, setfields
from luff.registry.body import Body, discard, read_all
from luff.registry.client import RegistryClient
from luff.registry.retry import RetryLater

if TYPE_CHECKING:
    from luff.registry.connections import Headers, Response

CHUNK_SIZE = 16 * 1024 * 1024


class ReferrersUnsupported(NotFound):
    """The registry has no referrers API (it answered 404): use the ``sha256-<hex>`` tag."""


class Stored(Record, frozen=True):
    """What a registry answers a manifest PUT with."""

    digest: str  # Docker-Content-Digest ("" when none)
    subject: str  # OCI-Subject: the registry indexed the referrer ("" when none)

    def __init__(
        self,
        digest: str,
        subject: str,
    ) -> None:
        setfields(
            self,
            digest=digest,
            subject=subject,
        )


class ManifestInfo(Record, frozen=True):
    """What a registry says about a manifest: HEAD's headers (and GET's body)."""

    media_type: str  # the Content-Type, without parameters ("" when none)
    digest: str  # Docker-Content-Digest ("" when none)
    size: int | None  # Content-Length (None when none)
    etag: str  # ETag as sent, quotes included ("" when none), for If-Match
    data: bytes  # the body, for GET

    def __init__(
        self,
        media_type: str,
        digest: str,
        size: int | None,
        etag: str,
        data: bytes = b"",
    ) -> None:
        setfields(
            self,
            media_type=media_type,
            digest=digest,
            size=size,
            etag=etag,
            data=data,
        )


def _info(headers: Headers, data: bytes = b"", size: int | None = None) -> ManifestInfo:
    length = headers.get("Content-Length", "")
    return ManifestInfo(
        media_type=headers.get("Content-Type", "").split(";")[0].strip(),
        digest=headers.get("Docker-Content-Digest", "").strip(),
        size=size if size is not None else (int(length) if length.isdigit() else None),
        etag=headers.get("ETag", "").strip(),
        data=data,
    )


def add_query(location: str, **params: str) -> str:
    """*location* with *params* added to its query."""
    import urllib.parse

    parts = urllib.parse.urlsplit(location)
    q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    q += list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q)))


class Repository:
    """Repository *name* of the registry behind *client*.

    *display* names it in errors (default ``HOST/NAME``; Docker Hub's API host
    differs from the registry name users write).
    """

    def __init__(self, client: RegistryClient, name: str, display: str = "") -> None:
        self.client = client
        self.name = name
        self.display = display or f"{client.host}/{name}"
        self.pull = (f"repository:{name}:pull",)
        self.push = (f"repository:{name}:pull,push",)

    def where(self, ident: str = "") -> str:
        """``HOST/NAME``, with ``:TAG`` or ``@DIGEST`` when *ident* is given."""
        if not ident:
            return self.display
        return f"{self.display}{'@' if is_digest(ident) else ':'}{ident}"

    def _path(self, kind: str, ident: str) -> str:
        return f"/v2/{self.name}/{kind}/{ident}"

    # --- manifests ------------------------------------------------------------
    def head_manifest(self, ident: str) -> ManifestInfo:
        """The headers of manifest *ident* (tag or digest); NotFound when there is none."""
        reply = self.client.call(
            "HEAD",
            self._path("manifests", ident),
            scopes=self.pull,
            headers={"Accept": mt.ACCEPT},
            what=self.where(ident),
            not_found="manifest unknown",
        )
        return _info(reply.headers)

    def get_manifest(self, ident: str) -> ManifestInfo:
        """Manifest *ident*: its bytes (at most MAX_MANIFEST) and headers, unverified."""
        reply = self.client.call(
            "GET",
            self._path("manifests", ident),
            scopes=self.pull,
            headers={"Accept": mt.ACCEPT},
            what=self.where(ident),
            cap=MAX_MANIFEST,
            body_name="manifest",
            not_found="manifest unknown",
        )
        return _info(reply.headers, reply.data, len(reply.data))

    def manifest_exists(self, digest: Digest | str) -> bool:
        """True when the registry has manifest *digest* in this repository."""
        try:
            self.head_manifest(str(digest))
        except NotFound:
            return False
        return True

    def put_manifest(
        self,
        ident: str,
        data: bytes,
        media_type: str,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> Stored:
        """Store manifest *data* as *ident*; returns the digest and subject the registry names.

        With *if_match* (an ETag) or *if_none_match* (``"*"``: the tag must not
        exist) the write is conditional: a registry that finds the condition
        false answers 412, raised as :class:`~luff.errors.PreconditionFailed`.
        """
        headers = {"Content-Type": media_type}
        if if_match is not None:
            headers["If-Match"] = if_match
        if if_none_match is not None:
            headers["If-None-Match"] = if_none_match
        reply = self.client.call(
            "PUT",
            self._path("manifests", ident),
            scopes=self.push,
            headers=headers,
            body=data,
            ok=(200, 201),
            what=self.where(ident),
            body_name="answer to a manifest PUT",
        )
        got = reply.headers.get("Docker-Content-Digest", "")
        self._stored_as(got, Digest.of(data), "the manifest")
        return Stored(got, reply.headers.get("OCI-Subject", "").strip())

    def delete_tag(self, tag: str) -> None:
        """Remove *tag* only (OCI 1.1); a registry that cannot says so, and nothing is deleted."""
        what = self.where(tag)
        resp = self.client.request(
            "DELETE",
            self._path("manifests", tag),
            scopes=(f"repository:{self.name}:delete",),
        )
        if resp.status == 404:
            discard(resp)
            raise NotFound("manifest unknown", where=what)
        if resp.status in (400, 405, 501):
            code = _error_code(resp)
            raise RegistryError(
                f"the registry does not delete a tag alone (it answered {resp.status}"
                f"{' ' + code if code else ''}); nothing was deleted",
                resp.status,
                code,
                where=what,
            )
        self.client.check(resp, (200, 202), what)
        discard(resp)

    def delete_manifest(self, digest: Digest | str) -> None:
        """Delete manifest *digest* (a registry that allows no deletes: RegistryError 405)."""
        what = self.where(str(digest))
        resp = self.client.request(
            "DELETE",
            self._path("manifests", str(digest)),
            scopes=(f"repository:{self.name}:delete",),
        )
        if resp.status == 404:
            discard(resp)
            raise NotFound("manifest unknown", where=what)
        if resp.status == 405:
            discard(resp)
            raise RegistryError("the registry does not allow deletes", 405, where=self.display)
        self.client.check(resp, (200, 202), what)
        discard(resp)

    # --- blobs ------------------------------------------------------------------
    def head_blob(self, digest: Digest | str) -> int | None:
        """The size of blob *digest* (None when the registry does not say); NotFound."""
        reply = self.client.call(
            "HEAD",
            self._path("blobs", str(digest)),
            scopes=self.pull,
            what=self.where(str(digest)),
            not_found="blob unknown",
        )
        length = reply.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None

    def blob_exists(self, digest: Digest | str) -> bool:
        """True when the repository has blob *digest*."""
        try:
            self.head_blob(digest)
        except NotFound:
            return False
        return True

    def get_blob(self, digest: Digest | str) -> BlobStream:
        """A stream of blob *digest* (unverified) that resumes after a cut connection."""
        path = self._path("blobs", str(digest))
        what = self.where(str(digest))
        resp = self.client.request("GET", path, scopes=self.pull)
        if resp.status == 404:
            discard(resp)
            raise NotFound("blob unknown", where=what)
        self.client.check(resp, (200,), what)
        return BlobStream(self, path, resp, what)

    def get_manifest_stream(self, digest: Digest | str) -> BinaryIO:
        """Manifest *digest* as a stream (read whole, with retries, first)."""
        import io

        return io.BytesIO(self.get_manifest(str(digest)).data)

    # --- uploads ----------------------------------------------------------------
    def start_upload(self) -> str:
        """Open an upload session; returns its Location."""
        reply = self.client.call(
            "POST",
            f"/v2/{self.name}/blobs/uploads/",
            scopes=self.push,
            ok=(202,),
            what=self.display,
            body_name="answer to an upload POST",
        )
        loc = reply.headers.get("Location")
        if not loc:
            raise RegistryError("registry gave no upload Location", where=self.display)
        return loc

    def mount(self, digest: Digest | str, from_repository: str) -> tuple[bool, str]:
        """Mount blob *digest* from *from_repository*: ``(True, "")`` when mounted, else
        ``(False, LOCATION)`` of the ordinary upload the registry opened instead."""
        import urllib.parse

        q = urllib.parse.urlencode({"mount": str(digest), "from": from_repository})
        reply = self.client.call(
            "POST",
            f"/v2/{self.name}/blobs/uploads/?{q}",
            scopes=(*self.push, f"repository:{from_repository}:pull"),
            ok=(201, 202),
            what=self.where(str(digest)),
            body_name="answer to a mount",
        )
        if reply.status == 201:
            self._stored_as(
                reply.headers.get("Docker-Content-Digest", ""),
                Digest.parse(str(digest)),
                "the mounted blob",
            )
            return True, ""
        return False, reply.headers.get("Location", "")

    def upload(
        self, digest: Digest, size: int, stream: BinaryIO | bytes, location: str = ""
    ) -> None:
        """Upload blob *digest* in one PUT (after a POST, unless *location* is an open
        session). A stream is sent once: after a failure the caller opens it again."""
        loc = location or self.start_upload()
        url = add_query(self.client.url(loc), digest=str(digest))
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        resp = self.client.request("PUT", url, scopes=self.push, headers=headers, body=stream)
        self.client.check(resp, (201,), self.where(str(digest)), retried=isinstance(stream, bytes))
        discard(resp)
        self._stored_as(resp.headers.get("Docker-Content-Digest", ""), digest, "the blob")

    def upload_chunked(self, stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> tuple[Digest, int]:
        """Upload a stream of unknown size in PATCH chunks; returns ``(digest, size)``.

        The stream is read once, and what was read is kept in a temporary
        file. A chunk that fails is sent again from where the registry says
        the upload is (``GET`` of the session); when the session cannot go on
        (the registry lost it, or its Location carries a state that a lost
        answer left stale), a new one is started and fed from the file.
        """
        policy = self.client.policy
        import hashlib

        h = hashlib.sha256()
        import tempfile

        with tempfile.TemporaryFile(prefix="luff-upload-") as spool:
            size = sent = restarts = 0
            loc = self.start_upload()
            done = False
            while True:
                chunk = b"" if done else stream.read(chunk_size)
                done = not chunk
                if chunk:
                    h.update(chunk)
                    spool.seek(0, os.SEEK_END)
                    spool.write(chunk)
                    size += len(chunk)
                try:
                    while sent < size:
                        spool.seek(sent)
                        piece = spool.read(min(chunk_size, size - sent))
                        loc = self._send_chunk(loc, piece, sent)
                        sent += len(piece)
                    if done:
                        digest = Digest("sha256", h.hexdigest())
                        self._finish(loc, digest)
                        return digest, size
                except (NotFound, TransportError, RegistryError) as e:
                    cancel.check()
                    if restarts + 1 >= policy.max_attempts or not _restartable(e):
                        raise
                    restarts += 1
                    self.client.settings.say(f"{self.display}: {e}; starting the upload again")
                    loc, sent = self.start_upload(), 0

    def _send_chunk(self, loc: str, chunk: bytes, offset: int) -> str:
        end = offset + len(chunk)
        pos = offset
        attempt = 0
        policy = self.client.policy
        what = self.display
        while True:
            attempt += 1
            part = chunk[pos - offset :]
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{pos}-{end - 1}",
                "Content-Length": str(len(part)),
            }
            try:
                resp = self.client.request(
                    "PATCH",
                    self.client.url(loc),
                    scopes=self.push,
                    headers=headers,
                    body=part,
                    retry=False,
                )
                self.client.check(resp, (202, 204), what, retried=False)
                discard(resp)
                return resp.headers.get("Location") or loc
            except (TransportError, RegistryError) as e:
                cancel.check()
                if attempt >= policy.max_attempts or not policy.should_retry(e):
                    raise
                policy.sleep(attempt, policy.retry_after_of(e), self.client.settings.say, what)
            # Where is the upload now? The chunk may have arrived, in part or whole.
            loc, pos = self._upload_offset(loc)
            if pos == end:
                return loc
            if not offset <= pos < end:
                raise RegistryError(
                    f"the upload is at byte {pos}; luff sent up to byte {end}", where=what
                )

    def _upload_offset(self, loc: str) -> tuple[str, int]:
        reply = self.client.call(
            "GET",
            self.client.url(loc),
            scopes=self.push,
            ok=(204, 200),
            what=self.display,
            body_name="upload status",
        )
        m = re.fullmatch(r"(?:bytes=)?0-(\d+)", reply.headers.get("Range", "").strip())
        last = int(m.group(1)) if m else -1
        # "0-0" is what registries say for an empty upload too.
        return reply.headers.get("Location") or loc, last + 1 if last > 0 else 0

    def _finish(self, loc: str, digest: Digest) -> None:
        try:
            reply = self.client.call(
                "PUT",
                add_query(self.client.url(loc), digest=str(digest)),
                scopes=self.push,
                headers={"Content-Length": "0", "Content-Type": "application/octet-stream"},
                body=b"",
                ok=(201,),
                what=self.where(str(digest)),
                body_name="answer to an upload PUT",
            )
        except NotFound:
            # A retried PUT whose first try closed the session: is the blob there?
            if self.blob_exists(digest):
                return
            raise
        self._stored_as(reply.headers.get("Docker-Content-Digest", ""), digest, "the blob")

    def _stored_as(self, got: str, expected: Digest, what: str) -> None:
        """Refuse a ``Docker-Content-Digest`` (of the same algorithm) other than *expected*."""
        got = got.strip()
        if is_digest(got):
            d = Digest.parse(got)
            if d.algorithm == expected.algorithm and d != expected:
                raise RegistryError(
                    f"registry stored {what} as {got}, expected {expected}", where=self.display
                )

    # --- listings ---------------------------------------------------------------
    def tags(self, page_size: int = 1000) -> list[str]:
        """Every tag, following ``Link`` pagination (sorted, without duplicates)."""
        tags = self.client.paginate(
            f"/v2/{self.name}/tags/list?n={page_size}", "tags", self.pull, self.display
        )
        return sorted(set(tags))

    def referrers(self, digest: Digest | str, artifact_type: str | None = None) -> list[Descriptor]:
        """The referrers of *digest* (OCI 1.1 API), every page, filtered by
        *artifact_type* (by the registry, or here when it does not filter).

        Raises :class:`ReferrersUnsupported` when the registry answers 404: the
        caller may fall back to the ``sha256-<hex>`` tag.
        """
        path = f"/v2/{self.name}/referrers/{digest}"
        if artifact_type:
            import urllib.parse

            path += "?" + urllib.parse.urlencode({"artifactType": artifact_type})
        what = self.where(str(digest))
        entries: list[Descriptor] = []
        filtered = False
        try:
            for obj, headers in self.client.pages(path, self.pull, what):
                ms = obj.get("manifests") if isinstance(obj, dict) else None
                if not isinstance(ms, list):
                    raise RegistryError("referrers page has no 'manifests' list", where=what)
                entries += [Descriptor.from_dict(d) for d in ms]
                filtered = filtered or "artifactType" in headers.get("OCI-Filters-Applied", "")
        except NotFound as e:
            raise ReferrersUnsupported(
                f"the registry has no referrers API ({e.message})", where=what
            ) from None
        if artifact_type and not filtered:
            entries = [e for e in entries if e.artifact_type == artifact_type]
        return entries


def _restartable(e: Exception) -> bool:
    """Whether a new upload session may succeed where *e* ended the last one."""
    if isinstance(e, (NotFound, TransportError, RetryLater)):
        return True
    return isinstance(e, RegistryError) and e.status in (0, 400, 416)


class BlobStream:
    """A blob download that picks up where it was cut off.

    After a connection failure mid-body it asks again with
    ``Range: bytes=N-``: a 206 whose ``Content-Range`` starts at N goes on
    from there; a 200 starts over, and the N bytes already read are skipped.
    It gives up after ``max_attempts`` failures in a row without progress.
    The bytes are not verified here (see :class:`luff.model.digest.VerifyingReader`).
    """

    def __init__(self, repo: Repository, path: str, resp: Response, what: str) -> None:
        self._repo = repo
        self._path = path
        self._what = what
        self._body = Body(resp, what)
        self._offset = 0  # bytes handed to the reader
        self._skip = 0  # bytes of the current body to drop (a restart without Range)
        self._failures = 0
        self._resumes = 0
        self._closed = False

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return read_all(self.read)
        while True:
            try:
                data = self._body.read(n)
                while data and self._skip:
                    drop = min(self._skip, len(data))
                    self._skip -= drop
                    data = data[drop:] or self._body.read(n)
            except TransportError as e:
                self._resume(e)
                continue
            if data:
                self._offset += len(data)
                self._failures = 0
            return data

    def readinto(self, view: memoryview | bytearray) -> int:
        """Fill *view* (fewer bytes only at the end); resumes as :meth:`read` does."""
        view = memoryview(view)
        while True:
            try:
                n = self._body.readinto(view)
                while n and self._skip:
                    drop = min(self._skip, n)
                    self._skip -= drop
                    view[: n - drop] = view[drop:n]
                    n -= drop
                    if not n:
                        n = self._body.readinto(view)
            except TransportError as e:
                self._resume(e)
                continue
            if n:
                self._offset += n
                self._failures = 0
            return n

    def _resume(self, error: TransportError) -> None:
        cancel.check()  # the connection was shut down on purpose
        if self._closed:
            raise error  # closed by its reader's owner (another thread): no new request
        client = self._repo.client
        policy = client.policy
        self._failures += 1
        self._resumes += 1
        if (
            not error.retryable
            or self._failures >= policy.max_attempts
            or self._resumes > 10 * policy.max_attempts
        ):
            error.retryable = False
            raise error
        self._body.close()
        client.settings.say(f"{self._what}: {error.message}; resuming at byte {self._offset}")
        policy.sleep(self._failures, None, client.settings.say, self._what)
        headers = {"Range": f"bytes={self._offset}-"} if self._offset else {}
        resp = client.request("GET", self._path, scopes=self._repo.pull, headers=headers)
        if resp.status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not (m and int(m.group(1)) == self._offset):
                discard(resp)
                raise RegistryError(
                    f"asked for bytes from {self._offset}, the registry answered "
                    f"Content-Range {resp.headers.get('Content-Range', '(none)')!r}",
                    206,
                    where=self._what,
                )
            self._skip = 0
        else:
            client.check(resp, (200,), self._what)
            self._skip = self._offset  # no range support: start over, skip what was read
        self._body = Body(resp, self._what)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._closed = True
        self._body.close()

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error_code(resp: Response) -> str:
    """The distribution error code of an error answer, if it has one (the body is consumed)."""
    from luff.registry.body import read_truncated
    from luff.registry.status import error_message

    code, _ = error_message(resp.status, read_truncated(resp))
    return code
