"""Tarballs, read safely and written reproducibly.

Reading never extracts: members are read in place (a compressed tarball is
first decompressed to an anonymous temporary file). Every member name is
checked when the archive is opened; absolute paths, ``..`` components, links
that point outside the archive and device files make the archive refused.
Writing fixes every member's metadata, so equal content gives equal bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import posixpath
import shutil
import tarfile
import tempfile
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from luff.errors import (
    InvalidManifest,
    LuffError,
    NotFound,
    UsageError,
)
from luff.model.manifest import MAX_MANIFEST
from luff.stores.base import Store
from luff.stores.files import open_regular

if TYPE_CHECKING:
    from luff.context import Context
    from luff.model.address import Address

CHUNK = 1 << 20
GZIP_LEVEL = 6
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZ2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"


class UnsafeArchive(LuffError):
    """A tar member would escape the archive (absolute path, ``..``, outside link)."""


# --- reading tarballs safely ---------------------------------------------------


def clean_member(name: str, archive: str) -> str:
    if name.startswith("/"):
        raise UnsafeArchive(f"member {name!r} has an absolute path", where=archive)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"member {name!r} contains '..'", where=archive)
    return "/".join(parts)


class _Slice(io.RawIOBase):
    """Reads *size* bytes at *offset* of a shared file descriptor (pread: thread-safe)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        super().__init__()
        self._fd, self._off, self._size, self._pos = fd, offset, size, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        left = self._size - self._pos
        if n is None or n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._off + self._pos)
        if not data:
            raise LuffError("archive ended early (truncated file?)")
        self._pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class SafeTar:
    """An index of a tarball's regular files, checked for unsafe members."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(path)
        if self.path.is_dir():
            raise UsageError("is a directory, not an archive", where=path)
        try:
            # Not blocking on a FIFO; a FIFO or device is refused (UnsafePath).
            raw = open_regular(self.path, where=path)
        except FileNotFoundError:
            raise NotFound("no such file", where=path) from None
        head = raw.read(6)
        raw.seek(0)
        if head.startswith(ZSTD_MAGIC):
            raw.close()
            raise UsageError("zstd-compressed archives are not supported", where=path)
        if head.startswith((GZIP_MAGIC, BZ2_MAGIC, XZ_MAGIC)):
            plain = tempfile.TemporaryFile()  # noqa: SIM115
            opener: Callable[[BinaryIO], BinaryIO] = {
                b"\x1f": _gz_open,
                b"B": _bz2_open,
                b"\xfd": _xz_open,
            }[head[:1]]
            try:
                with raw, opener(raw) as z:
                    shutil.copyfileobj(z, plain, CHUNK)
            except (OSError, EOFError, _zlib_error(), _lzma_error()) as e:
                plain.close()
                if isinstance(e, OSError) and e.errno is not None:
                    raise  # the disk, not the data (bad data raises OSErrors without errno)
                why = "cut short" if isinstance(e, EOFError) else f"corrupt ({e})"
                raise InvalidManifest(f"the compressed archive is {why}", where=path) from None
            plain.flush()
            plain.seek(0)
            raw = plain
        self._file = raw
        self._fd = raw.fileno()
        self._finalizer = weakref.finalize(self, raw.close)
        self.files: dict[str, tuple[int, int]] = {}
        self._links: dict[str, str] = {}
        try:
            with tarfile.open(fileobj=raw, mode="r:") as tf:
                for info in tf:
                    self._add(info)
        except tarfile.TarError as e:
            raise InvalidManifest(f"not a valid tar archive ({e})", where=path) from None

    def _add(self, info: tarfile.TarInfo) -> None:
        name = clean_member(info.name, self.name)
        if info.issym():
            if info.linkname.startswith("/"):
                raise UnsafeArchive(f"symlink {info.name!r} points outside", where=self.name)
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
            if target == ".." or target.startswith("../"):
                raise UnsafeArchive(f"symlink {info.name!r} points outside", where=self.name)
            self._links[name] = target
        elif info.islnk():
            self._links[name] = clean_member(info.linkname, self.name)
        elif info.isreg():
            self.files[name] = (info.offset_data, info.size)
        elif info.ischr() or info.isblk() or info.isfifo():
            raise UnsafeArchive(f"member {info.name!r} is a device or fifo", where=self.name)

    def _lookup(self, name: str) -> tuple[int, int] | None:
        name = name.strip("/")
        for _ in range(16):
            if name in self.files:
                return self.files[name]
            if name not in self._links:
                return None
            name = self._links[name]
        return None

    def has(self, name: str) -> bool:
        """True when *name* is a regular file (or a link to one) in the archive."""
        return self._lookup(name) is not None

    def size(self, name: str) -> int:
        found = self._lookup(name)
        if found is None:
            raise NotFound(f"no member {name}", where=self.name)
        return found[1]

    def open(self, name: str) -> BinaryIO:
        """A stream of member *name*."""
        found = self._lookup(name)
        if found is None:
            raise NotFound(f"no member {name}", where=self.name)
        return _Slice(self._fd, *found)  # type: ignore[return-value]

    def read(self, name: str, limit: int = MAX_MANIFEST) -> bytes:
        """The whole of a small member."""
        if self.size(name) > limit:
            raise InvalidManifest(f"member {name} is larger than {limit} bytes", where=self.name)
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        self._finalizer()


def _zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def _lzma_error() -> type[Exception]:
    import lzma

    return lzma.LZMAError


def _gz_open(f: BinaryIO) -> BinaryIO:
    return gzip.open(f)  # type: ignore[return-value]


def _bz2_open(f: BinaryIO) -> BinaryIO:
    import bz2

    return bz2.open(f)  # type: ignore[return-value]


def _xz_open(f: BinaryIO) -> BinaryIO:
    import lzma

    return lzma.open(f)  # type: ignore[return-value]


def write_tar(dest: Path, members: Iterable[tuple[str, Path | bytes]]) -> None:
    """Write a tarball of *members* (``arcname``, file or bytes) to *dest*, atomically.

    Metadata is fixed (mtime 0, root-owned, mode 0644/0755) so equal content
    gives equal archives.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    dirs: set[str] = set()
    try:
        with (
            os.fdopen(fd, "wb") as f,
            tarfile.open(fileobj=f, mode="w:", format=tarfile.PAX_FORMAT) as tf,
        ):
            for arcname, content in members:
                parent = posixpath.dirname(arcname)
                chain = []
                while parent and parent not in dirs:
                    chain.append(parent)
                    dirs.add(parent)
                    parent = posixpath.dirname(parent)
                for d in reversed(chain):
                    di = tarfile.TarInfo(d + "/")
                    di.type, di.mode, di.mtime = tarfile.DIRTYPE, 0o755, 0
                    tf.addfile(di)
                info = tarfile.TarInfo(arcname)
                info.mode, info.mtime = 0o644, 0
                if isinstance(content, bytes):
                    info.size = len(content)
                    tf.addfile(info, io.BytesIO(content))
                else:
                    info.size = content.stat().st_size
                    with open(content, "rb") as src:
                        tf.addfile(info, src)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def staging_dir(dest: Path) -> Path:
    if dest.is_dir():
        raise UsageError("is a directory, not an archive", where=dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))


class ArchiveStore(Store):
    """A store that is one archive file: opened to read, or staged and written on close."""

    path: Path

    @classmethod
    def open(cls, path: str | os.PathLike[str], write: bool = False) -> ArchiveStore:
        """Open *path* for reading, or (``write``) stage a new archive written on close."""
        raise NotImplementedError

    @classmethod
    def open_source(cls, address: Address, ctx: Context) -> Store:
        """The archive an address names, for reading."""
        return cls.open(address.path)

    @classmethod
    def open_target(cls, address: Address, ctx: Context, *, create: bool = True) -> Store:
        """A new archive at the address's path, written on close (replacing any there).

        Without *create* (to plan a write) it is empty and in memory: the
        archive will hold only what is written.
        """
        if not create:
            from luff.stores.memory import MemoryStore

            return MemoryStore(str(address))
        return cls.open(address.path, write=True)
