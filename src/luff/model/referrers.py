"""Referrers (OCI 1.1): manifests whose ``subject`` points at another manifest.

Signatures, SBOMs and attestations are attached to an image this way. A
registry lists the referrers of a digest through the referrers API, or, where
it has none, through an index tagged ``sha256-<hex>`` (the referrers tag
schema); layouts and memory stores find them among the manifests they hold.
"""

from __future__ import annotations

from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest


def artifact_type(m: Manifest) -> str:
    """A referrer's artifact type: ``artifactType``, else its config's media type."""
    if m.artifact_type:
        return m.artifact_type
    if not m.is_index:
        return m.config.media_type
    return ""


def referrer_descriptor(m: Manifest) -> Descriptor:
    """The descriptor that lists *m* among its subject's referrers (image-spec rules)."""
    return Descriptor(
        m.media_type,
        m.digest,
        m.size,
        annotations=m.annotations,
        artifact_type=artifact_type(m),
    )


def fallback_tag(digest: Digest) -> str:
    """The referrers tag schema's tag for *digest*: ``<alg>-<hex>``."""
    return f"{digest.algorithm}-{digest.hex}"
