"""Media types of OCI and Docker manifests, indexes, configs and layers."""

from __future__ import annotations

from luff.errors import InvalidManifest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFESTS = INDEXES | IMAGE_MANIFESTS
SCHEMA1 = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})

#: The Accept header sent when fetching a manifest.
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])

#: Descriptor annotation that marks an attestation manifest (BuildKit).
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
REF_NAME = "org.opencontainers.image.ref.name"


def is_index(media_type: str) -> bool:
    """True for an OCI index or a Docker manifest list."""
    return media_type in INDEXES


def is_manifest(media_type: str) -> bool:
    """True for any manifest or index media type that luff handles."""
    return media_type in MANIFESTS


def is_image_manifest(media_type: str) -> bool:
    """True for an OCI or Docker v2 image manifest."""
    return media_type in IMAGE_MANIFESTS


def check_supported(media_type: str) -> None:
    """Refuse Docker schema 1 and anything else that is not a manifest."""
    if media_type in SCHEMA1:
        raise InvalidManifest(
            "Docker schema 1 manifests are deprecated and not supported; "
            "re-push the image with a current client to get schema 2 or OCI"
        )
    if media_type not in MANIFESTS:
        raise InvalidManifest(f"unsupported manifest media type {media_type!r}")
