"""A repository in a registry as a :class:`Store`: a thin adapter over
:class:`luff.registry.repository.Repository`, which speaks the API; this
module checks what comes back (digests, media types) and parses manifests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO

from luff.errors import DigestMismatch, InvalidManifest, NotFound, PreconditionFailed
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, VerifyingReader, is_digest, verify_bytes
from luff.model.manifest import MAX_MANIFEST, Manifest, sniff_media_type
from luff.model.reference import Reference
from luff.model.referrers import ReferrerList, referrer_descriptor
from luff.registry.client import RegistryClient
from luff.registry.repository import CHUNK_SIZE, ManifestInfo, ReferrersUnsupported, Repository
from luff.stores.base import Store
from luff.stores.tagschema import TagSchema

if TYPE_CHECKING:
    from luff.context import Context
    from luff.model.address import Address

__all__ = ["CHUNK_SIZE", "RegistryStore"]

#: Blobs at least this large are read ahead (:mod:`luff.readahead`).
READ_AHEAD = 8 << 20


class RegistryStore(Store):
    """One repository of one registry.

    Its referrers are listed through the OCI 1.1 referrers API, or, where
    the registry answers 404 there, through the ``sha256-<hex>`` tag schema
    (:mod:`luff.stores.tagschema`), which writing a referrer also keeps up to
    date when the registry does not index it (no ``OCI-Subject`` answer).
    """

    closure = True

    def __init__(self, client: RegistryClient, repository: str, registry: str = "") -> None:
        self.client = client
        self.repository = repository
        self.registry = registry or client.host
        self.name = f"{self.registry}/{repository}"
        self.repo = Repository(client, repository, self.name)
        self._uploads: dict[Digest, str] = {}
        self.tag_schema = TagSchema(self)
        #: The tags as last listed (kept up to date with this handle's own writes), which
        #: spares a lookup of a ``sha256-<hex>`` tag that is not there.
        self.known_tags: set[str] | None = None

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
        stream = self.repo.get_blob(desc.digest)
        if desc.size >= READ_AHEAD:
            # Received in a thread of its own while the consumer hashes and writes.
            from luff.readahead import ReadAhead

            return ReadAhead(stream)  # type: ignore[return-value]
        return stream  # type: ignore[return-value]

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
        stored = self.repo.put_manifest(ident, manifest.data, manifest.media_type)
        if tag and self.known_tags is not None:
            self.known_tags.add(tag)
        if manifest.subject is not None and not stored.subject and not tag:
            # The registry did not index the referrer: list it under the tag schema
            # (at the next flush: one write per subject for many referrers).
            self.tag_schema.queue(manifest.subject.digest, referrer_descriptor(manifest))
        return manifest.descriptor()

    def flush(self) -> None:
        """Write the tag-schema entries queued by :meth:`push_manifest`."""
        self.tag_schema.flush()

    def relist(self, manifest: Manifest) -> None:
        """List a referrer the repository already holds but does not list (an earlier,
        interrupted copy)."""
        if manifest.subject is not None and not self._api():
            self.tag_schema.queue(manifest.subject.digest, referrer_descriptor(manifest))

    def _api(self) -> bool:
        return bool(self.client.capabilities.get("referrers-api"))

    def tags(self) -> list[str]:
        tags = self.repo.tags()
        self.known_tags = set(tags)
        return tags

    def delete(self, identifier: str) -> None:
        digest = identifier if is_digest(identifier) else str(self.resolve(identifier).digest)
        self.repo.delete_manifest(digest)

    def close(self) -> None:
        """Check that referrers listed in the tag schema stayed listed (see :mod:`.tagschema`)."""
        self.tag_schema.settle()

    def abort(self) -> None:
        """Nothing to release, nothing to check after a failure."""

    def untag(self, tag: str) -> None:
        """Remove *tag* only (OCI 1.1 tag deletion); the manifest stays."""
        self.repo.delete_tag(tag)

    # --- referrers ---------------------------------------------------------
    def referrers(self, subject: Descriptor, artifact_types: Sequence[str] = ()) -> ReferrerList:
        """The referrers API's answer, or the ``sha256-<hex>`` tag schema's index."""
        if self.client.capabilities.get("referrers-api") is not False:
            one = artifact_types[0] if len(artifact_types) == 1 else None
            try:
                found = self.repo.referrers(subject.digest, one)
            except ReferrersUnsupported:
                self.client.capabilities["referrers-api"] = False
            else:
                self.client.capabilities["referrers-api"] = True
                listed = ReferrerList(subject.digest, tuple(found), "referrers API")
                return listed.of_types(artifact_types)
        listed = ReferrerList(subject.digest, self.tag_schema.read(subject.digest), "tag schema")
        return listed.of_types(artifact_types)

    # --- conditional writes --------------------------------------------------
    def read_tag(self, tag: str) -> tuple[Descriptor, Manifest, str] | None:
        """What *tag* points at, and its ``ETag`` (or quoted digest) as the version token."""
        try:
            info = self.repo.get_manifest(tag)
        except NotFound:
            return None
        with _naming(self.repo.where(tag)):
            m = self._parse(info, tag)
        desc = Descriptor(m.media_type, _digest_of(info.data, tag), len(info.data))
        return desc, m, info.etag or f'"{desc.digest}"'

    def push_manifest_if(self, manifest: Manifest, tag: str, token: str | None) -> Descriptor:
        """PUT with ``If-Match: token`` (or ``If-None-Match: *``); a 412 is PreconditionFailed."""
        if token is None:
            self.repo.put_manifest(tag, manifest.data, manifest.media_type, if_none_match="*")
        else:
            self.repo.put_manifest(tag, manifest.data, manifest.media_type, if_match=token)
        if self.known_tags is not None:
            self.known_tags.add(tag)
        return manifest.descriptor()

    def enforces_conditions(self, probe: Manifest | None = None) -> bool:
        """Whether this registry refuses a stale conditional write (learnt once per host).

        The check writes *probe* — a manifest the repository already holds —
        again, by digest, with an ``If-Match`` no manifest can match: a
        registry that honours conditions answers 412; one that ignores them
        stores the same bytes again, which changes nothing.
        """
        known = self.client.capabilities.get("if-match")
        if known is not None or probe is None:
            return bool(known)
        try:
            self.repo.put_manifest(
                str(probe.digest), probe.data, probe.media_type, if_match=f'"{_NO_MATCH}"'
            )
        except PreconditionFailed:
            self.client.capabilities["if-match"] = True
            return True
        self.client.capabilities["if-match"] = False
        return False


_NO_MATCH = "sha256:" + "0" * 64


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
