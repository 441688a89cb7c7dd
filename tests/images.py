"""Content helpers shared by the tests (beyond luff.testing's random images)."""

from __future__ import annotations

from collections.abc import Mapping

from luff.model import mediatypes as mt
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.stores.memory import MemoryStore
from luff.testing import Image, random_image


def index_with_attestation(platform: str | Mapping[str, str] = "linux/amd64") -> Image:
    """An index of one image and a BuildKit-style attestation for it.

    Its children are ``[image, attestation]``. A platform given as a mapping is
    written into the index entry exactly as given (not normalised).
    """
    store = MemoryStore("att")
    plat = Platform.parse(platform) if isinstance(platform, str) else Platform.from_dict(platform)
    img = random_image(plat, store=store)
    att = random_image("unknown/unknown", store=store)
    entry = img.descriptor.to_dict()
    if not isinstance(platform, str):
        entry["platform"] = dict(platform)
    att_entry = att.descriptor.with_(
        annotations={
            mt.REFERENCE_TYPE: "attestation-manifest",
            mt.REFERENCE_DIGEST: str(img.digest),
        }
    ).to_dict()
    m = Manifest.from_dict(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry, att_entry]}
    )
    store.push_manifest(m)
    return Image(m.descriptor(), m, store, [img, att])


# --- attached content shaped as the ecosystem's tools make it ------------------------------

COSIGN_PAYLOAD = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SPDX = "application/spdx+json"


def artifact(
    subject: Image | None,
    artifact_type: str,
    payload: bytes,
    layer_type: str,
    *,
    store: MemoryStore | None = None,
    layer_annotations: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Image:
    """An OCI 1.1 artifact (empty config, one layer) attached to *subject* (if any)."""
    import json

    from luff.model.descriptor import Descriptor

    store = store if store is not None else MemoryStore("artifacts")
    empty = store.add_blob(b"{}", mt.OCI_EMPTY)
    layer = store.add_blob(payload, layer_type)
    if layer_annotations:
        layer = layer.with_(annotations=dict(layer_annotations))
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty.to_dict(),
        "layers": [layer.to_dict()],
        "annotations": {
            "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
            **(annotations or {}),
        },
    }
    if subject is not None:
        s = subject.descriptor
        body["subject"] = Descriptor(s.media_type, s.digest, s.size).to_dict()
    m = Manifest.from_dict(json.loads(json.dumps(body)))
    store.push_manifest(m)
    return Image(m.descriptor(), m, store)


def cosign_signature(subject: Image, *, oci11: bool = False) -> Image:
    """A cosign signature of *subject*: the simple-signing payload with its signature annotation.

    The classic form (``oci11=False``) has no subject; cosign tags it
    ``sha256-<hex>.sig``. The OCI 1.1 form is a referrer.
    """
    import json

    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": "example.com/app"},
                "image": {"docker-manifest-digest": str(subject.digest)},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    ).encode()
    ann = {"dev.cosignproject.cosign/signature": "MEUCIQDexample", "dev.cosigned.signature": "x"}
    if oci11:
        return artifact(subject, COSIGN_SIG_TYPE, payload, COSIGN_PAYLOAD, layer_annotations=ann)
    store = MemoryStore("cosign")
    cfg = store.add_blob(
        b'{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}',
        mt.OCI_CONFIG,
    )
    layer = store.add_blob(payload, COSIGN_PAYLOAD).with_(annotations=ann)
    m = Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": cfg.to_dict(),
            "layers": [layer.to_dict()],
        }
    )
    store.push_manifest(m)
    return Image(m.descriptor(), m, store)


def sbom(subject: Image, size: int = 2000, *, seed: int = 0) -> Image:
    """An SPDX SBOM of about *size* bytes attached to *subject*."""
    import json

    pkgs = [{"name": f"pkg-{seed}-{i}", "versionInfo": "1.0"} for i in range(max(1, size // 40))]
    payload = json.dumps({"spdxVersion": "SPDX-2.3", "packages": pkgs}).encode()
    return artifact(subject, SPDX, payload, SPDX)
