"""Manifests and indexes, kept as their exact bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Any

from luff.errors import InvalidManifest
from luff.model import jsonutil
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.record import Record, setfields

MAX_MANIFEST = 4 * 1024 * 1024


def sniff_media_type(data: bytes, hint: str = "") -> str:
    """The media type of a manifest: its ``mediaType`` field, else *hint*, else by shape."""
    try:
        obj = jsonutil.loads(data, what="manifest")
    except (ValueError, UnicodeDecodeError):
        raise InvalidManifest("manifest is not valid JSON") from None
    if not isinstance(obj, dict):
        raise InvalidManifest("manifest is not a JSON object")
    m = obj.get("mediaType")
    if isinstance(m, str) and m:
        return m
    if obj.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1
    if hint and hint not in ("application/json", "text/plain"):
        return hint
    if "manifests" in obj:
        return mt.OCI_INDEX
    if "config" in obj and "layers" in obj:
        return mt.OCI_MANIFEST
    raise InvalidManifest("cannot tell the manifest's media type")


class Manifest(Record, frozen=True):
    """A manifest or index: its exact bytes plus the parsed view of them."""

    data: bytes
    media_type: str

    def __init__(
        self,
        data: bytes,
        media_type: str,
    ) -> None:
        setfields(
            self,
            data=data,
            media_type=media_type,
        )

    @classmethod
    def parse(cls, data: bytes, media_type: str = "") -> Manifest:
        """Parse *data*; refuses schema 1 and non-manifests."""
        if len(data) > MAX_MANIFEST:
            raise InvalidManifest(f"manifest is larger than {MAX_MANIFEST} bytes")
        kind = sniff_media_type(data, media_type)
        mt.check_supported(kind)
        m = cls(data, kind)
        m.validate()
        return m

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], media_type: str = "") -> Manifest:
        """Serialise *obj* (compact-ish, stable) and parse it."""
        data = json.dumps(obj, indent=2).encode()
        return cls.parse(data, media_type or str(obj.get("mediaType", "")))

    @cached_property
    def json(self) -> dict[str, Any]:
        """The parsed JSON object."""
        obj: dict[str, Any] = jsonutil.loads(self.data, what="manifest")
        return obj

    @cached_property
    def digest(self) -> Digest:
        """sha256 over the exact bytes."""
        return Digest.of(self.data)

    @property
    def size(self) -> int:
        """The size of the exact bytes."""
        return len(self.data)

    def descriptor(self, **kw: Any) -> Descriptor:
        """A descriptor pointing at these bytes."""
        return Descriptor(self.media_type, self.digest, self.size, **kw)

    @property
    def is_index(self) -> bool:
        """True for an OCI image index or a Docker manifest list."""
        return mt.is_index(self.media_type)

    def validate(self) -> None:
        """Check the structure that luff relies on."""
        obj = self.json
        if obj.get("schemaVersion") != 2:
            raise InvalidManifest(f"{self.media_type}: schemaVersion must be 2")
        if self.is_index:
            ms = obj.get("manifests")
            if not isinstance(ms, list):
                raise InvalidManifest("index has no 'manifests' list")
            _ = self.manifests
        else:
            if not isinstance(obj.get("config"), dict):
                raise InvalidManifest("image manifest has no 'config' descriptor")
            if not isinstance(obj.get("layers"), list):
                raise InvalidManifest("image manifest has no 'layers' list")
            _ = self.config, self.layers
        if obj.get("subject") is not None:
            _ = self.subject
        at = obj.get("artifactType")
        if at is not None and not isinstance(at, str):
            raise InvalidManifest("artifactType must be a string")

    @cached_property
    def manifests(self) -> list[Descriptor]:
        """Entries of an index (empty for an image manifest)."""
        if not self.is_index:
            return []
        return [Descriptor.from_dict(d) for d in self.json.get("manifests", [])]

    @cached_property
    def config(self) -> Descriptor:
        """The config descriptor of an image manifest."""
        if self.is_index:
            raise InvalidManifest("an index has no config")
        return Descriptor.from_dict(self.json["config"])

    @cached_property
    def layers(self) -> list[Descriptor]:
        """Layer descriptors of an image manifest (empty for an index)."""
        if self.is_index:
            return []
        return [Descriptor.from_dict(d) for d in self.json.get("layers", [])]

    @cached_property
    def subject(self) -> Descriptor | None:
        """The ``subject`` descriptor, if any."""
        s = self.json.get("subject")
        return Descriptor.from_dict(s) if s is not None else None

    @property
    def annotations(self) -> dict[str, str]:
        """The manifest's ``annotations`` (empty when it has none)."""
        a = self.json.get("annotations") or {}
        return dict(a)

    @property
    def artifact_type(self) -> str:
        """The ``artifactType`` field ("" when absent)."""
        at = self.json.get("artifactType")
        return at if isinstance(at, str) else ""

    def children(self) -> Iterator[Descriptor]:
        """Everything this manifest points at that must exist before it.

        The ``subject`` is not included: the spec lets it be absent.
        """
        if self.is_index:
            yield from self.manifests
        else:
            yield self.config
            yield from self.layers

    def blobs(self) -> list[Descriptor]:
        """Config and layers (image manifest only)."""
        return [] if self.is_index else [self.config, *self.layers]
