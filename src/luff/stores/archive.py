"""Image archives: ``oci-archive`` (a tar of an OCI layout) and ``docker-archive``.

Reading never extracts: members are read in place (a compressed tarball is
first decompressed to an anonymous temporary file). Every member name is
checked when the archive is opened; absolute paths, ``..`` components, links
that point outside the archive and device files make the archive refused.

Writing stages content in a temporary directory beside the target and
builds the tarball on :meth:`Store.close` (temporary name, then rename); an
existing archive at the path is replaced.

``docker-archive`` reads the classic ``docker save`` format (``manifest.json``
with Config/RepoTags/Layers and uncompressed layers) and the Docker 25+ format
(the same ``manifest.json`` plus ``index.json``/``oci-layout``/``blobs``).
Its images are presented as Docker v2 manifests with gzip layers: each
uncompressed layer is compressed once, deterministically (gzip level 6,
mtime 0, no file name), while the uncompressed bytes are checked against the
config's ``diff_ids``. The synthesized digests are therefore stable for a
given archive and zlib. Writing a docker-archive decompresses gzip layers on
the fly and writes the Docker 25+ layout, which classic tools read through
``manifest.json``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import threading
import weakref
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from luff.errors import (
    DigestMismatch,
    InvalidManifest,
    InvalidReference,
    LuffError,
    NotFound,
    UsageError,
)
from luff.model import jsonutil
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, VerifyingReader, is_digest
from luff.model.manifest import MAX_MANIFEST, Manifest
from luff.model.reference import Reference
from luff.pool import Pool
from luff.stores.base import Store
from luff.stores.layout import (
    INDEX_FILE,
    LAYOUT_FILE,
    LayoutStore,
    blob_relpath,
    find_entry,
    parse_index,
    platform_of_config,
)

CHUNK = 1 << 20
GZIP_LEVEL = 6
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BZ2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"


class UnsafeArchive(LuffError):
    """A tar member would escape the archive (absolute path, ``..``, outside link)."""


# --- reading tarballs safely ---------------------------------------------------


def _clean(name: str, archive: str) -> str:
    if name.startswith("/"):
        raise UnsafeArchive(f"{archive}: member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"{archive}: member {name!r} contains '..'")
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
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - kept open for the store's life
        except FileNotFoundError:
            raise NotFound(f"{path}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"{path}: is a directory, not an archive") from None
        head = raw.read(6)
        raw.seek(0)
        if head.startswith(_ZSTD_MAGIC):
            raw.close()
            raise UsageError(f"{path}: zstd-compressed archives are not supported")
        if head.startswith((_GZIP_MAGIC, _BZ2_MAGIC, _XZ_MAGIC)):
            plain = tempfile.TemporaryFile()  # noqa: SIM115
            opener: Callable[[BinaryIO], BinaryIO] = {
                b"\x1f": _gz_open,
                b"B": _bz2_open,
                b"\xfd": _xz_open,
            }[head[:1]]
            with raw, opener(raw) as z:
                shutil.copyfileobj(z, plain, CHUNK)
            plain.flush()
            plain.seek(0)
            raw = plain  # type: ignore[assignment]
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
            raise InvalidManifest(f"{path}: not a valid tar archive ({e})") from None

    def _add(self, info: tarfile.TarInfo) -> None:
        name = _clean(info.name, self.name)
        if info.issym():
            if info.linkname.startswith("/"):
                raise UnsafeArchive(f"{self.name}: symlink {info.name!r} points outside")
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
            if target == ".." or target.startswith("../"):
                raise UnsafeArchive(f"{self.name}: symlink {info.name!r} points outside")
            self._links[name] = target
        elif info.islnk():
            self._links[name] = _clean(info.linkname, self.name)
        elif info.isreg():
            self.files[name] = (info.offset_data, info.size)
        elif info.ischr() or info.isblk() or info.isfifo():
            raise UnsafeArchive(f"{self.name}: member {info.name!r} is a device or fifo")

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
            raise NotFound(f"{self.name}: no member {name}")
        return found[1]

    def open(self, name: str) -> BinaryIO:
        """A stream of member *name*."""
        found = self._lookup(name)
        if found is None:
            raise NotFound(f"{self.name}: no member {name}")
        return _Slice(self._fd, *found)  # type: ignore[return-value]

    def read(self, name: str, limit: int = MAX_MANIFEST) -> bytes:
        """The whole of a small member."""
        if self.size(name) > limit:
            raise InvalidManifest(f"{self.name}: member {name} is larger than {limit} bytes")
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        self._finalizer()


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


def _staging_dir(dest: Path) -> Path:
    if dest.is_dir():
        raise UsageError(f"{dest}: is a directory, not an archive")
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))


def open_archive(path: str | os.PathLike[str]) -> Store:
    """Open an archive for reading, telling a docker archive (``manifest.json``) from an OCI one."""
    tar = SafeTar(path)
    if tar.has("manifest.json"):
        return _DockerArchiveReader(Path(path), tar)
    return _OciArchiveReader(Path(path), tar)


# --- oci-archive ------------------------------------------------------------------


class OciArchiveStore(Store):
    """A tar of an OCI image layout (``oci-archive:FILE[:TAG]``)."""

    path: Path

    @classmethod
    def open(cls, path: str | os.PathLike[str], write: bool = False) -> OciArchiveStore:
        """Open *path* for reading, or (``write``) stage a new archive written on close."""
        if write:
            return _OciArchiveWriter(Path(path))
        return _OciArchiveReader(Path(path))

    def entries(self) -> list[Descriptor]:
        """The manifests listed in the archive's ``index.json``."""
        raise NotImplementedError


class _OciArchiveReader(OciArchiveStore):
    def __init__(self, path: Path, tar: SafeTar | None = None) -> None:
        self.path = path
        self.name = f"oci-archive:{path}"
        self.tar = tar or SafeTar(path)
        if not self.tar.has(LAYOUT_FILE) or not self.tar.has(INDEX_FILE):
            raise InvalidManifest(f"{self.name}: not an OCI layout archive (no oci-layout)")
        _, self._entries = parse_index(self.tar.read(INDEX_FILE), self.name)

    def entries(self) -> list[Descriptor]:
        return list(self._entries)

    def resolve(self, identifier: str) -> Descriptor:
        found = find_entry(self._entries, identifier, self.name)
        if found is not None:
            return found
        d = Digest.parse(identifier)
        rel = blob_relpath(d)
        if not self.tar.has(rel):
            raise NotFound(f"{self.name}@{identifier}: manifest unknown")
        data = self.tar.read(rel)
        m = Manifest.parse(data)
        if m.digest != d:
            raise DigestMismatch(f"{self.name}: blob {d} does not match its digest")
        return m.descriptor()

    def get_manifest(self, identifier: str) -> tuple[Descriptor, Manifest]:
        desc = self.resolve(identifier)
        m = self.fetch_manifest(desc)
        return m.descriptor(annotations=desc.annotations, platform=desc.platform), m

    def exists(self, desc: Descriptor) -> bool:
        rel = blob_relpath(desc.digest)
        return self.tar.has(rel) and self.tar.size(rel) == desc.size

    def _open(self, desc: Descriptor) -> BinaryIO:
        rel = blob_relpath(desc.digest)
        if not self.tar.has(rel):
            raise NotFound(f"{self.name}: blob {desc.digest} is not in the archive")
        return self.tar.open(rel)

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        raise UsageError(f"{self.name}: opened for reading")

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        raise UsageError(f"{self.name}: opened for reading")

    def tags(self) -> list[str]:
        return sorted({e.annotations.get(mt.REF_NAME, "") for e in self._entries} - {""})

    def close(self) -> None:
        self.tar.close()


class _OciArchiveWriter(OciArchiveStore):
    """Stages a layout beside the target; :meth:`close` tars it up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"oci-archive:{path}"
        self._dir = _staging_dir(path)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self.layout = LayoutStore.init(self._dir / "layout")
        self.layout.name = self.name
        self._closed = False

    def entries(self) -> list[Descriptor]:
        return self.layout.entries()

    def resolve(self, identifier: str) -> Descriptor:
        return self.layout.resolve(identifier)

    def get_manifest(self, identifier: str) -> tuple[Descriptor, Manifest]:
        return self.layout.get_manifest(identifier)

    def exists(self, desc: Descriptor) -> bool:
        return self.layout.exists(desc)

    def _open(self, desc: Descriptor) -> BinaryIO:
        return self.layout._open(desc)

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        self.layout.push_blob(desc, stream)

    def push_blob_unsized(self, media_type: str, stream: BinaryIO) -> Descriptor:
        return self.layout.push_blob_unsized(media_type, stream)

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        return self.layout.push_manifest(manifest, tag)

    def tag(self, desc: Descriptor, tag: str) -> None:
        self.layout.tag(desc, tag)

    def tags(self) -> list[str]:
        return self.layout.tags()

    def delete(self, identifier: str) -> None:
        self.layout.delete(identifier)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.layout.close()
            root = self.layout.path
            present, _ = self.layout.reachable()
            members: list[tuple[str, Path | bytes]] = [
                (LAYOUT_FILE, root / LAYOUT_FILE),
                (INDEX_FILE, root / INDEX_FILE),
            ]
            members += [(blob_relpath(d), root / blob_relpath(d)) for d in sorted(present)]
            write_tar(self.path, members)
        finally:
            self.layout.abort()  # lets go of the staging layout's lock
            self._cleanup()

    def abort(self) -> None:
        self._closed = True
        self.layout.abort()
        self._cleanup()


# --- docker-archive -----------------------------------------------------------------


def normalize_repo_tag(text: str) -> str:
    """``docker.io/library/app:latest`` for ``app``; other names are kept as given."""
    try:
        ref = Reference.parse(text)
    except InvalidReference:
        return text
    return f"{ref.name}:{ref.tag or 'latest'}"


def _short_repo_tag(text: str) -> str:
    """``app:1`` for ``docker.io/library/app:1`` (how ``docker save`` writes RepoTags)."""
    full = normalize_repo_tag(text)
    for prefix in ("docker.io/library/", "docker.io/"):
        if full.startswith(prefix):
            return full[len(prefix) :]
    return full


@dataclass
class _Layer:
    member: str
    digest: Digest | None = None
    size: int = 0
    media_type: str = ""
    cache: Path | None = None  # compressed copy, when the member was uncompressed


@dataclass
class _DockerImage:
    config_member: str
    repo_tags: list[str]
    layers: list[_Layer]
    config: bytes = b""
    config_desc: Descriptor | None = None
    manifest: Manifest | None = None
    entry: Descriptor | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _expected_digest(member: str) -> Digest | None:
    """The digest a member's name claims (``HEX.json``, ``blobs/sha256/HEX``), if any."""
    base = posixpath.basename(member)
    for cand in (f"sha256:{base.removesuffix('.json')}", f"sha256:{base}"):
        if is_digest(cand) and (member.startswith("blobs/sha256/") or base.endswith(".json")):
            return Digest.parse(cand)
    return None


class DockerArchiveStore(Store):
    """A ``docker save`` tarball (``docker-archive:FILE[:REPO:TAG]``)."""

    path: Path

    @classmethod
    def open(cls, path: str | os.PathLike[str], write: bool = False) -> DockerArchiveStore:
        """Open *path* for reading, or (``write``) stage a new archive written on close."""
        if write:
            return _DockerArchiveWriter(Path(path))
        return _DockerArchiveReader(Path(path))

    def entries(self) -> list[Descriptor]:
        """One descriptor per image (ref.name annotation: its first RepoTag)."""
        raise NotImplementedError


class _DockerArchiveReader(DockerArchiveStore):
    def __init__(self, path: Path, tar: SafeTar | None = None) -> None:
        self.path = path
        self.name = f"docker-archive:{path}"
        self.tar = tar or SafeTar(path)
        if not self.tar.has("manifest.json"):
            raise InvalidManifest(f"{self.name}: not a docker archive (no manifest.json)")
        try:
            items = jsonutil.loads(
                self.tar.read("manifest.json"), what="manifest.json", where=self.name
            )
            assert isinstance(items, list)
            self.images = [
                _DockerImage(
                    _clean(str(it["Config"]), self.name),
                    [str(t) for t in (it.get("RepoTags") or [])],
                    [_Layer(_clean(str(x), self.name)) for x in it["Layers"]],
                )
                for it in items
            ]
        except (ValueError, KeyError, TypeError, AssertionError):
            raise InvalidManifest(f"{self.name}: manifest.json is malformed") from None
        self._cache = tempfile.TemporaryDirectory(prefix="luff-docker-archive-")
        self._blobs: dict[Digest, tuple[str, Path | None, int]] = {}
        self._manifests: dict[Digest, Manifest] = {}
        self._lock = threading.Lock()

    # building the synthesized manifests ------------------------------------------------
    def _build(self, img: _DockerImage) -> Descriptor:
        with img.lock:
            if img.entry is not None:
                return img.entry
            img.config = self.tar.read(img.config_member, limit=64 * MAX_MANIFEST)
            want = _expected_digest(img.config_member)
            got = Digest.of(img.config)
            if want is not None and want != got:
                raise DigestMismatch(f"{self.name}: {img.config_member} does not match its name")
            try:
                cfg = jsonutil.loads(img.config, what="config")
                diff_ids = [Digest.parse(d) for d in cfg["rootfs"]["diff_ids"]]
            except (ValueError, KeyError, TypeError, LuffError):
                raise InvalidManifest(f"{self.name}: {img.config_member}: bad config") from None
            if len(diff_ids) != len(img.layers):
                raise InvalidManifest(
                    f"{self.name}: config has {len(diff_ids)} diff_ids for {len(img.layers)} layers"
                )
            jobs = min(len(img.layers), os.cpu_count() or 1) or 1
            with Pool(max_workers=jobs) as pool:
                list(pool.map(self._prepare_layer, img.layers, diff_ids))
            oci = any(layer.media_type == mt.OCI_LAYER_ZSTD for layer in img.layers)
            img.config_desc = Descriptor(
                mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG, got, len(img.config)
            )
            body = {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST,
                "config": img.config_desc.to_dict(),
                "layers": [
                    {"mediaType": x.media_type, "size": x.size, "digest": str(x.digest)}
                    for x in img.layers
                ],
            }
            m = Manifest.from_dict(body)
            ann = {mt.REF_NAME: img.repo_tags[0]} if img.repo_tags else {}
            entry = m.descriptor(annotations=ann, platform=platform_of_config(img.config))
            with self._lock:
                self._blobs[got] = (img.config_member, None, len(img.config))
                for x in img.layers:
                    assert x.digest is not None
                    self._blobs[x.digest] = (x.member, x.cache, x.size)
                self._manifests[m.digest] = m
            img.manifest, img.entry = m, entry
            return entry

    def _prepare_layer(self, layer: _Layer, diff_id: Digest) -> None:
        with self.tar.open(layer.member) as f:
            head = f.read(4)
        claimed = _expected_digest(layer.member)  # blobs/sha256/HEX names its content
        if head.startswith(_GZIP_MAGIC) or head.startswith(_ZSTD_MAGIC):
            is_gz = head.startswith(_GZIP_MAGIC)
            h = hashlib.sha256()
            unpacked = _Gunzip() if is_gz else None  # zstd: no decoder, diff_id unchecked
            with self.tar.open(layer.member) as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    if unpacked is not None:
                        unpacked.feed(chunk, self.name, layer.member)
            layer.digest = Digest("sha256", h.hexdigest())
            if claimed is not None and claimed != layer.digest:
                raise DigestMismatch(f"{self.name}: {layer.member} does not match its name")
            if unpacked is not None and unpacked.hexdigest() != diff_id.hex:
                raise DigestMismatch(
                    f"{self.name}: layer {layer.member} does not match diff_id {diff_id}"
                )
            layer.size = self.tar.size(layer.member)
            layer.media_type = mt.DOCKER_LAYER_GZIP if is_gz else mt.OCI_LAYER_ZSTD
            return
        # Uncompressed: check the diff_id while compressing deterministically.
        plain = hashlib.sha256()
        packed = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self._cache.name)
        with os.fdopen(fd, "wb") as out, self.tar.open(layer.member) as src:
            hashing = _HashingWriter(out, packed)
            with gzip.GzipFile(
                filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=hashing, mtime=0
            ) as gz:
                while chunk := src.read(CHUNK):
                    plain.update(chunk)
                    gz.write(chunk)
        if plain.hexdigest() != diff_id.hex or (claimed is not None and claimed != diff_id):
            os.unlink(tmp)
            raise DigestMismatch(
                f"{self.name}: layer {layer.member} does not match diff_id {diff_id}"
            )
        layer.digest = Digest("sha256", packed.hexdigest())
        layer.size = hashing.count
        layer.media_type = mt.DOCKER_LAYER_GZIP
        layer.cache = Path(tmp)

    # Store ------------------------------------------------------------------------------
    def entries(self) -> list[Descriptor]:
        return [self._build(img) for img in self.images]

    def resolve(self, identifier: str) -> Descriptor:
        if not identifier:
            if len(self.images) != 1:
                names = ", ".join(t for i in self.images for t in i.repo_tags) or "untagged"
                raise UsageError(
                    f"{self.name} holds {len(self.images)} images ({names}); "
                    "name one with :REPO:TAG"
                )
            return self._build(self.images[0])
        if is_digest(identifier):
            d = Digest.parse(identifier)
            for img in self.images:
                e = self._build(img)
                if e.digest == d:
                    return e
            raise NotFound(f"{self.name}@{identifier}: manifest unknown")
        want = normalize_repo_tag(identifier)
        for img in self.images:
            if want in {normalize_repo_tag(t) for t in img.repo_tags}:
                return self._build(img).with_(annotations={mt.REF_NAME: identifier})
        have = ", ".join(t for i in self.images for t in i.repo_tags) or "none"
        raise NotFound(f"{self.name}:{identifier}: no such RepoTag (has: {have})")

    def get_manifest(self, identifier: str) -> tuple[Descriptor, Manifest]:
        desc = self.resolve(identifier)
        return desc, self._manifests[desc.digest]

    def _known(self, digest: Digest) -> bool:
        with self._lock:
            if digest in self._blobs or digest in self._manifests:
                return True
        self.entries()  # builds every image's manifest and blob table
        with self._lock:
            return digest in self._blobs or digest in self._manifests

    def exists(self, desc: Descriptor) -> bool:
        return self._known(desc.digest)

    def _open(self, desc: Descriptor) -> BinaryIO:
        self._known(desc.digest)
        with self._lock:
            if desc.digest in self._manifests:
                return io.BytesIO(self._manifests[desc.digest].data)
            found = self._blobs.get(desc.digest)
        if found is None:
            raise NotFound(f"{self.name}: blob {desc.digest} is not in the archive")
        member, cache, _ = found
        if cache is not None:
            return open(cache, "rb")
        return self.tar.open(member)

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        raise UsageError(f"{self.name}: opened for reading")

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        raise UsageError(f"{self.name}: opened for reading")

    def tags(self) -> list[str]:
        return sorted({t for i in self.images for t in i.repo_tags})

    def close(self) -> None:
        self.tar.close()
        self._cache.cleanup()


class _Gunzip:
    """sha256 of the decompressed bytes of a (multi-member) gzip stream fed in chunks."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(47)
        self._h = hashlib.sha256()

    def feed(self, chunk: bytes, archive: str, member: str) -> None:
        try:
            while chunk:
                self._h.update(self._d.decompress(chunk))
                chunk = b""
                if self._d.eof:
                    chunk = self._d.unused_data
                    self._d = zlib.decompressobj(47)
        except zlib.error as e:
            raise InvalidManifest(f"{archive}: {member} is not valid gzip: {e}") from None

    def hexdigest(self) -> str:
        self._h.update(self._d.flush())
        return self._h.hexdigest()


class _HashingWriter:
    def __init__(self, out: BinaryIO, h: Any) -> None:
        self._out, self._h, self.count = out, h, 0

    def write(self, data: bytes) -> int:
        self._h.update(data)
        self.count += len(data)
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()


def _is_layer(media_type: str) -> bool:
    return ".layer." in media_type or "rootfs" in media_type


class _DockerArchiveWriter(DockerArchiveStore):
    """Collects single-platform images; :meth:`close` writes the tarball."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"docker-archive:{path}"
        self._dir = _staging_dir(path)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, True)
        (self._dir / "blobs" / "sha256").mkdir(parents=True)
        self._diff: dict[Digest, tuple[Digest, int]] = {}  # compressed → (diff_id, size)
        self._images: dict[Digest, tuple[Manifest, list[str]]] = {}
        self._manifests: dict[Digest, Manifest] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _blob(self, digest: Digest) -> Path:
        return self._dir / blob_relpath(digest)

    def entries(self) -> list[Descriptor]:
        with self._lock:
            return [m.descriptor() for m, _ in self._images.values()]

    def resolve(self, identifier: str) -> Descriptor:
        with self._lock:
            images = list(self._images.values())
        want = normalize_repo_tag(identifier) if identifier else ""
        for m, tags in images:
            if identifier == str(m.digest) or want in tags or (not want and len(images) == 1):
                return m.descriptor()
        raise NotFound(f"{self.name}:{identifier}: not written yet")

    def exists(self, desc: Descriptor) -> bool:
        with self._lock:
            if desc.digest in self._diff or desc.digest in self._manifests:
                return True
        return self._blob(desc.digest).is_file()

    def _open(self, desc: Descriptor) -> BinaryIO:
        with self._lock:
            if desc.digest in self._manifests:
                return io.BytesIO(self._manifests[desc.digest].data)
        if desc.digest in self._diff:
            raise UsageError(f"{self.name}: layers are stored uncompressed; cannot read back")
        try:
            return open(self._blob(desc.digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"{self.name}: blob {desc.digest} unknown") from None

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        src = VerifyingReader(stream, desc.digest, desc.size)
        first = src.read(CHUNK)
        fd, tmp = tempfile.mkstemp(dir=self._dir)
        try:
            plain = hashlib.sha256()
            n = 0
            with os.fdopen(fd, "wb") as out:
                if _is_layer(desc.media_type) and first.startswith(_ZSTD_MAGIC):
                    raise UsageError(
                        f"{self.name}: zstd layer {desc.digest} cannot go into a docker archive"
                    )
                if _is_layer(desc.media_type) and first.startswith(_GZIP_MAGIC):
                    d = zlib.decompressobj(47)
                    chunk = first
                    while chunk:
                        while chunk:
                            data = d.decompress(chunk)
                            plain.update(data)
                            n += len(data)
                            out.write(data)
                            if d.eof:
                                chunk = d.unused_data
                                d = zlib.decompressobj(47)
                            else:
                                chunk = b""
                        chunk = src.read(CHUNK)
                    tail = d.flush()
                    plain.update(tail)
                    n += len(tail)
                    out.write(tail)
                    diff_id = Digest("sha256", plain.hexdigest())
                else:
                    chunk = first
                    while chunk:
                        out.write(chunk)
                        chunk = src.read(CHUNK)
                    diff_id = desc.digest
            os.replace(tmp, self._blob(diff_id))
        except zlib.error as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise InvalidManifest(
                f"{self.name}: layer {desc.digest} is not valid gzip: {e}"
            ) from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if diff_id != desc.digest:
            with self._lock:
                self._diff[desc.digest] = (diff_id, n)

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        if manifest.is_index:
            raise UsageError(
                f"{self.name}: a docker archive holds single-platform images, not an index; "
                "choose one image with --platform"
            )
        with self._lock:
            self._manifests[manifest.digest] = manifest
            _, tags = self._images.setdefault(manifest.digest, (manifest, []))
            if tag:
                name = normalize_repo_tag(tag)
                for _, other in self._images.values():
                    if name in other:
                        other.remove(name)
                tags.append(name)
        return manifest.descriptor()

    def tags(self) -> list[str]:
        with self._lock:
            return sorted({t for _, ts in self._images.values() for t in ts})

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._write()
        finally:
            self._cleanup()

    def _write(self) -> None:
        members: dict[str, Path | bytes] = {}
        manifest_json: list[dict[str, Any]] = []
        index_entries: list[dict[str, Any]] = []
        for m, tags in self._images.values():
            cfg = m.config
            if not self._blob(cfg.digest).is_file():
                raise NotFound(f"{self.name}: config {cfg.digest} was never written")
            cfg_rel = blob_relpath(cfg.digest)
            members[cfg_rel] = self._blob(cfg.digest)
            layer_rels: list[str] = []
            oci_layers: list[dict[str, Any]] = []
            for layer in m.layers:
                diff_id, size = self._diff.get(layer.digest, (layer.digest, layer.size))
                if not self._blob(diff_id).is_file():
                    raise NotFound(
                        f"{self.name}: layer {layer.digest} was never written "
                        "(non-distributable layers cannot go into a docker archive)"
                    )
                rel = blob_relpath(diff_id)
                members[rel] = self._blob(diff_id)
                layer_rels.append(rel)
                oci_layers.append({"mediaType": mt.OCI_LAYER, "digest": str(diff_id), "size": size})
            oci = Manifest.from_dict(
                {
                    "schemaVersion": 2,
                    "mediaType": mt.OCI_MANIFEST,
                    "config": {
                        "mediaType": mt.OCI_CONFIG,
                        "digest": str(cfg.digest),
                        "size": cfg.size,
                    },
                    "layers": oci_layers,
                }
            )
            members[blob_relpath(oci.digest)] = oci.data
            short = [_short_repo_tag(t) for t in tags]
            manifest_json.append(
                {"Config": cfg_rel, "RepoTags": short or None, "Layers": layer_rels}
            )
            for full, s in zip(tags, short, strict=True) if tags else [("", "")]:
                ann = (
                    {"io.containerd.image.name": full, mt.REF_NAME: s.rsplit(":", 1)[-1]}
                    if full
                    else {}
                )
                index_entries.append(oci.descriptor(annotations=ann).to_dict())
        if not manifest_json:
            raise UsageError(f"{self.name}: nothing was written to the archive")
        members[LAYOUT_FILE] = b'{"imageLayoutVersion":"1.0.0"}'
        members[INDEX_FILE] = json.dumps(
            {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries}
        ).encode()
        members["manifest.json"] = json.dumps(manifest_json).encode()
        write_tar(self.path, sorted(members.items()))

    def abort(self) -> None:
        self._closed = True
        self._cleanup()
