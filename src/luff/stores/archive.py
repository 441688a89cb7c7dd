"""Image archives: telling them apart, and the names that used to live here.

The stores are :class:`~luff.stores.oci_archive.OciArchiveStore` and
:class:`~luff.stores.docker_archive.DockerArchiveStore`; reading and writing
tarballs safely is :mod:`luff.stores.tarball`.
"""

from __future__ import annotations

import os
from pathlib import Path

from luff.stores.base import Store
from luff.stores.docker_archive import DockerArchiveStore, normalize_repo_tag
from luff.stores.oci_archive import OciArchiveStore
from luff.stores.tarball import SafeTar, UnsafeArchive, write_tar

__all__ = [
    "DockerArchiveStore",
    "OciArchiveStore",
    "SafeTar",
    "UnsafeArchive",
    "is_docker_archive",
    "normalize_repo_tag",
    "open_archive",
    "write_tar",
]


def is_docker_archive(path: str | os.PathLike[str]) -> bool:
    """True when the tarball at *path* holds ``manifest.json`` (``docker save``)."""
    tar = SafeTar(path)
    try:
        return tar.has("manifest.json")
    finally:
        tar.close()


def open_archive(path: str | os.PathLike[str]) -> Store:
    """Open an archive for reading, telling a docker archive (``manifest.json``) from an OCI one."""
    if is_docker_archive(path):
        return DockerArchiveStore.open(Path(path))
    return OciArchiveStore.open(Path(path))
