"""Pure data model: digests, references, platforms, descriptors, manifests.

The submodules are imported when used (``luff.model.Descriptor`` imports
:mod:`luff.model.descriptor`), so that importing one of them does not load
them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from luff.model.descriptor import Descriptor
    from luff.model.digest import Digest
    from luff.model.manifest import Manifest
    from luff.model.platform import Platform
    from luff.model.reference import Reference

__all__ = ["Descriptor", "Digest", "Manifest", "Platform", "Reference"]

_WHERE = {
    "Descriptor": "luff.model.descriptor",
    "Digest": "luff.model.digest",
    "Manifest": "luff.model.manifest",
    "Platform": "luff.model.platform",
    "Reference": "luff.model.reference",
}


def __getattr__(name: str) -> object:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'luff.model' has no attribute {name!r}")
