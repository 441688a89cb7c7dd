"""Where the embedded registry keeps content: a directory tree or memory.

Both storages hold blobs once (content-addressed) and, per repository, links
to the blobs and manifests pushed or mounted there, tags, and an index of
referrers. Uploads are streamed into an :class:`Upload` that hashes as it
writes, so finishing an upload never reads the blob again.

Directory layout of :class:`DiskStorage`::

    blobs/<alg>/<hex[:2]>/<hex>                  content
    uploads/<uuid>                               uploads in progress
    repositories/<name>/_layers/<alg>/<hex>      blob links (empty files)
    repositories/<name>/_manifests/<alg>/<hex>   manifest links (the media type)
    repositories/<name>/_tags/<tag>              tag -> digest
    repositories/<name>/_referrers/<alg>-<hex>/<alg>-<hex>   referrer descriptor JSON

All methods are synchronous and meant to be called from one thread (the
server's event loop); an :class:`Upload` may be read or written from a worker
thread while nothing else touches it.

An upload on disk holds no open file between requests: each request opens
the file, appends, and :meth:`Upload.release` closes it, so abandoned
uploads cost a file on disk and a little memory, never a file descriptor.

Deletes and start-up: a manifest delete removes the tags pointing at the
manifest first, then the manifest, then its referrer entry, so a crash at
any point leaves no tag that answers 404; :meth:`DiskStorage.repair` (run at
start-up) removes what an interrupted delete (or an older luff) left
half-done: tags pointing at missing manifests, referrer entries of missing
manifests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Container, Iterator
from pathlib import Path
from typing import Any

from luff.errors import LuffError
from luff.model.digest import Digest

CHUNK = 1 << 20


class Upload(ABC):
    """A blob upload in progress: bytes so far, their sha256, and its repository."""

    def __init__(self, repository: str) -> None:
        self.id = str(uuid.uuid4())
        self.repository = repository
        self.offset = 0
        self.hasher = hashlib.sha256()
        self.touched = time.monotonic()

    def write(self, data: bytes) -> None:
        """Append *data* (call :meth:`release` when the request is over)."""
        self._write(data)
        self.hasher.update(data)
        self.offset += len(data)
        self.touch()

    def touch(self) -> None:
        """Note that a client used the upload now (it expires after a while idle)."""
        self.touched = time.monotonic()

    @abstractmethod
    def _write(self, data: bytes) -> None: ...

    def release(self) -> None:
        """Close what :meth:`write` opened; the upload goes on at the next write."""

    @abstractmethod
    def read_all(self) -> Iterator[bytes]:
        """The bytes written so far (to hash with another algorithm)."""

    def matches(self, digest: Digest) -> bool:
        """True when the bytes so far have *digest*."""
        if digest.algorithm == "sha256":
            return self.hasher.hexdigest() == digest.hex
        h = digest.hasher()
        for chunk in self.read_all():
            h.update(chunk)
        return h.hexdigest() == digest.hex

    @abstractmethod
    def discard(self) -> None:
        """Drop the bytes."""


class Storage(ABC):
    """Blobs, uploads, manifests, tags and referrers of every repository."""

    def __init__(self) -> None:
        self.uploads: dict[str, Upload] = {}

    # --- blobs -----------------------------------------------------------
    @abstractmethod
    def blob_size(self, digest: Digest) -> int | None:
        """Size of a stored blob, or None."""

    @abstractmethod
    def blob_path(self, digest: Digest) -> Path | None:
        """The file of a blob, for storages that keep files."""

    @abstractmethod
    def read_blob(self, digest: Digest, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Chunks of bytes ``start`` to ``end`` (exclusive) of a blob."""

    def blob_bytes(self, digest: Digest) -> bytes:
        """A whole (small) blob."""
        return b"".join(self.read_blob(digest))

    @abstractmethod
    def put_small_blob(self, digest: Digest, data: bytes) -> None:
        """Store a small blob (a manifest) whose digest is already checked."""

    # --- uploads ---------------------------------------------------------
    def new_upload(self, repository: str) -> Upload:
        """Start an upload into *repository*."""
        up = self._new_upload(repository)
        self.uploads[up.id] = up
        return up

    @abstractmethod
    def _new_upload(self, repository: str) -> Upload: ...

    def commit_upload(self, up: Upload, digest: Digest) -> None:
        """Store an upload (already checked against *digest*) as a blob and link it."""
        self.uploads.pop(up.id, None)
        if self.blob_size(digest) is None:
            self._commit(up, digest)
        else:
            up.discard()
        self.link_blob(up.repository, digest)

    @abstractmethod
    def _commit(self, up: Upload, digest: Digest) -> None: ...

    def cancel_upload(self, up: Upload) -> None:
        """Drop an upload."""
        self.uploads.pop(up.id, None)
        up.discard()

    def expire_uploads(self, idle: float, busy: Container[str] = ()) -> int:
        """Drop the uploads untouched for more than *idle* seconds (except *busy* ids).

        Returns how many were dropped.
        """
        now = time.monotonic()
        stale = [
            up for up in self.uploads.values() if now - up.touched > idle and up.id not in busy
        ]
        for up in stale:
            self.cancel_upload(up)
        return len(stale)

    # --- repositories ----------------------------------------------------
    @abstractmethod
    def link_blob(self, repo: str, digest: Digest) -> None:
        """Make a blob visible in *repo*."""

    @abstractmethod
    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        """Hide a blob from *repo*; True when it was there."""

    @abstractmethod
    def has_blob(self, repo: str, digest: Digest) -> bool:
        """True when *repo* holds the blob."""

    @abstractmethod
    def link_manifest(self, repo: str, digest: Digest, media_type: str) -> None:
        """Record a manifest (its bytes already stored as a blob) in *repo*."""

    @abstractmethod
    def manifest_type(self, repo: str, digest: Digest) -> str | None:
        """The media type of a manifest of *repo*, or None when absent."""

    @abstractmethod
    def unlink_manifest(self, repo: str, digest: Digest) -> bool:
        """Forget a manifest (and the tags pointing at it); True when it was there."""

    @abstractmethod
    def set_tag(self, repo: str, tag: str, digest: Digest) -> None:
        """Point *tag* at a manifest."""

    @abstractmethod
    def get_tag(self, repo: str, tag: str) -> Digest | None:
        """The digest *tag* points at."""

    @abstractmethod
    def delete_tag(self, repo: str, tag: str) -> bool:
        """Remove *tag*; True when it existed."""

    @abstractmethod
    def tags(self, repo: str) -> list[str]:
        """All tags of *repo*, sorted."""

    @abstractmethod
    def repositories(self) -> list[str]:
        """All repository names, sorted."""

    @abstractmethod
    def has_repository(self, repo: str) -> bool:
        """True when anything was ever pushed to *repo*."""

    @abstractmethod
    def add_referrer(self, repo: str, subject: Digest, descriptor: dict[str, Any]) -> None:
        """Record that the manifest *descriptor* refers to *subject*."""

    @abstractmethod
    def remove_referrer(self, repo: str, subject: Digest, referrer: Digest) -> None:
        """Forget one referrer."""

    @abstractmethod
    def referrers(self, repo: str, subject: Digest) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose subject is *subject*."""

    def repair(self) -> list[str]:
        """Fix what an interrupted operation left half-done; one message per fix."""
        return []

    def close(self) -> None:
        """Drop uploads in progress."""
        for up in list(self.uploads.values()):
            self.cancel_upload(up)


# --- memory ---------------------------------------------------------------


class _MemoryUpload(Upload):
    def __init__(self, repository: str) -> None:
        super().__init__(repository)
        self.buf = io.BytesIO()

    def _write(self, data: bytes) -> None:
        self.buf.write(data)

    def read_all(self) -> Iterator[bytes]:
        with self.buf.getbuffer() as view:
            for pos in range(0, len(view), CHUNK):
                yield bytes(view[pos : pos + CHUNK])

    def discard(self) -> None:
        self.buf = io.BytesIO()


class _Repo:
    def __init__(self) -> None:
        self.blobs: set[Digest] = set()
        self.manifests: dict[Digest, str] = {}
        self.tags: dict[str, Digest] = {}
        self.referrers: dict[Digest, dict[Digest, dict[str, Any]]] = {}


class MemoryStorage(Storage):
    """Everything in dictionaries; gone when the server stops."""

    def __init__(self) -> None:
        super().__init__()
        self._blobs: dict[Digest, bytes] = {}
        self._repos: dict[str, _Repo] = {}

    def _repo(self, name: str) -> _Repo:
        r = self._repos.get(name)
        if r is None:
            r = self._repos[name] = _Repo()
        return r

    def blob_size(self, digest: Digest) -> int | None:
        b = self._blobs.get(digest)
        return None if b is None else len(b)

    def blob_path(self, digest: Digest) -> Path | None:
        return None

    def read_blob(self, digest: Digest, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        data = memoryview(self._blobs[digest])
        stop = len(data) if end is None else end
        for pos in range(start, stop, CHUNK):
            yield bytes(data[pos : min(pos + CHUNK, stop)])

    def blob_bytes(self, digest: Digest) -> bytes:
        return self._blobs[digest]

    def put_small_blob(self, digest: Digest, data: bytes) -> None:
        self._blobs.setdefault(digest, bytes(data))

    def _new_upload(self, repository: str) -> Upload:
        return _MemoryUpload(repository)

    def _commit(self, up: Upload, digest: Digest) -> None:
        assert isinstance(up, _MemoryUpload)
        self._blobs[digest] = up.buf.getvalue()
        up.discard()

    def link_blob(self, repo: str, digest: Digest) -> None:
        self._repo(repo).blobs.add(digest)

    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        r = self._repos.get(repo)
        if r is None or digest not in r.blobs:
            return False
        r.blobs.discard(digest)
        return True

    def has_blob(self, repo: str, digest: Digest) -> bool:
        r = self._repos.get(repo)
        return r is not None and digest in r.blobs and digest in self._blobs

    def link_manifest(self, repo: str, digest: Digest, media_type: str) -> None:
        self._repo(repo).manifests[digest] = media_type

    def manifest_type(self, repo: str, digest: Digest) -> str | None:
        r = self._repos.get(repo)
        return None if r is None else r.manifests.get(digest)

    def unlink_manifest(self, repo: str, digest: Digest) -> bool:
        r = self._repos.get(repo)
        if r is None or digest not in r.manifests:
            return False
        for t in [t for t, d in r.tags.items() if d == digest]:
            del r.tags[t]
        del r.manifests[digest]
        return True

    def set_tag(self, repo: str, tag: str, digest: Digest) -> None:
        self._repo(repo).tags[tag] = digest

    def get_tag(self, repo: str, tag: str) -> Digest | None:
        r = self._repos.get(repo)
        return None if r is None else r.tags.get(tag)

    def delete_tag(self, repo: str, tag: str) -> bool:
        r = self._repos.get(repo)
        return r is not None and r.tags.pop(tag, None) is not None

    def tags(self, repo: str) -> list[str]:
        r = self._repos.get(repo)
        return sorted(r.tags) if r else []

    def repositories(self) -> list[str]:
        return sorted(self._repos)

    def has_repository(self, repo: str) -> bool:
        return repo in self._repos

    def add_referrer(self, repo: str, subject: Digest, descriptor: dict[str, Any]) -> None:
        d = Digest.parse(descriptor["digest"])
        self._repo(repo).referrers.setdefault(subject, {})[d] = descriptor

    def remove_referrer(self, repo: str, subject: Digest, referrer: Digest) -> None:
        r = self._repos.get(repo)
        if r is not None:
            r.referrers.get(subject, {}).pop(referrer, None)

    def referrers(self, repo: str, subject: Digest) -> list[dict[str, Any]]:
        r = self._repos.get(repo)
        if r is None:
            return []
        return [r.referrers[subject][d] for d in sorted(r.referrers.get(subject, {}))]


# --- disk -----------------------------------------------------------------


class _DiskUpload(Upload):
    """An upload file, open only while a request writes to it."""

    def __init__(self, repository: str, directory: Path) -> None:
        super().__init__(repository)
        self.path = directory / self.id
        self.path.touch(exist_ok=False)
        self.file: io.BufferedWriter | None = None

    def _write(self, data: bytes) -> None:
        if self.file is None:
            self.file = open(self.path, "ab")  # noqa: SIM115
        self.file.write(data)

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def read_all(self) -> Iterator[bytes]:
        self.release()
        with open(self.path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def discard(self) -> None:
        self.release()
        self.path.unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key(d: Digest) -> str:
    return f"{d.algorithm}-{d.hex}"


class DiskStorage(Storage):
    """Content in a directory; survives restarts (uploads in progress do not)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._uploads = self.root / "uploads"
        self._repos = self.root / "repositories"
        for d in (self._blobs, self._uploads, self._repos):
            d.mkdir(parents=True, exist_ok=True)
        # Uploads cannot be resumed across restarts (the hash state is gone).
        for stale in self._uploads.iterdir():
            if stale.is_file():
                stale.unlink(missing_ok=True)

    def _blob(self, d: Digest) -> Path:
        return self._blobs / d.algorithm / d.hex[:2] / d.hex

    def _repo(self, name: str) -> Path:
        return self._repos / name

    def blob_size(self, digest: Digest) -> int | None:
        try:
            return self._blob(digest).stat().st_size
        except FileNotFoundError:
            return None

    def blob_path(self, digest: Digest) -> Path | None:
        p = self._blob(digest)
        return p if p.exists() else None

    def read_blob(self, digest: Digest, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with open(self._blob(digest), "rb") as f:
            f.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = f.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def put_small_blob(self, digest: Digest, data: bytes) -> None:
        p = self._blob(digest)
        if not p.exists():
            _write_atomic(p, data)

    def _new_upload(self, repository: str) -> Upload:
        return _DiskUpload(repository, self._uploads)

    def _commit(self, up: Upload, digest: Digest) -> None:
        assert isinstance(up, _DiskUpload)
        up.release()
        p = self._blob(digest)
        p.parent.mkdir(parents=True, exist_ok=True)
        os.replace(up.path, p)

    def link_blob(self, repo: str, digest: Digest) -> None:
        p = self._repo(repo) / "_layers" / digest.algorithm / digest.hex
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()

    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        p = self._repo(repo) / "_layers" / digest.algorithm / digest.hex
        if not p.exists():
            return False
        p.unlink()
        return True

    def has_blob(self, repo: str, digest: Digest) -> bool:
        p = self._repo(repo) / "_layers" / digest.algorithm / digest.hex
        return p.exists() and self._blob(digest).exists()

    def link_manifest(self, repo: str, digest: Digest, media_type: str) -> None:
        _write_atomic(
            self._repo(repo) / "_manifests" / digest.algorithm / digest.hex, media_type.encode()
        )

    def manifest_type(self, repo: str, digest: Digest) -> str | None:
        p = self._repo(repo) / "_manifests" / digest.algorithm / digest.hex
        try:
            return p.read_text()
        except FileNotFoundError:
            return None

    def unlink_manifest(self, repo: str, digest: Digest) -> bool:
        p = self._repo(repo) / "_manifests" / digest.algorithm / digest.hex
        if not p.exists():
            return False
        # Tags first: a crash in between leaves an untagged manifest, never a tag
        # that answers 404.
        for t in self.tags(repo):
            if self.get_tag(repo, t) == digest:
                self.delete_tag(repo, t)
        p.unlink()
        return True

    def set_tag(self, repo: str, tag: str, digest: Digest) -> None:
        _write_atomic(self._repo(repo) / "_tags" / tag, str(digest).encode())

    def get_tag(self, repo: str, tag: str) -> Digest | None:
        try:
            return Digest.parse((self._repo(repo) / "_tags" / tag).read_text().strip())
        except (FileNotFoundError, NotADirectoryError):
            return None

    def delete_tag(self, repo: str, tag: str) -> bool:
        p = self._repo(repo) / "_tags" / tag
        if not p.exists():
            return False
        p.unlink()
        return True

    def tags(self, repo: str) -> list[str]:
        d = self._repo(repo) / "_tags"
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if not p.name.startswith(".tmp-"))

    def repositories(self) -> list[str]:
        names = []
        for dirpath, dirnames, _ in os.walk(self._repos):
            if any(n in dirnames for n in ("_layers", "_manifests", "_tags")):
                names.append(Path(dirpath).relative_to(self._repos).as_posix())
            dirnames[:] = [n for n in dirnames if not n.startswith("_")]
        return sorted(names)

    def has_repository(self, repo: str) -> bool:
        d = self._repo(repo)
        return any((d / n).is_dir() for n in ("_layers", "_manifests", "_tags"))

    def add_referrer(self, repo: str, subject: Digest, descriptor: dict[str, Any]) -> None:
        d = Digest.parse(descriptor["digest"])
        path = self._repo(repo) / "_referrers" / _key(subject) / _key(d)
        _write_atomic(path, json.dumps(descriptor).encode())

    def remove_referrer(self, repo: str, subject: Digest, referrer: Digest) -> None:
        (self._repo(repo) / "_referrers" / _key(subject) / _key(referrer)).unlink(missing_ok=True)

    def referrers(self, repo: str, subject: Digest) -> list[dict[str, Any]]:
        d = self._repo(repo) / "_referrers" / _key(subject)
        if not d.is_dir():
            return []
        out = []
        for p in sorted(d.iterdir()):
            if p.name.startswith(".tmp-"):
                continue
            try:
                out.append(json.loads(p.read_bytes()))
            except (OSError, ValueError):
                continue
        return out

    def repair(self) -> list[str]:
        """Remove tags of missing manifests and referrer entries of missing manifests.

        A crash (``kill -9``, power loss) in the middle of a delete, or of a
        delete by an older luff that removed the manifest before its tags,
        leaves such entries; they would be listed yet answer 404.
        """
        fixed: list[str] = []
        for repo in self.repositories():
            for tag in self.tags(repo):
                try:
                    d = self.get_tag(repo, tag)
                except LuffError:
                    d = None
                if d is None or self.manifest_type(repo, d) is None or self.blob_size(d) is None:
                    self.delete_tag(repo, tag)
                    fixed.append(
                        f"removed tag {repo}:{tag}: its manifest {d or '(unreadable)'} is missing"
                    )
            refs = self._repo(repo) / "_referrers"
            if not refs.is_dir():
                continue
            for subject in sorted(refs.iterdir()):
                for entry in sorted(subject.iterdir()) if subject.is_dir() else ():
                    try:
                        d = Digest.parse(entry.name.replace("-", ":", 1))
                    except LuffError:
                        d = None
                    if d is None or self.manifest_type(repo, d) is None:
                        entry.unlink(missing_ok=True)
                        if d is not None:
                            of = subject.name.replace("-", ":", 1)
                            fixed.append(f"removed referrer {d} of {repo}@{of}: it is missing")
        return fixed

    def wipe(self) -> None:
        """Remove everything (used for temporary storages)."""
        shutil.rmtree(self.root, ignore_errors=True)
