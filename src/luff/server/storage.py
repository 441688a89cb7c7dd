"""What the embedded registry keeps content in: the :class:`Storage` interface.

A storage holds blobs once (content-addressed) and, per repository, links to
the blobs and manifests pushed or mounted there, tags, and an index of
referrers. Uploads are streamed into an :class:`Upload` that hashes as it
writes, so finishing an upload never reads the blob again.
:class:`~luff.server.memory.MemoryStorage` keeps all of it in dictionaries,
:class:`~luff.server.disk.DiskStorage` in a directory tree.

All methods are synchronous and meant to be called from one thread (the
server's event loop); an :class:`Upload` may be read or written from a worker
thread while nothing else touches it.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Container, Iterator
from pathlib import Path
from typing import Any

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
