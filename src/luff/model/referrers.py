"""Referrers (OCI 1.1): manifests whose ``subject`` points at another manifest.

Signatures, SBOMs and attestations are attached to an image this way. A
registry lists the referrers of a digest through the referrers API, or, where
it has none, through an index tagged ``sha256-<hex>`` (the referrers tag
schema); layouts and memory stores find them among the manifests they hold.
"""

from __future__ import annotations

from collections.abc import Sequence

from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.record import Record, setfields


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


#: cosign's tags for what it attaches to ``sha256:<hex>``: ``sha256-<hex>.sig`` and so on.
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")

#: The empty config of an OCI 1.1 artifact: ``{}`` as ``application/vnd.oci.empty.v1+json``.
EMPTY_CONFIG = b"{}"


def cosign_tags(digest: Digest) -> list[str]:
    """The tags cosign gives what it attaches to *digest* (signature, attestation, SBOM)."""
    return [fallback_tag(digest) + s for s in COSIGN_SUFFIXES]


class ReferrerList(Record, frozen=True):
    """The referrers of one subject, and how they were found.

    ``via`` is ``"referrers API"``, ``"tag schema"`` (the ``sha256-<hex>``
    index), ``"layout"`` or ``"memory"``.
    """

    subject: Digest
    descriptors: tuple[Descriptor, ...]
    via: str

    def __init__(
        self,
        subject: Digest,
        descriptors: tuple[Descriptor, ...] = (),
        via: str = "",
    ) -> None:
        setfields(
            self,
            subject=subject,
            descriptors=descriptors,
            via=via,
        )

    def of_types(self, types: Sequence[str]) -> ReferrerList:
        """Only the referrers of these artifact types (all of them when *types* is empty)."""
        if not types:
            return self
        keep = tuple(d for d in self.descriptors if d.artifact_type in types)
        return ReferrerList(self.subject, keep, self.via)


def index_of_referrers(subject: Digest, descriptors: Sequence[Descriptor]) -> Manifest:
    """The referrers index for *subject* (what the API answers, or the tag schema holds)."""
    from luff.model import mediatypes as mt

    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [d.to_dict() for d in descriptors],
    }
    return Manifest.from_dict(body)
