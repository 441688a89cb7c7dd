"""Pure data model: digests, references, platforms, descriptors, manifests."""

from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.model.reference import Reference

__all__ = ["Descriptor", "Digest", "Manifest", "Platform", "Reference"]
