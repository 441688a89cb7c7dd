"""Transport addresses: where an image lives, and the one table of transports.

``registry/repo:tag`` or ``docker://…`` name a registry;
``oci:PATH[:TAG]`` and ``oci:PATH@DIGEST`` an OCI layout;
``oci-archive:FILE[:TAG]`` a tar of a layout;
``docker-archive:FILE[:REPO:TAG]`` a ``docker save`` tarball.

Adding a transport means one row in :data:`TRANSPORTS` and one store class
with ``open_source`` and ``open_target`` class methods; nothing above the
stores branches on the transport.
"""

from __future__ import annotations

from luff.errors import InvalidDigest, InvalidReference, UsageError
from luff.model.digest import Digest, is_digest
from luff.model.reference import DEFAULT_TAG, Reference, valid_tag
from luff.record import Record, replace, setfields

REGISTRY = "docker"
OCI = "oci"
OCI_ARCHIVE = "oci-archive"
DOCKER_ARCHIVE = "docker-archive"


class Transport(Record, frozen=True):
    """What luff knows of one kind of address.

    ``store`` is ``"module:Class"`` of the store that opens it (imported only
    when used). ``stable_digests`` is False when writing an image there gives
    it new digests (a docker archive keeps uncompressed layers), so a result
    is named by its address instead of pinned to a digest. ``tag_kind`` says
    what follows the path: ``"ref-name"`` (an ``org.opencontainers.image.ref.name``)
    or ``"repo-tag"`` (docker's ``REPO:TAG``). ``default_tag`` is what a
    write to an address without a tag uses ("" means the source's tag).
    ``single_file`` is True when every write replaces the whole target.
    """

    name: str
    store: str
    stable_digests: bool
    tag_kind: str
    digests: bool
    default_tag: str
    single_file: bool

    def __init__(
        self,
        name: str,
        store: str,
        stable_digests: bool = True,
        tag_kind: str = "ref-name",
        digests: bool = True,
        default_tag: str = "",
        single_file: bool = False,
    ) -> None:
        setfields(
            self,
            name=name,
            store=store,
            stable_digests=stable_digests,
            tag_kind=tag_kind,
            digests=digests,
            default_tag=default_tag,
            single_file=single_file,
        )


TRANSPORTS: dict[str, Transport] = {
    REGISTRY: Transport(
        REGISTRY, "luff.stores.registry:RegistryStore", tag_kind="tag", default_tag=DEFAULT_TAG
    ),
    OCI: Transport(OCI, "luff.stores.layout:LayoutStore"),
    OCI_ARCHIVE: Transport(
        OCI_ARCHIVE, "luff.stores.oci_archive:OciArchiveStore", single_file=True
    ),
    DOCKER_ARCHIVE: Transport(
        DOCKER_ARCHIVE,
        "luff.stores.docker_archive:DockerArchiveStore",
        stable_digests=False,
        tag_kind="repo-tag",
        digests=False,
        single_file=True,
    ),
}
#: Transports named by a prefix (``oci:`` ...); a registry needs none.
FILE_TRANSPORTS = tuple(t for t in TRANSPORTS if t != REGISTRY)
#: skopeo transports that luff does not support (no Docker Hub image has these names).
_OTHER_TRANSPORTS = ("containers-storage", "dir", "docker-daemon", "ostree", "sif", "tarball")


class Address(Record, frozen=True):
    """A parsed source or target address.

    ``tag`` and ``digest`` are what the text gave ("" when absent): a
    registry address without either still resolves ``latest``
    (:attr:`identifier`), but :attr:`has_tag` tells it was not given.
    For a registry, ``path`` is ``registry/repository``.
    """

    transport: str
    path: str
    tag: str
    digest: str

    def __init__(
        self,
        transport: str,
        path: str,
        tag: str = "",
        digest: str = "",
    ) -> None:
        setfields(
            self,
            transport=transport,
            path=path,
            tag=tag,
            digest=digest,
        )

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse any address; a bare reference means a registry."""
        return parse_address(text)

    @classmethod
    def for_reference(cls, ref: Reference, *, tag_given: bool = True) -> Address:
        """The address of a registry reference."""
        return cls(REGISTRY, ref.name, ref.tag if tag_given else "", ref.digest)

    @property
    def kind(self) -> Transport:
        """This address's row of :data:`TRANSPORTS`."""
        return TRANSPORTS[self.transport]

    @property
    def is_registry(self) -> bool:
        """True for a registry address (not a layout or an archive)."""
        return self.transport == REGISTRY

    @property
    def has_tag(self) -> bool:
        """True when the text named a tag (or ref.name)."""
        return bool(self.tag)

    @property
    def has_digest(self) -> bool:
        """True when the text named a digest."""
        return bool(self.digest)

    @property
    def reference(self) -> Reference | None:
        """The registry reference (``latest`` when no tag or digest was given); None for files."""
        if not self.is_registry:
            return None
        registry, _, repository = self.path.partition("/")
        tag = self.tag or ("" if self.digest else DEFAULT_TAG)
        return Reference(registry, repository, tag, self.digest)

    @property
    def identifier(self) -> str:
        """What the store resolves: the digest if given, else the tag (registries: ``latest``).

        Empty for a file address that names neither (its only image).
        """
        if self.digest:
            return self.digest
        if self.tag:
            return self.tag
        return DEFAULT_TAG if self.is_registry else ""

    @property
    def repository_key(self) -> str:
        """Identifies the repository (or file) regardless of tag and digest."""
        return self.path if self.is_registry else f"{self.transport}:{self.path}"

    @property
    def repository(self) -> str:
        """This address without tag and digest, as text."""
        return self.path if self.is_registry else f"{self.transport}:{self.path}"

    def with_tag(self, tag: str) -> Address:
        """The same repository with *tag* (checked) and no digest."""
        check_tag(tag, self.transport)
        return replace(self, tag=tag, digest="")

    def with_digest(self, digest: Digest | str) -> Address:
        """The same repository pinned to *digest* (tag dropped)."""
        return replace(self, tag="", digest=str(digest))

    def pinned(self, digest: Digest | str) -> str:
        """Where an image written here can be found again: ``REPO@DIGEST``.

        A transport that gives images new digests (docker-archive) is named
        by its address alone.
        """
        if not self.kind.stable_digests:
            return str(self)
        return str(self.with_digest(digest))

    def target_tag(self, source_tag: str = "") -> str:
        """The tag a write to this address uses ("" for none).

        The given tag; none when a digest is given; else the transport's
        default (``latest`` for a registry, as crane and skopeo), else
        *source_tag* (a layout or archive keeps the source's tag, as ``pull``).
        Raises :class:`UsageError` for an address that names a digest and a
        tag (a target is written by tag or by digest, not both).
        """
        if self.tag and self.digest:
            raise UsageError(f"{self}: a target names a tag or a digest, not both")
        if self.tag or self.digest:
            return self.tag
        return self.kind.default_tag or source_tag

    def __str__(self) -> str:
        s = self.path if self.is_registry else f"{self.transport}:{self.path}"
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def check_tag(tag: str, transport: str = REGISTRY) -> str:
    """*tag* if it is valid for *transport*, else :class:`InvalidReference`."""
    kind = TRANSPORTS[transport].tag_kind
    ok = valid_tag(tag) if kind == "tag" else valid_ref_name(tag)
    if not ok:
        raise InvalidReference(
            f"invalid tag {tag!r} (letters, digits, '_', '.', '-'; at most 128; "
            "not starting with '.' or '-')"
            if kind == "tag"
            else f"invalid ref.name {tag!r}"
        )
    return tag


def valid_ref_name(name: str) -> bool:
    """True for an ``org.opencontainers.image.ref.name`` luff writes or accepts after a path.

    The image-spec allows more than a tag (``1.0/stable``, ``v1+build``).
    """
    return (
        bool(name)
        and len(name) <= 255
        and name[0].isalnum()
        and all(c.isalnum() or c in "._-/+:" for c in name)
    )


def parse_address(text: str) -> Address:
    """Parse any address; a bare reference means a registry."""
    for t in FILE_TRANSPORTS:
        if text.startswith(t + ":"):
            return _parse_file(t, text[len(t) + 1 :], text)
    if text.startswith("docker://"):
        return _registry(text)
    head, sep, rest = text.partition(":")
    looks_like_path = "/" in rest or rest.startswith(".")
    if (sep and head in _OTHER_TRANSPORTS) or (
        sep
        and head.isalpha()
        and head != "localhost"
        and looks_like_path
        and not rest[:1].isdigit()
    ):
        # "transport:rest" with an unknown transport (e.g. "dir:/tmp/x").
        raise InvalidReference(
            f"unknown transport {head!r} in {text!r}; use docker://, oci:, "
            "oci-archive: or docker-archive:"
        )
    return _registry(text)


def _registry(text: str) -> Address:
    ref = Reference.parse(text, default_tag=False)
    return Address(REGISTRY, ref.name, ref.tag, ref.digest)


def _parse_file(transport: str, rest: str, orig: str) -> Address:
    if not rest:
        raise InvalidReference(f"invalid address {orig!r}: no path")
    digest = ""
    if TRANSPORTS[transport].digests and "@" in rest:
        rest, _, digest = rest.rpartition("@")
        try:
            Digest.parse(digest)
        except InvalidDigest as e:
            raise InvalidReference(f"invalid address {orig!r}: {e}") from None
    path, sep, tag = rest.partition(":")
    if not path:
        raise InvalidReference(f"invalid address {orig!r}: no path")
    if sep and not tag:
        raise InvalidReference(f"invalid address {orig!r}: empty tag after ':'")
    if tag and transport == DOCKER_ARCHIVE:
        # docker-archive:FILE:REPO[:TAG] names a repository; keep it whole.
        try:
            ref = Reference.parse(tag)
        except InvalidReference as e:
            raise InvalidReference(f"invalid address {orig!r}: {e}") from None
        return Address(transport, path, _short_name(ref, tag))
    if tag and not (valid_tag(tag) if transport == OCI_ARCHIVE else valid_ref_name(tag)):
        raise InvalidReference(f"invalid address {orig!r}: bad tag {tag!r}")
    return Address(transport, path, tag, digest)


def _short_name(ref: Reference, given: str) -> str:
    return given if ":" in given.rsplit("/", 1)[-1] else f"{given}:{ref.tag}"


def split_identifier(identifier: str) -> tuple[str, str]:
    """``(tag, digest)`` of a store identifier (one of them empty)."""
    return ("", identifier) if is_digest(identifier) else (identifier, "")
