"""``docker-archive``: a ``docker save`` tarball.

It reads the classic format (``manifest.json`` with Config/RepoTags/Layers
and uncompressed layers) and the Docker 25+ format (the same
``manifest.json`` plus ``index.json``/``oci-layout``/``blobs``). Its images
are presented as Docker v2 manifests with gzip layers: each uncompressed
layer is compressed once, deterministically (gzip level 6, mtime 0, no file
name), while the uncompressed bytes are checked against the config's
``diff_ids``. The synthesized digests are therefore stable for a given
archive and zlib. Writing decompresses gzip layers on the fly and writes the
Docker 25+ layout, which classic tools read through ``manifest.json``.
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
import tempfile
import threading
import weakref
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from luff.errors import (
    DigestMismatch,
    InvalidManifest,
    InvalidReference,
    LimitExceeded,
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
from luff.stores.layout import (
    INDEX_FILE,
    LAYOUT_FILE,
    blob_relpath,
    platform_of_config,
)

if TYPE_CHECKING:
    pass
from luff.stores.tarball import (
    CHUNK,
    GZIP_LEVEL,
    GZIP_MAGIC,
    ZSTD_MAGIC,
    ArchiveStore,
    SafeTar,
    clean_member,
    staging_dir,
    write_tar,
)

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


class DockerArchiveStore(ArchiveStore):
    """A ``docker save`` tarball (``docker-archive:FILE[:REPO:TAG]``)."""

    path: Path
    holds_indexes = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], write: bool = False) -> DockerArchiveStore:
        """Open *path* for reading, or (``write``) stage a new archive written on close."""
        if write:
            return _DockerArchiveWriter(Path(path))
        return _DockerArchiveReader(Path(path))

    def entries(self) -> list[Descriptor]:
        """One descriptor per image (ref.name annotation: its first RepoTag)."""
        raise NotImplementedError

    def index_annotations(self) -> dict[str, str]:
        """None: ``manifest.json`` has no annotations."""
        return {}


class _DockerArchiveReader(DockerArchiveStore):
    def __init__(self, path: Path, tar: SafeTar | None = None) -> None:
        self.path = path
        self.name = f"docker-archive:{path}"
        self.tar = tar or SafeTar(path)
        if not self.tar.has("manifest.json"):
            raise InvalidManifest("not a docker archive (no manifest.json)", where=self.name)
        try:
            items = jsonutil.loads(
                self.tar.read("manifest.json"), what="manifest.json", where=self.name
            )
            assert isinstance(items, list)
            self.images = [
                _DockerImage(
                    clean_member(str(it["Config"]), self.name),
                    [str(t) for t in (it.get("RepoTags") or [])],
                    [_Layer(clean_member(str(x), self.name)) for x in it["Layers"]],
                )
                for it in items
            ]
        except LimitExceeded as e:
            raise LimitExceeded(f"manifest.json: {e.message}", where=self.name) from None
        except (ValueError, KeyError, TypeError, AssertionError):
            raise InvalidManifest("manifest.json is malformed", where=self.name) from None
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
                raise DigestMismatch(
                    f"{img.config_member} does not match its name", where=self.name
                )
            try:
                cfg = jsonutil.loads(img.config, what="config")
                diff_ids = [Digest.parse(d) for d in cfg["rootfs"]["diff_ids"]]
            except LimitExceeded as e:
                raise LimitExceeded(f"{img.config_member}: {e.message}", where=self.name) from None
            except (ValueError, KeyError, TypeError, LuffError):
                raise InvalidManifest(f"{img.config_member}: bad config", where=self.name) from None
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
        if head.startswith(GZIP_MAGIC) or head.startswith(ZSTD_MAGIC):
            is_gz = head.startswith(GZIP_MAGIC)
            h = hashlib.sha256()
            unpacked = _Gunzip() if is_gz else None  # zstd: no decoder, diff_id unchecked
            plain = hashlib.sha256()
            try:
                with self.tar.open(layer.member) as f:
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                        if unpacked is not None:
                            for data in unpacked.feed(chunk):
                                plain.update(data)
                if unpacked is not None:
                    plain.update(unpacked.flush())
            except zlib.error as e:
                raise InvalidManifest(
                    f"{layer.member} is not valid gzip: {e}", where=self.name
                ) from None
            layer.digest = Digest("sha256", h.hexdigest())
            if claimed is not None and claimed != layer.digest:
                raise DigestMismatch(f"{layer.member} does not match its name", where=self.name)
            if unpacked is not None and plain.hexdigest() != diff_id.hex:
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
            raise NotFound("manifest unknown", where=f"{self.name}@{identifier}")
        want = normalize_repo_tag(identifier)
        for img in self.images:
            if want in {normalize_repo_tag(t) for t in img.repo_tags}:
                return self._build(img).with_(annotations={mt.REF_NAME: identifier})
        have = ", ".join(t for i in self.images for t in i.repo_tags) or "none"
        raise NotFound(f"no such RepoTag (has: {have})", where=f"{self.name}:{identifier}")

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
            raise NotFound(f"blob {desc.digest} is not in the archive", where=self.name)
        member, cache, _ = found
        if cache is not None:
            return open(cache, "rb")
        return self.tar.open(member)

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        raise UsageError("opened for reading", where=self.name)

    def push_manifest(self, manifest: Manifest, tag: str = "") -> Descriptor:
        raise UsageError("opened for reading", where=self.name)

    def tags(self) -> list[str]:
        return sorted({t for i in self.images for t in i.repo_tags})

    def close(self) -> None:
        self.tar.close()
        self._cache.cleanup()


class _Gunzip:
    """A (multi-member) gzip stream fed in chunks, decompressed in pieces of at most CHUNK.

    The bound matters: a crafted layer inflates a thousandfold, and a whole
    chunk's output at once would be a gigabyte in memory.
    """

    def __init__(self) -> None:
        self._d = zlib.decompressobj(47)

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """The decompressed bytes of *chunk*; raises ``zlib.error`` on bad data."""
        while chunk:
            data = self._d.decompress(chunk, CHUNK)
            if data:
                yield data
            if self._d.unconsumed_tail:
                chunk = self._d.unconsumed_tail
            elif self._d.eof:
                chunk = self._d.unused_data
                self._d = zlib.decompressobj(47)
            else:
                chunk = b""

    def flush(self) -> bytes:
        """What is left once every chunk was fed."""
        return self._d.flush()


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
        self._dir = staging_dir(path)
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
        raise NotFound("not written yet", where=f"{self.name}:{identifier}")

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
            raise UsageError("layers are stored uncompressed; cannot read back", where=self.name)
        try:
            return open(self._blob(desc.digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {desc.digest} unknown", where=self.name) from None

    def push_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        src = VerifyingReader(stream, desc.digest, desc.size)
        first = src.read(CHUNK)
        fd, tmp = tempfile.mkstemp(dir=self._dir)
        try:
            plain = hashlib.sha256()
            n = 0
            with os.fdopen(fd, "wb") as out:
                if _is_layer(desc.media_type) and first.startswith(ZSTD_MAGIC):
                    raise UsageError(
                        f"{self.name}: zstd layer {desc.digest} cannot go into a docker archive"
                    )
                if _is_layer(desc.media_type) and first.startswith(GZIP_MAGIC):
                    gz = _Gunzip()
                    chunk = first
                    while chunk:
                        for data in gz.feed(chunk):
                            plain.update(data)
                            n += len(data)
                            out.write(data)
                        chunk = src.read(CHUNK)
                    tail = gz.flush()
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
                raise NotFound(f"config {cfg.digest} was never written", where=self.name)
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
                plat = platform_of_config(self._blob(cfg.digest).read_bytes())
                index_entries.append(oci.descriptor(annotations=ann, platform=plat).to_dict())
        if not manifest_json:
            raise UsageError("nothing was written to the archive", where=self.name)
        members[LAYOUT_FILE] = b'{"imageLayoutVersion":"1.0.0"}'
        members[INDEX_FILE] = json.dumps(
            {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries}
        ).encode()
        members["manifest.json"] = json.dumps(manifest_json).encode()
        write_tar(self.path, sorted(members.items()))

    def abort(self) -> None:
        self._closed = True
        self._cleanup()
