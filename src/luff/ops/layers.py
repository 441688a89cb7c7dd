"""Layers made from local files: a tar, a gzipped tar, or a directory packed deterministically.

:func:`pack` turns a path into a gzipped layer blob in a temporary
directory, computing its digest and its ``diff_id`` (the digest of the
uncompressed tar) on the way, in one pass. A given tar is kept byte for
byte (its ``diff_id`` is its own digest) once every member has been checked;
a directory is packed in a fixed way, so the same files give the same
digests on any machine: entries sorted by name, uid and gid 0 without user or
group names, every mtime ``SOURCE_DATE_EPOCH`` (else 0), PAX format. The gzip
stream is deterministic too: mtime 0, no file name, level
:data:`GZIP_LEVEL`.

A :class:`LayerStore` serves the packed blobs to the copy engine, read-only.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import weakref
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from luff.errors import NotFound, UsageError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.stores.base import Store

#: gzip level of packed layers (fixed: the level changes the bytes, so the digest).
GZIP_LEVEL = 6
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Layer:
    """A packed layer: its gzipped blob on disk, what it is made from."""

    path: Path
    digest: Digest
    size: int
    diff_id: Digest
    #: What the layer was made from, for the config's history (a file or directory name).
    name: str

    def descriptor(self, media_type: str = mt.OCI_LAYER_GZIP) -> Descriptor:
        """The layer's descriptor, with the media type of the image it goes into."""
        return Descriptor(media_type, self.digest, self.size)


def layer_media_type(manifest_media_type: str) -> str:
    """The gzip layer media type that matches an image manifest's kind (OCI or Docker)."""
    if manifest_media_type == mt.DOCKER_MANIFEST:
        return mt.DOCKER_LAYER_GZIP
    return mt.OCI_LAYER_GZIP


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH`` as an integer, None when it is not set."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(
            f"SOURCE_DATE_EPOCH={text!r} is not a whole number of seconds since 1970"
        ) from None
    if value < 0:
        raise UsageError(f"SOURCE_DATE_EPOCH={text!r} is before 1970")
    return value


class _Hashing:
    """A write-only file object that hashes and counts what goes through it."""

    def __init__(self, sink: BinaryIO | gzip.GzipFile) -> None:
        self._sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        self._sink.flush()

    @property
    def digest(self) -> Digest:
        return Digest("sha256", self.hash.hexdigest())


class _Tee:
    """A read-only file object that copies every byte read to *sink*."""

    def __init__(self, source: BinaryIO | gzip.GzipFile, sink: _Hashing) -> None:
        self._source = source
        self._sink = sink

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n)
        if data:
            self._sink.write(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


class LayerStore(Store):
    """Read-only: the layers packed for one operation, in a temporary directory.

    :meth:`pack` adds one (the same path twice is packed once); :meth:`close`
    deletes them all.
    """

    def __init__(self, name: str = "layers") -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="luff-layers-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.dir, ignore_errors=True)
        self.layers: dict[Digest, Layer] = {}
        self._by_path: dict[str, Layer] = {}

    def pack(self, path: str | os.PathLike[str], *, mtime: int | None = None) -> Layer:
        """Pack *path* (a directory, a ``.tar`` or a gzipped tar) into a layer held here.

        *mtime* is the time given to every entry of a directory (default:
        ``SOURCE_DATE_EPOCH``, else 0). Refuses a file that is not a tar and
        a tar with absolute or ``..`` member names.
        """
        p = Path(path)
        key = str(p.resolve())
        if key in self._by_path:
            return self._by_path[key]
        if not p.exists():
            raise UsageError(f"--append {path}: no such file or directory")
        if mtime is None:
            mtime = source_date_epoch() or 0
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                zipped = _Hashing(f)
                with gzip.GzipFile(
                    filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=zipped, mtime=0
                ) as gz:
                    raw = _Hashing(gz)
                    if p.is_dir():
                        _pack_dir(p, raw, mtime)
                    else:
                        _copy_tar(p, raw, str(path))
            layer = Layer(
                self.dir / zipped.digest.hex, zipped.digest, zipped.size, raw.digest, p.name
            )
            os.replace(tmp, layer.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.layers[layer.digest] = layer
        self._by_path[key] = layer
        return layer

    # --- Store -------------------------------------------------------------------------
    def resolve(self, identifier: str) -> Descriptor:
        raise NotFound("packed layers have no manifests", where=f"{self.name}:{identifier}")

    def exists(self, desc: Descriptor) -> bool:
        return desc.digest in self.layers

    def _open(self, desc: Descriptor) -> BinaryIO:
        layer = self.layers.get(desc.digest)
        if layer is None:
            raise NotFound("blob unknown", where=self.name, digest=desc.digest)
        return open(layer.path, "rb")

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        raise UsageError(f"{self.name} is read-only")

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        raise UsageError(f"{self.name} is read-only")

    def close(self) -> None:
        """Delete the packed layers."""
        self._finalizer()
        self.layers = {}
        self._by_path = {}


def _walk(root: Path) -> Iterator[tuple[Path, str]]:
    """``(path, name in the layer)`` of everything under *root*: depth first, sorted by name."""
    with os.scandir(root) as it:
        names = sorted(e.name for e in it)
    for n in names:
        path = root / n
        yield path, n
        if path.is_dir() and not path.is_symlink():
            yield from ((p, f"{n}/{a}") for p, a in _walk(path))


def _pack_dir(root: Path, sink: _Hashing, mtime: int) -> None:
    """Write a deterministic tar of what is under *root* (not *root* itself) to *sink*."""
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for path, arcname in _walk(root):
            info = tar.gettarinfo(str(path), arcname)
            if info is None:  # a socket: nothing a layer can hold
                continue
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = mtime
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def _check_member(m: tarfile.TarInfo, label: str) -> None:
    for what, name in (("member", m.name), ("hard link target", m.linkname if m.islnk() else "")):
        if not name:
            continue
        if name.startswith("/"):
            raise UsageError(f"--append {label}: {what} {name!r} is an absolute path")
        if ".." in name.split("/"):
            raise UsageError(f"--append {label}: {what} {name!r} goes up with '..'")


def _copy_tar(path: Path, sink: _Hashing, label: str) -> None:
    """Copy the tar at *path* (gunzipped if need be) to *sink*, checking every member."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head.startswith(_ZSTD_MAGIC):
            raise UsageError(f"--append {label}: zstd is not supported; give a .tar or .tar.gz")
        gz = head.startswith(_GZIP_MAGIC)
        tee = _Tee(gzip.GzipFile(fileobj=f) if gz else f, sink)
        try:
            with tarfile.open(fileobj=tee, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    _check_member(member, label)
                end = tar.offset
            tee.drain()  # the end-of-archive blocks are part of the layer
        except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError) as e:
            why = str(e) or type(e).__name__
            raise UsageError(f"--append {label}: not a tar file ({why})") from None
        if sink.size < end:
            raise UsageError(f"--append {label}: the tar file is cut short")
