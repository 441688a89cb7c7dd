"""Image references and transport addresses.

The reference grammar follows the distribution project's: an optional
registry host (with port, IPv4, IPv6 in brackets or ``localhost``), a
repository of lowercase path components, then ``:tag``, ``@digest`` or both.
Docker Hub defaults apply: ``ubuntu`` is ``docker.io/library/ubuntu:latest``.
"""

from __future__ import annotations

import re

from luff.errors import InvalidDigest, InvalidReference
from luff.model.digest import Digest
from luff.record import Record, replace, setfields

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "docker.io", "registry.hub.docker.com"}


def _looks_like_domain(first: str) -> bool:
    return (
        "." in first
        or ":" in first
        or first == "localhost"
        or first.startswith("[")
        or first != first.lower()
    )


def valid_tag(tag: str) -> bool:
    """True when *tag* follows the tag grammar."""
    return bool(_TAG_RE.fullmatch(tag))


class Reference(Record, frozen=True):
    """A registry reference: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str
    digest: str

    def __init__(
        self,
        registry: str,
        repository: str,
        tag: str = "",
        digest: str = "",
    ) -> None:
        setfields(
            self,
            registry=registry,
            repository=repository,
            tag=tag,
            digest=digest,
        )

    @classmethod
    def parse(cls, text: str, *, default_tag: bool = True) -> Reference:
        """Parse *text*; a missing tag and digest means ``latest``.

        The error message names the part that is wrong.
        """
        orig = text
        if text.startswith("docker://"):
            text = text[len("docker://") :]
        if not text:
            raise InvalidReference("invalid reference: empty")
        if any(c.isspace() for c in text):
            raise InvalidReference(f"invalid reference {orig!r}: contains white space")
        name, at, digest = text.partition("@")
        if at:
            try:
                Digest.parse(digest)
            except InvalidDigest as e:
                raise InvalidReference(f"invalid reference {orig!r}: {e}") from None
        tag = ""
        # A tag follows the last ':' only if no '/' comes after it (else it's a port).
        colon = name.rfind(":")
        if colon > name.rfind("/") and colon != -1:
            name, tag = name[:colon], name[colon + 1 :]
            if not valid_tag(tag):
                raise InvalidReference(
                    f"invalid reference {orig!r}: bad tag {tag!r} "
                    "(letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
                )
        if not name:
            raise InvalidReference(f"invalid reference {orig!r}: no repository name")
        parts = name.split("/")
        if len(parts) > 1 and _looks_like_domain(parts[0]):
            registry, repo_parts = parts[0], parts[1:]
            if not _DOMAIN_RE.match(registry):
                raise InvalidReference(
                    f"invalid reference {orig!r}: bad registry host {registry!r}"
                )
            port = "" if registry.endswith("]") else registry.rpartition(":")[2]
            if ":" in registry and not registry.endswith("]") and not 0 < int(port) < 65536:
                raise InvalidReference(
                    f"invalid reference {orig!r}: bad port {port!r} in {registry!r}"
                )
            if registry.startswith("["):
                try:
                    import ipaddress

                    ipaddress.IPv6Address(registry[1 : registry.index("]")])
                except ValueError:
                    raise InvalidReference(
                        f"invalid reference {orig!r}: bad IPv6 address in {registry!r}"
                    ) from None
        else:
            registry, repo_parts = DOCKER_HUB, parts
        if registry.lower() in _HUB_ALIASES:
            registry = DOCKER_HUB
        for comp in repo_parts:
            if not comp:
                raise InvalidReference(f"invalid reference {orig!r}: empty path component")
            if not _PATH_COMPONENT_RE.match(comp):
                hint = " (must be lowercase)" if comp.lower() != comp else ""
                raise InvalidReference(
                    f"invalid reference {orig!r}: bad repository component {comp!r}{hint}"
                )
        if registry == DOCKER_HUB and len(repo_parts) == 1:
            repo_parts = ["library", *repo_parts]
        repository = "/".join(repo_parts)
        if len(registry) + 1 + len(repository) > 255:
            raise InvalidReference(f"invalid reference {orig!r}: name longer than 255 characters")
        if not tag and not digest and default_tag:
            tag = DEFAULT_TAG
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host that serves the API (``registry-1.docker.io`` for Docker Hub)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def identifier(self) -> str:
        """The digest if set, else the tag: what goes after ``/manifests/``."""
        return self.digest or self.tag

    def with_tag(self, tag: str) -> Reference:
        """This repository with *tag* and no digest."""
        if not valid_tag(tag):
            raise InvalidReference(f"invalid tag {tag!r}")
        return replace(self, tag=tag, digest="")

    def with_digest(self, digest: Digest | str) -> Reference:
        """This repository pinned to *digest* (tag dropped)."""
        return replace(self, tag="", digest=str(digest))

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def parse_host(text: str) -> str:
    """A registry host named alone (``localhost:5000``, ``ghcr.io``), checked.

    ``docker://``, ``http(s)://`` and a trailing ``/`` are dropped; Docker
    Hub's aliases become ``docker.io``.
    """
    host = text
    for prefix in ("docker://", "https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.rstrip("/")
    if not host or "/" in host:
        raise InvalidReference(f"{text}: name a registry host, e.g. ghcr.io or localhost:5000")
    if any(c.isspace() for c in host) or not _DOMAIN_RE.match(host):
        raise InvalidReference(f"invalid registry host {text!r}")
    return DOCKER_HUB if host.lower() in _HUB_ALIASES else host
