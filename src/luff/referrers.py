"""Referrers: what is attached to an image (signatures, SBOMs, attestations).

>>> import luff
>>> tree = luff.referrers.list("ghcr.io/acme/app:1", recursive=True)  # doctest: +SKIP
>>> [r.descriptor.artifact_type for r in tree.walk()]  # doctest: +SKIP
['application/spdx+json', 'application/vnd.dev.cosign.artifact.sig.v1+json']
>>> luff.referrers.attach("ghcr.io/acme/app:1", ["sbom.json"],
...                       artifact_type="application/spdx+json")  # doctest: +SKIP

To copy an image with what is attached to it: ``luff.ops.basic.copy(src,
dst, referrers=True)``, or a :class:`Referrers` policy.
"""

from __future__ import annotations

from luff.copy import Referrers
from luff.ops.referrers import Node, Referrer, artifact_manifest, attach
from luff.ops.referrers import list_referrers as list

__all__ = ["Node", "Referrer", "Referrers", "artifact_manifest", "attach", "list"]
