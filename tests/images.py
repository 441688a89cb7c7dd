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
