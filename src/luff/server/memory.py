"""The embedded registry's storage in memory: dictionaries, gone when the server stops."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from luff.model.digest import Digest
from luff.server.storage import CHUNK, Storage, Upload


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
