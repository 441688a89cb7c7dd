"""The store interface that every place holding images implements."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from luff.errors import DigestMismatch, InvalidManifest, NotFound, UsageError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, VerifyingReader, verify_bytes
from luff.model.manifest import MAX_MANIFEST, Manifest


class Store(ABC):
    """One repository-like place: a registry repository, a layout, an archive, memory.

    Identifiers are a tag or a digest string. Every read is verified against
    the digest that asked for it.
    """

    #: Human-readable name for messages, e.g. ``localhost:5000/app`` or ``oci:./out``.
    name: str = ""

    # --- reading -------------------------------------------------------
    @abstractmethod
    def resolve(self, identifier: str) -> Descriptor:
        """The descriptor of the manifest named by a tag or digest."""

    @abstractmethod
    def exists(self, desc: Descriptor) -> bool:
        """True when the store holds the content of *desc*."""

    @abstractmethod
    def _open(self, desc: Descriptor) -> BinaryIO:
        """Open the raw content of *desc* (unverified)."""

    def fetch(self, desc: Descriptor) -> BinaryIO:
        """A stream of the content of *desc*, verified as it is read."""
        return VerifyingReader(self._open(desc), desc.digest, desc.size)  # type: ignore[return-value]

    def fetch_bytes(self, desc: Descriptor, limit: int = MAX_MANIFEST) -> bytes:
        """The whole (small) content of *desc*, verified."""
        if desc.data is not None:
            verify_bytes(desc.data, desc.digest, desc.size)
            return desc.data
        if desc.size > limit:
            raise UsageError(f"{desc.digest} is {desc.size} bytes; larger than {limit}")
        with self._open(desc) as f:
            data = f.read(desc.size + 1)
        verify_bytes(data, desc.digest, desc.size)
        return data

    def fetch_manifest(self, desc: Descriptor) -> Manifest:
        """The manifest or index that *desc* points at.

        Content whose own ``mediaType`` contradicts the descriptor's is refused
        (image-spec, media-types.md: "Media Type Conflicts").
        """
        try:
            data = self.fetch_bytes(desc)
        except DigestMismatch as e:
            msg = str(e)
            raise DigestMismatch(
                msg if msg.startswith(self.name) else f"{self.name}: {msg}"
            ) from None
        m = Manifest.parse(data, desc.media_type)
        if mt.is_manifest(desc.media_type) and m.media_type != desc.media_type:
            raise InvalidManifest(
                f"{self.name}: {desc.digest} is a {m.media_type}, "
                f"but its descriptor says {desc.media_type}"
            )
        return m

    def get_manifest(self, identifier: str) -> tuple[Descriptor, Manifest]:
        """Resolve *identifier* and fetch its manifest."""
        desc = self.resolve(identifier)
        m = self.fetch_manifest(desc)
        return m.descriptor(annotations=desc.annotations, platform=desc.platform), m

    # --- writing -------------------------------------------------------
    @abstractmethod
    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Store a blob whose digest and size are known; verified while written."""

    def push_blob_unsized(self, media_type: str, stream: BinaryIO) -> Descriptor:
        """Store a blob of unknown size and digest (e.g. compressed on the fly).

        The default buffers to a temporary file first.
        """
        import hashlib
        import tempfile

        h = hashlib.sha256()
        n = 0
        with tempfile.TemporaryFile() as tmp:
            while chunk := stream.read(1 << 20):
                h.update(chunk)
                n += len(chunk)
                tmp.write(chunk)
            tmp.seek(0)
            desc = Descriptor(media_type, Digest("sha256", h.hexdigest()), n)
            if not self.exists(desc):
                self.push_blob(desc, tmp)
        return desc

    @abstractmethod
    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        """Store a manifest by digest, and under *tag* if given."""

    def tag(self, desc: Descriptor, tag: str) -> None:
        """Point *tag* at the manifest *desc*."""
        self.push_manifest(self.fetch_manifest(desc), tag)

    def push(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Store content of any kind: a manifest by its bytes, a blob by streaming."""
        if mt.is_manifest(desc.media_type):
            data = stream.read(MAX_MANIFEST + 1)
            verify_bytes(data, desc.digest, desc.size)
            self.push_manifest(Manifest.parse(data, desc.media_type))
        else:
            self.push_blob(desc, stream)

    def tags(self) -> list[str]:
        """All tags (sorted)."""
        raise UsageError(f"{self.name}: listing tags is not supported")

    def delete(self, identifier: str) -> None:
        """Delete a manifest by digest, or untag by tag."""
        raise UsageError(f"{self.name}: delete is not supported")

    # --- capabilities ----------------------------------------------------
    def mount_source(self, source: Store) -> str | None:
        """The repository *source* can be mounted from into this store, if any."""
        return None

    def origin(self, desc: Descriptor) -> Store | None:
        """Where a blob this store lacks can be fetched from (sparse layouts), if anywhere.

        The copy engine asks the target to mount from the origin when both
        are in the same registry; reads through this store still work.
        """
        return None

    def mount(self, desc: Descriptor, from_repository: str) -> bool:
        """Cross-repository mount; True when it worked."""
        return False

    def trusts_manifest_closure(self) -> bool:
        """True when an existing manifest implies all its children exist.

        Registries enforce this on push; layouts may be sparse.
        """
        return False

    def close(self) -> None:
        """Finish writing (archives are written here) and release resources."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Release resources without committing pending writes."""
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def require(found: Descriptor | None, what: str) -> Descriptor:
    """Raise :class:`NotFound` for a missing lookup."""
    if found is None:
        raise NotFound(f"{what}: not found")
    return found


@contextmanager
def bytes_stream(data: bytes) -> Iterator[BinaryIO]:
    """A binary stream over *data*."""
    yield io.BytesIO(data)
