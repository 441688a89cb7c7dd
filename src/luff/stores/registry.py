"""A repository in a registry, through the distribution API."""

from __future__ import annotations

import contextlib
import hashlib
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from luff.errors import DigestMismatch, InvalidManifest, NotFound, RegistryError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, VerifyingReader, is_digest, verify_bytes
from luff.model.manifest import MAX_MANIFEST, Manifest, sniff_media_type
from luff.model.reference import Reference
from luff.registry.client import (
    RegistryClient,
    ResponseStream,
    _drain,
    _RetryStream,
    error_message,
)
from luff.stores.base import Store

if TYPE_CHECKING:
    import urllib3

    from luff.context import Context
    from luff.model.address import Address

CHUNK_SIZE = 16 * 1024 * 1024


def _add_query(location: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(location)
    q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    q += list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q)))


class RegistryStore(Store):
    """One repository of one registry."""

    def __init__(self, client: RegistryClient, repository: str, registry: str = "") -> None:
        self.client = client
        self.repository = repository
        self.registry = registry or client.host
        self.name = f"{self.registry}/{repository}"
        self._pull = (f"repository:{repository}:pull",)
        self._push = (f"repository:{repository}:pull,push",)
        self._uploads: dict[Digest, str] = {}

    closure = True

    @classmethod
    def for_reference(cls, ref: Reference, ctx: Context) -> RegistryStore:
        """The store of *ref*'s repository."""
        return cls(ctx.client(ref.api_host), ref.repository, ref.registry)

    @classmethod
    def open_source(cls, address: Address, ctx: Context) -> RegistryStore:
        """The repository an address names."""
        assert address.reference is not None
        return cls.for_reference(address.reference, ctx)

    @classmethod
    def open_target(cls, address: Address, ctx: Context, *, create: bool = True) -> RegistryStore:
        """The repository an address names (nothing is made on the registry)."""
        return cls.open_source(address, ctx)

    @property
    def address(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    def _path(self, kind: str, ident: str) -> str:
        return f"/v2/{self.repository}/{kind}/{ident}"

    def _what(self, ident: str) -> str:
        sep = "@" if is_digest(ident) else ":"
        return f"{self.name}{sep}{ident}"

    # --- reading -------------------------------------------------------
    def _manifest_response(self, method: str, identifier: str) -> urllib3.BaseHTTPResponse:
        """HEAD, or streamed GET, of a manifest; NotFound or the registry's error otherwise."""
        resp = self.client.request(
            method,
            self._path("manifests", identifier),
            scopes=self._pull,
            headers={"Accept": mt.ACCEPT},
            stream=method == "GET",
        )
        what = self._what(identifier)
        if resp.status == 404:
            _drain(resp)
            raise NotFound(f"{what}: manifest unknown")
        self.client.check(resp, (200,), what)
        return resp

    def _manifest_bytes(self, identifier: str) -> tuple[bytes, str, urllib3.HTTPHeaderDict]:
        """The body (at most MAX_MANIFEST bytes), Content-Type and headers of a manifest GET."""
        resp = self._manifest_response("GET", identifier)
        too_large = f"{self._what(identifier)}: manifest larger than {MAX_MANIFEST} bytes"
        with ResponseStream(resp, self.client.host) as body:
            length = resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > MAX_MANIFEST:
                raise InvalidManifest(too_large)
            data = body.read(MAX_MANIFEST + 1)
        if len(data) > MAX_MANIFEST:
            raise InvalidManifest(too_large)
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return data, ctype, resp.headers

    def resolve(self, identifier: str) -> Descriptor:
        resp = self._manifest_response("HEAD", identifier)
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
        dg = resp.headers.get("Docker-Content-Digest", "")
        size = resp.headers.get("Content-Length", "")
        if is_digest(identifier):
            dg = identifier
        if not (is_digest(dg) and size.isdigit() and mt.is_manifest(ctype)):
            # Some registries answer HEAD incompletely; GET tells all.
            desc, _ = self.get_manifest(identifier)
            return desc
        return Descriptor(ctype, Digest.parse(dg), int(size))

    def get_manifest(self, identifier: str) -> tuple[Descriptor, Manifest]:
        data, ctype, headers = self._manifest_bytes(identifier)
        what = self._what(identifier)
        with _naming(what):
            media = sniff_media_type(data, ctype)
            mt.check_supported(media)
        if mt.is_manifest(ctype) and ctype != media:
            raise InvalidManifest(
                f"{what}: Content-Type {ctype} does not match the manifest's mediaType {media}"
            )
        with _naming(what):
            if is_digest(identifier):
                verify_bytes(data, identifier)
                algo = Digest.parse(identifier).algorithm
            else:
                algo = "sha256"
                header = headers.get("Docker-Content-Digest", "")
                if is_digest(header):
                    verify_bytes(data, header)
            m = Manifest.parse(data, media)
        d = Digest.of(data, algo)
        return Descriptor(m.media_type, d, len(data)), m

    def fetch_bytes(self, desc: Descriptor, limit: int = MAX_MANIFEST) -> bytes:
        if mt.is_manifest(desc.media_type) and desc.data is None:
            data, ctype, _ = self._manifest_bytes(str(desc.digest))
            if mt.is_manifest(ctype) and ctype != desc.media_type:
                raise InvalidManifest(
                    f"{self._what(str(desc.digest))}: registry says {ctype}, "
                    f"descriptor says {desc.media_type}"
                )
            verify_bytes(data, desc.digest, desc.size)
            return data
        return super().fetch_bytes(desc, limit)

    def fetch_blob(self, digest: Digest) -> BinaryIO:
        """A verified stream of blob *digest*, whose size is not known beforehand."""
        resp = self.client.request("HEAD", self._path("blobs", str(digest)), scopes=self._pull)
        what = self._what(str(digest))
        if resp.status == 404:
            raise NotFound("blob unknown", where=what)
        self.client.check(resp, (200,), what)
        length = resp.headers.get("Content-Length", "")
        size = int(length) if length.isdigit() else None
        raw = self._open(Descriptor("application/octet-stream", digest, size or 0))
        return VerifyingReader(raw, digest, size)  # type: ignore[return-value]

    def exists(self, desc: Descriptor) -> bool:
        kind = "manifests" if mt.is_manifest(desc.media_type) else "blobs"
        headers = {"Accept": mt.ACCEPT} if kind == "manifests" else {}
        resp = self.client.request(
            "HEAD", self._path(kind, str(desc.digest)), scopes=self._pull, headers=headers
        )
        if resp.status == 404:
            return False
        self.client.check(resp, (200,), self._what(str(desc.digest)))
        return True

    def _open(self, desc: Descriptor) -> BinaryIO:
        kind = "manifests" if mt.is_manifest(desc.media_type) else "blobs"
        headers = {"Accept": mt.ACCEPT} if kind == "manifests" else {}
        resp = self.client.request(
            "GET",
            self._path(kind, str(desc.digest)),
            scopes=self._pull,
            headers=headers,
            stream=True,
        )
        if resp.status == 404:
            _drain(resp)
            raise NotFound(f"{self._what(str(desc.digest))}: blob unknown")
        if resp.status != 200:
            resp.read()
        self.client.check(resp, (200,), self._what(str(desc.digest)))
        return ResponseStream(resp, self.client.host)  # type: ignore[return-value]

    # --- writing -------------------------------------------------------
    def _start_upload(self) -> str:
        resp = self.client.request(
            "POST", f"/v2/{self.repository}/blobs/uploads/", scopes=self._push
        )
        self.client.check(resp, (202,), f"{self.name}: start upload")
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"{self.name}: registry gave no upload Location")
        return loc

    def mount_source(self, source: Store) -> str | None:
        if (
            isinstance(source, RegistryStore)
            and source.client.host == self.client.host
            and source.repository != self.repository
        ):
            return source.repository
        return None

    def mount(self, desc: Descriptor, from_repository: str) -> bool:
        q = urllib.parse.urlencode({"mount": str(desc.digest), "from": from_repository})
        resp = self.client.request(
            "POST",
            f"/v2/{self.repository}/blobs/uploads/?{q}",
            scopes=(*self._push, f"repository:{from_repository}:pull"),
        )
        if resp.status == 201:
            self._stored_as(resp, desc.digest, "the mounted blob")
            return True
        if resp.status == 202 and resp.headers.get("Location"):
            # Mount refused; the registry opened an ordinary upload instead.
            self._uploads[desc.digest] = resp.headers["Location"]
            return False
        self.client.check(resp, (201, 202), f"{self.name}: mount {desc.digest}")
        return False

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        loc = self._uploads.pop(desc.digest, None) or self._start_upload()
        url = _add_query(loc, digest=str(desc.digest))
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(desc.size),
        }
        try:
            resp = self.client.request("PUT", url, scopes=self._push, headers=headers, body=stream)
        except _RetryStream:
            raise RegistryError(f"{self.name}: credentials changed during upload") from None
        self.client.check(resp, (201,), f"{self.name}: upload {desc.digest}")
        self._stored_as(resp, desc.digest, "the blob")

    def push_blob_unsized(self, media_type: str, stream: BinaryIO) -> Descriptor:
        """Chunked upload (PATCH with Content-Range) for a stream of unknown size."""
        loc = self._start_upload()
        h = hashlib.sha256()
        offset = 0
        while True:
            chunk = stream.read(CHUNK_SIZE)
            if not chunk:
                break
            h.update(chunk)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Length": str(len(chunk)),
            }
            resp = self.client.request(
                "PATCH", self.client.url(loc), scopes=self._push, headers=headers, body=chunk
            )
            self.client.check(resp, (202, 204), f"{self.name}: upload chunk")
            loc = resp.headers.get("Location") or loc
            offset += len(chunk)
        digest = Digest("sha256", h.hexdigest())
        resp = self.client.request(
            "PUT",
            _add_query(self.client.url(loc), digest=str(digest)),
            scopes=self._push,
            headers={"Content-Length": "0", "Content-Type": "application/octet-stream"},
            body=b"",
        )
        self.client.check(resp, (201,), f"{self.name}: finish upload {digest}")
        self._stored_as(resp, digest, "the blob")
        return Descriptor(media_type, digest, offset)

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        ident = tag or str(manifest.digest)
        resp = self.client.request(
            "PUT",
            self._path("manifests", ident),
            scopes=self._push,
            headers={"Content-Type": manifest.media_type},
            body=manifest.data,
        )
        self.client.check(resp, (201, 200), f"{self._what(ident)}: push manifest")
        self._stored_as(resp, manifest.digest, "the manifest")
        return manifest.descriptor()

    def _stored_as(self, resp: urllib3.BaseHTTPResponse, expected: Digest, what: str) -> None:
        """Refuse a ``Docker-Content-Digest`` (of the same algorithm) other than *expected*."""
        got = resp.headers.get("Docker-Content-Digest", "")
        if is_digest(got):
            d = Digest.parse(got)
            if d.algorithm == expected.algorithm and d != expected:
                raise RegistryError(
                    f"{self.name}: registry stored {what} as {got}, expected {expected}"
                )

    def tags(self) -> list[str]:
        tags = self.client.paginate(
            f"/v2/{self.repository}/tags/list?n=1000", "tags", self._pull, self.name
        )
        return sorted(set(tags))

    def delete(self, identifier: str) -> None:
        digest = identifier if is_digest(identifier) else str(self.resolve(identifier).digest)
        resp = self.client.request(
            "DELETE",
            self._path("manifests", digest),
            scopes=(f"repository:{self.repository}:delete",),
        )
        if resp.status == 404:
            raise NotFound(f"{self._what(digest)}: manifest unknown")
        if resp.status == 405:
            raise RegistryError(f"{self.name}: the registry does not allow deletes", 405)
        self.client.check(resp, (202, 200), f"{self._what(digest)}: delete")

    def untag(self, tag: str) -> None:
        """Remove *tag* only (OCI 1.1 tag deletion); the manifest stays."""
        resp = self.client.request(
            "DELETE",
            self._path("manifests", tag),
            scopes=(f"repository:{self.repository}:delete",),
        )
        what = self._what(tag)
        if resp.status == 404:
            raise NotFound("manifest unknown", where=what)
        if resp.status in (400, 405, 501):
            code, _ = error_message(resp, what)
            raise RegistryError(
                f"the registry does not delete a tag alone (it answered {resp.status}"
                f"{' ' + code if code else ''}); nothing was deleted",
                resp.status,
                code,
                where=what,
            )
        self.client.check(resp, (202, 200), what)


@contextlib.contextmanager
def _naming(what: str) -> Iterator[None]:
    """Prefix the message of a content error with the reference it came from."""
    try:
        yield
    except (InvalidManifest, DigestMismatch) as e:
        raise type(e)(f"{what}: {e}") from None
