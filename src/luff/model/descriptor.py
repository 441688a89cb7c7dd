"""OCI content descriptors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from luff.errors import InvalidManifest
from luff.model.digest import Digest
from luff.model.platform import Platform
from luff.record import Record, replace, setfields


class Descriptor(Record, frozen=True):
    """Points at content by media type, digest and size (OCI image-spec).

    The platform is kept as written (``arm64`` with ``variant: v8`` stays
    so); compare platforms with :meth:`Platform.matches` or
    :meth:`Platform.same`, which normalise.
    """

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...]
    annotations: Mapping[str, str]
    data: bytes | None
    artifact_type: str
    platform: Platform | None

    def __init__(
        self,
        media_type: str,
        digest: Digest,
        size: int,
        urls: tuple[str, ...] = (),
        annotations: Mapping[str, str] | None = None,
        data: bytes | None = None,
        artifact_type: str = "",
        platform: Platform | None = None,
    ) -> None:
        setfields(
            self,
            media_type=media_type,
            digest=digest,
            size=size,
            urls=urls,
            annotations={} if annotations is None else annotations,
            data=data,
            artifact_type=artifact_type,
            platform=platform,
        )

    @classmethod
    def for_bytes(cls, media_type: str, data: bytes, **kw: Any) -> Descriptor:
        """A descriptor for *data* (sha256)."""
        return cls(media_type, Digest.of(data), len(data), **kw)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Descriptor:
        """Parse the JSON form; raises :class:`InvalidManifest` when malformed."""
        if not isinstance(obj, Mapping):
            raise InvalidManifest(f"descriptor must be an object, got {type(obj).__name__}")
        mt, dg, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
        if not isinstance(mt, str) or not mt:
            raise InvalidManifest(f"descriptor has no mediaType: {json.dumps(obj)[:200]}")
        if not isinstance(dg, str):
            raise InvalidManifest(f"descriptor has no digest: {json.dumps(obj)[:200]}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifest(f"descriptor {dg} has no valid size")
        try:
            digest = Digest.parse(dg)
        except Exception as e:
            raise InvalidManifest(f"descriptor: {e}") from None
        urls = obj.get("urls") or []
        ann = obj.get("annotations") or {}
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise InvalidManifest(f"descriptor {dg}: urls must be a list of strings")
        if not isinstance(ann, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in ann.items()
        ):
            raise InvalidManifest(f"descriptor {dg}: annotations must map strings to strings")
        data = None
        if "data" in obj:
            import base64

            try:
                data = base64.b64decode(obj["data"], validate=True)
            except Exception:
                raise InvalidManifest(f"descriptor {dg}: data is not base64") from None
        plat = None
        if obj.get("platform") is not None:
            p = obj["platform"]
            if not isinstance(p, dict):
                raise InvalidManifest(f"descriptor {dg}: platform must be an object")
            plat = Platform.from_dict(p, normalize=False)
        at = obj.get("artifactType", "") or ""
        return cls(mt, digest, size, tuple(urls), dict(ann), data, at, plat)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, in the field order the OCI examples use."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.data is not None:
            import base64

            out["data"] = base64.b64encode(self.data).decode()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        return out

    def with_(self, **changes: Any) -> Descriptor:
        """A copy with *changes* applied."""
        return replace(self, **changes)

    def __hash__(self) -> int:
        return hash((self.media_type, self.digest, self.size))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Descriptor):
            return NotImplemented
        return self.to_dict() == other.to_dict()
