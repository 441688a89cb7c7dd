"""The store interface: one small core every place holding images implements, and its abilities.

The core (:class:`Store`): resolve a tag or digest to a descriptor, tell
whether content exists, fetch it as a verified stream, push a blob or a
manifest, tag a manifest. Everything above the stores works on any store.

Optional abilities are declared as protocols, checked with ``isinstance``:
:class:`TagLister`, :class:`Deleter`, :class:`Mounter`, :class:`EntryLister`,
:class:`Delegating` and :class:`ReferrerLister`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import BinaryIO, Protocol, runtime_checkable

from luff.errors import InvalidManifest, LimitExceeded, NotFound, located
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, VerifyingReader, verify_bytes
from luff.model.manifest import MAX_MANIFEST, Manifest
from luff.model.referrers import ReferrerList, referrer_descriptor


class Store(ABC):
    """One repository-like place: a registry repository, a layout, an archive, memory.

    Identifiers are a tag or a digest string. Every read is verified against
    the digest that asked for it. ``closure`` is True when the store only
    ever holds a manifest together with everything it points at (registries
    enforce this on push), so finding a manifest there proves its children
    are there too.
    """

    #: Human-readable name for messages, e.g. ``localhost:5000/app`` or ``oci:./out``.
    name: str = ""
    closure: bool = False
    #: False for a store that holds single images only (a docker archive).
    holds_indexes: bool = True

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
        with located(where=self.name, digest=desc.digest):
            if desc.data is not None:
                verify_bytes(desc.data, desc.digest, desc.size)
                return desc.data
            if desc.size > limit:
                raise LimitExceeded(f"{desc.size} bytes; luff reads at most {limit} here")
            with self._open(desc) as f:
                data = f.read(desc.size + 1)
            verify_bytes(data, desc.digest, desc.size)
        return data

    def fetch_manifest(self, desc: Descriptor) -> Manifest:
        """The manifest or index that *desc* points at.

        Content whose own ``mediaType`` contradicts the descriptor's is refused
        (image-spec, media-types.md: "Media Type Conflicts").
        """
        data = self.fetch_bytes(desc)
        with located(where=self.name, digest=desc.digest):
            m = Manifest.parse(data, desc.media_type)
            if mt.is_manifest(desc.media_type) and m.media_type != desc.media_type:
                raise InvalidManifest(
                    f"is a {m.media_type}, but its descriptor says {desc.media_type}"
                )
        return m

    def get_manifest(self, identifier: str) -> tuple[Descriptor, Manifest]:
        """Resolve *identifier* and fetch its manifest.

        The descriptor keeps the annotations and platform the store lists it
        with (a layout's ``index.json`` entry).
        """
        desc = self.resolve(identifier)
        m = self.fetch_manifest(desc)
        return m.descriptor(annotations=desc.annotations, platform=desc.platform), m

    @property
    def address(self) -> str | None:
        """An address this store can be opened again from (another process, later), if any."""
        return None

    # --- writing -------------------------------------------------------
    @abstractmethod
    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Store a blob whose digest and size are known; verified while written."""

    def push_blob_unsized(self, media_type: str, stream: BinaryIO) -> Descriptor:
        """Store a blob of unknown size and digest (e.g. compressed on the fly).

        The default spools to a temporary file first, to learn the digest.
        """
        import hashlib

        h = hashlib.sha256()
        n = 0
        import tempfile

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
        """Point *tag* at the manifest *desc* (already in the store)."""
        self.push_manifest(self.fetch_manifest(desc), tag)

    # --- life cycle ------------------------------------------------------
    def close(self) -> None:
        """Finish writing (archives are written here) and release resources."""

    def abort(self) -> None:
        """Release resources without committing pending writes."""
        self.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


# --- optional abilities ------------------------------------------------------------


@runtime_checkable
class TagLister(Protocol):
    """A store that can list its tags (or ``ref.name``s)."""

    def tags(self) -> list[str]:
        """All tags, sorted."""
        ...


@runtime_checkable
class Deleter(Protocol):
    """A store that can delete manifests and remove tags."""

    def delete(self, identifier: str) -> None:
        """Delete the manifest named by a digest (a tag is resolved first)."""
        ...

    def untag(self, tag: str) -> None:
        """Remove *tag* only; the manifest stays."""
        ...


@runtime_checkable
class Mounter(Protocol):
    """A registry repository that can mount blobs from another repository of its registry."""

    def mount_source(self, source: Store) -> str | None:
        """The repository *source* can be mounted from into this store, if any."""
        ...

    def mount(self, desc: Descriptor, from_repository: str) -> bool:
        """Cross-repository mount; True when it worked."""
        ...


@runtime_checkable
class BlobFetcher(Protocol):
    """A store that can read a blob from its digest alone (its size unknown beforehand)."""

    def fetch_blob(self, digest: Digest) -> BinaryIO:
        """A stream of blob *digest*, verified as it is read (:class:`NotFound` when absent)."""
        ...


@runtime_checkable
class EntryLister(Protocol):
    """A store with a list of entries (a layout's or archive's ``index.json``)."""

    def entries(self) -> list[Descriptor]:
        """The listed manifests, in order."""
        ...

    def index_annotations(self) -> dict[str, str]:
        """The annotations of the list itself (``index.json``'s)."""
        ...


@runtime_checkable
class Delegating(Protocol):
    """A store that serves some content from other stores (a sparse layout, a built index).

    The copy engine asks :meth:`origin` where a blob really is, so that a
    target in the same registry can mount it instead of copying it.
    """

    def origin(self, desc: Descriptor) -> Store | None:
        """The store that holds *desc*, when it is not this one."""
        ...


@runtime_checkable
class ReferrerLister(Protocol):
    """A store that can list the manifests whose ``subject`` is a given manifest."""

    def referrers(self, subject: Descriptor, artifact_types: Sequence[str] = ()) -> ReferrerList:
        """The referrers of *subject* (of these artifact types, if any are given)."""
        ...


@runtime_checkable
class ConditionalTagger(Protocol):
    """A store that can move a tag only if it still points where it was read.

    ``read_tag`` gives the manifest a tag points at and a version token
    (a registry's ``ETag``); ``push_manifest_if`` points the tag at a new
    manifest only while it is at that token (a token of None: only while
    the tag does not exist), else raises
    :class:`~luff.errors.PreconditionFailed`. ``enforces_conditions`` tells
    whether the store really refuses a stale write (a registry that ignores
    ``If-Match`` writes anyway).
    """

    def read_tag(self, tag: str) -> tuple[Descriptor, Manifest, str] | None:
        """``(descriptor, manifest, token)`` of what *tag* points at; None when it is absent."""
        ...

    def push_manifest_if(self, manifest: Manifest, tag: str, token: str | None) -> Descriptor:
        """Point *tag* at *manifest* if it is still at *token*."""
        ...

    def enforces_conditions(self, probe: Manifest | None = None) -> bool:
        """True when a stale ``push_manifest_if`` is refused, not written.

        *probe*, a manifest the store holds, lets a store that does not know
        yet find out by writing it again unchanged.
        """
        ...


@runtime_checkable
class Flushing(Protocol):
    """A store that collects some writes and makes them at :meth:`flush` (the copy engine
    flushes after each level of manifests): a registry's referrers tag schema."""

    def flush(self) -> None:
        """Make the writes collected so far."""
        ...

    def relist(self, manifest: Manifest) -> None:
        """List again a referrer the store holds but does not list."""
        ...


def scan_referrers(store: Store, roots: Iterable[Descriptor]) -> dict[Digest, list[Descriptor]]:
    """The manifests reachable from *roots* that have a ``subject``, by subject digest.

    Each manifest is read once; one that is missing is passed over.
    """
    found: dict[Digest, list[Descriptor]] = {}
    seen: set[Digest] = set()
    todo = [d for d in roots if mt.is_manifest(d.media_type)]
    while todo:
        d = todo.pop()
        if d.digest in seen:
            continue
        seen.add(d.digest)
        try:
            m = store.fetch_manifest(d)
        except NotFound:
            continue
        if m.subject is not None:
            found.setdefault(m.subject.digest, []).append(referrer_descriptor(m))
        todo.extend(c for c in m.children() if mt.is_manifest(c.media_type))
    return found


def origin_of(store: Store, desc: Descriptor) -> Store:
    """The store that really holds *desc*: the origin of a delegating store, else *store*."""
    if isinstance(store, Delegating):
        o = store.origin(desc)
        if o is not None:
            return o
    return store


def require(found: Descriptor | None, what: str) -> Descriptor:
    """Raise :class:`NotFound` for a missing lookup."""
    if found is None:
        raise NotFound("not found", where=what)
    return found
