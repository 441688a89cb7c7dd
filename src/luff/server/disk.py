"""The embedded registry's storage in a directory: content survives restarts.

Directory layout of :class:`DiskStorage`::

    blobs/<alg>/<hex[:2]>/<hex>                  content
    uploads/<uuid>                               uploads in progress
    repositories/<name>/_layers/<alg>/<hex>      blob links (empty files)
    repositories/<name>/_manifests/<alg>/<hex>   manifest links (the media type)
    repositories/<name>/_tags/<tag>              tag -> digest
    repositories/<name>/_referrers/<alg>-<hex>/<alg>-<hex>   referrer descriptor JSON

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

import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from luff.errors import LuffError
from luff.model.digest import Digest
from luff.server.storage import CHUNK, Storage, Upload


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


def _remove(path: Path) -> bool:
    """Remove a file; True when it was there."""
    if not path.exists():
        return False
    path.unlink()
    return True


def _key(d: Digest) -> str:
    """A digest as a file name: ``<alg>-<hex>``."""
    return f"{d.algorithm}-{d.hex}"


def _unkey(name: str) -> str:
    """The digest text of a file name made by :func:`_key`."""
    return name.replace("-", ":", 1)


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

    def _link(self, repo: str, kind: str, d: Digest) -> Path:
        """The link file of a blob (*kind* ``_layers``) or manifest (``_manifests``) in *repo*."""
        return self._repo(repo) / kind / d.algorithm / d.hex

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
        p = self._link(repo, "_layers", digest)
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()

    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        return _remove(self._link(repo, "_layers", digest))

    def has_blob(self, repo: str, digest: Digest) -> bool:
        p = self._link(repo, "_layers", digest)
        return p.exists() and self._blob(digest).exists()

    def link_manifest(self, repo: str, digest: Digest, media_type: str) -> None:
        _write_atomic(self._link(repo, "_manifests", digest), media_type.encode())

    def manifest_type(self, repo: str, digest: Digest) -> str | None:
        p = self._link(repo, "_manifests", digest)
        try:
            return p.read_text()
        except FileNotFoundError:
            return None

    def unlink_manifest(self, repo: str, digest: Digest) -> bool:
        p = self._link(repo, "_manifests", digest)
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
        return _remove(self._repo(repo) / "_tags" / tag)

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
                        d = Digest.parse(_unkey(entry.name))
                    except LuffError:
                        d = None
                    if d is None or self.manifest_type(repo, d) is None:
                        entry.unlink(missing_ok=True)
                        if d is not None:
                            of = _unkey(subject.name)
                            fixed.append(f"removed referrer {d} of {repo}@{of}: it is missing")
        return fixed

    def wipe(self) -> None:
        """Remove everything (used for temporary storages)."""
        shutil.rmtree(self.root, ignore_errors=True)
