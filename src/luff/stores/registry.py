"""A repository in a registry as a :class:`Store`: a thin adapter over
:class:`luff.registry.repository.Repository`, which speaks the API; this
module checks what comes back (digests, media types) and parses manifests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from luff.errors import DigestMismatch, InvalidManifest
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, VerifyingReader, is_digest, verify_bytes
from luff.model.manifest import MAX_MANIFEST, Manifest, sniff_media_type
from luff.model.reference import Reference
from luff.registry.client import RegistryClient
from luff.registry.repository import CHUNK_SIZE, ManifestInfo, Repository
from luff.stores.base import Store

if TYPE_CHECKING:
    from luff.context import Context

__all__ = ["CHUNK_SIZE", "RegistryStore"]


class RegistryStore(Store):
    """One repository of one registry."""

    def __init__(self, client: RegistryClient, repository: str, registry: str = "") -> None:
        self.client = client
        self.repository = repository
        self.registry = registry or client.host
        self.name = f"{self.registry}/{repository}"
        self.repo = Repository(client, repository, self.name)
        self._uploads: dict[Digest, str] = {}

    @classmethod
    def for_reference(cls, ref: Reference, ctx: Context) -> RegistryStore:
        """The store of *ref*'s repository."""
        return cls(ctx.client(ref.api_host), ref.repository, ref.registry)

    # --- reading -------------------------------------------------------
    def resolve(self, identifier: str) -> Descriptor:
        info = self.repo.head_manifest(identifier)
        dg = identifier if is_digest(identifier) else info.digest
        if not (is_digest(dg) and info.size is not None and mt.is_manifest(info.media_type)):
            # Some registries answer HEAD incompletely; GET tells all.
            desc, _ = self.get_manifest(identifier)
            return desc
        return Descriptor(info.media_type, Digest.parse(dg), info.size)

    def get_manifest(self, identifier: str) -> tuple[Descriptor, Manifest]:
        info = self.repo.get_manifest(identifier)
        what = self.repo.where(identifier)
        with _naming(what):
            m = self._parse(info, identifier)
        return Descriptor(m.media_type, _digest_of(info.data, identifier), len(info.data)), m

    def _parse(self, info: ManifestInfo, identifier: str) -> Manifest:
        data, ctype = info.data, info.media_type
        media = sniff_media_type(data, ctype)
        mt.check_supported(media)
        if mt.is_manifest(ctype) and ctype != media:
            raise InvalidManifest(
                f"Content-Type {ctype} does not match the manifest's mediaType {media}"
            )
        if is_digest(identifier):
            verify_bytes(data, identifier)
        elif is_digest(info.digest):
            verify_bytes(data, info.digest)
        return Manifest.parse(data, media)

    def fetch_bytes(self, desc: Descriptor, limit: int = MAX_MANIFEST) -> bytes:
        if mt.is_manifest(desc.media_type) and desc.data is None:
            info = self.repo.get_manifest(str(desc.digest))
            if mt.is_manifest(info.media_type) and info.media_type != desc.media_type:
                raise InvalidManifest(
                    f"registry says {info.media_type}, descriptor says {desc.media_type}",
                    where=self.repo.where(str(desc.digest)),
                )
            verify_bytes(info.data, desc.digest, desc.size)
            return info.data
        return super().fetch_bytes(desc, limit)

    def fetch_blob(self, digest: Digest) -> BinaryIO:
        """A verified stream of blob *digest*, whose size is not known beforehand."""
        size = self.repo.head_blob(digest)
        raw = self.repo.get_blob(digest)
        return VerifyingReader(raw, digest, size)  # type: ignore[arg-type, return-value]

    def exists(self, desc: Descriptor) -> bool:
        if mt.is_manifest(desc.media_type):
            return self.repo.manifest_exists(desc.digest)
        return self.repo.blob_exists(desc.digest)

    def _open(self, desc: Descriptor) -> BinaryIO:
        if mt.is_manifest(desc.media_type):
            return self.repo.get_manifest_stream(desc.digest)
        return self.repo.get_blob(desc.digest)  # type: ignore[return-value]

    # --- writing -------------------------------------------------------
    def mount_source(self, source: Store) -> str | None:
        if (
            isinstance(source, RegistryStore)
            and source.client.host == self.client.host
            and source.repository != self.repository
        ):
            return source.repository
        return None

    def mount(self, desc: Descriptor, from_repository: str) -> bool:
        mounted, location = self.repo.mount(desc.digest, from_repository)
        if not mounted and location:
            # Mount refused; the registry opened an ordinary upload instead.
            self._uploads[desc.digest] = location
        return mounted

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        location = self._uploads.pop(desc.digest, "")
        self.repo.upload(desc.digest, desc.size, stream, location)

    def push_blob_unsized(self, media_type: str, stream: BinaryIO) -> Descriptor:
        """Chunked upload (PATCH with Content-Range) for a stream of unknown size."""
        digest, size = self.repo.upload_chunked(stream, CHUNK_SIZE)
        return Descriptor(media_type, digest, size)

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        ident = tag or str(manifest.digest)
        self.repo.put_manifest(ident, manifest.data, manifest.media_type)
        return manifest.descriptor()

    def tags(self) -> list[str]:
        return self.repo.tags()

    def delete(self, identifier: str) -> None:
        digest = identifier if is_digest(identifier) else str(self.resolve(identifier).digest)
        self.repo.delete_manifest(digest)

    def trusts_manifest_closure(self) -> bool:
        return True


def _digest_of(data: bytes, identifier: str) -> Digest:
    algo = Digest.parse(identifier).algorithm if is_digest(identifier) else "sha256"
    return Digest.of(data, algo)


@contextlib.contextmanager
def _naming(what: str) -> Iterator[None]:
    """Locate a content error at the reference it came from."""
    try:
        yield
    except (InvalidManifest, DigestMismatch) as e:
        raise e.located(where=what) from None
