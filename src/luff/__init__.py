"""luff: assemble and ship multi-platform container images from images anywhere."""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Lazy access to submodules such as :mod:`luff.index` (``luff.index.create``)."""
    if name in ("index", "mutate"):
        import importlib

        return importlib.import_module(f"luff.{name}")
    raise AttributeError(f"module 'luff' has no attribute {name!r}")
