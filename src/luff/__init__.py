"""luff: assemble and ship multi-platform container images from images anywhere."""

from __future__ import annotations

__version__ = "0.1.0"
