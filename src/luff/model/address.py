"""Transport addresses: where an image lives.

``registry/repo:tag`` or ``docker://…`` name a registry;
``oci:PATH[:TAG]`` and ``oci:PATH@DIGEST`` an OCI layout;
``oci-archive:FILE[:TAG]`` a tar of a layout;
``docker-archive:FILE[:REPO:TAG]`` a ``docker save`` tarball.
"""

from __future__ import annotations

from dataclasses import dataclass

from luff.errors import InvalidDigest, InvalidReference
from luff.model.digest import Digest
from luff.model.reference import Reference, valid_tag

REGISTRY = "docker"
OCI = "oci"
OCI_ARCHIVE = "oci-archive"
DOCKER_ARCHIVE = "docker-archive"
TRANSPORTS = (OCI, OCI_ARCHIVE, DOCKER_ARCHIVE)
#: skopeo transports that luff does not support (no Docker Hub image has these names).
_OTHER_TRANSPORTS = ("containers-storage", "dir", "docker-daemon", "ostree", "sif", "tarball")


@dataclass(frozen=True)
class Address:
    """A parsed source or target address."""

    transport: str
    reference: Reference | None = None
    path: str = ""
    tag: str = ""
    digest: str = ""

    @property
    def is_registry(self) -> bool:
        return self.transport == REGISTRY

    @property
    def identifier(self) -> str:
        """Digest if given, else tag (may be empty for a file store)."""
        if self.reference is not None:
            return self.reference.identifier
        return self.digest or self.tag

    def __str__(self) -> str:
        if self.reference is not None:
            return str(self.reference)
        s = f"{self.transport}:{self.path}"
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def parse_address(text: str) -> Address:
    """Parse any address; a bare reference means a registry."""
    for t in TRANSPORTS:
        if text.startswith(t + ":"):
            return _parse_file(t, text[len(t) + 1 :], text)
    if text.startswith("docker://"):
        return Address(REGISTRY, Reference.parse(text))
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
    return Address(REGISTRY, Reference.parse(text))


def _parse_file(transport: str, rest: str, orig: str) -> Address:
    if not rest:
        raise InvalidReference(f"invalid address {orig!r}: no path")
    digest = ""
    if transport != DOCKER_ARCHIVE and "@" in rest:
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
        return Address(transport, None, path, _short_name(ref, tag))
    if tag and not valid_tag(tag) and transport == OCI_ARCHIVE:
        raise InvalidReference(f"invalid address {orig!r}: bad tag {tag!r}")
    if tag and not _valid_ref_name(tag):
        raise InvalidReference(f"invalid address {orig!r}: bad tag {tag!r}")
    return Address(transport, None, path, tag, digest)


def _short_name(ref: Reference, given: str) -> str:
    return given if ":" in given.rsplit("/", 1)[-1] else f"{given}:{ref.tag}"


def _valid_ref_name(tag: str) -> bool:
    # org.opencontainers.image.ref.name allows more than a tag (e.g. "1.0/x").
    return all(c.isalnum() or c in "._-/+" for c in tag) and tag[0].isalnum()
