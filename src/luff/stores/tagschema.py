"""The referrers tag schema: an index tagged ``sha256-<hex>`` lists the referrers of a manifest.

Registries without the OCI 1.1 referrers API (distribution 2.8, Docker
Hub, older Harbor) hold referrers this way. Adding an entry is
read-modify-write of one tag, which is not atomic: two writers at once can
lose an entry. luff narrows this as far as the registry allows:

- writers in one process take turns (a lock per subject);
- each write is conditional (``If-Match`` on the index read): a registry
  that honours it refuses a stale write, and the writer re-reads and
  re-merges;
- where the registry ignores conditions, a writer re-reads before it
  writes when its read is older than half a window, and after all its
  writes it waits one window (:meth:`TagSchema.settle`, run when the store
  is closed) and checks that its entries are still listed, adding them
  again if not. Another luff process that overwrote an entry must have read
  before that write and written within the window, so the loss is seen.
  Tools other than luff get no such promise.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from luff import cancel
from luff.errors import InvalidManifest, PreconditionFailed, RegistryError
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.referrers import fallback_tag, index_of_referrers

if TYPE_CHECKING:
    from luff.stores.registry import RegistryStore

#: Seconds; a write follows its read within half of it, and is checked a window later.
WINDOW = 2.0
TRIES = 8
ROUNDS = 4


class TagSchema:
    """The ``sha256-<hex>`` indexes of one registry repository."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self._locks: dict[Digest, threading.Lock] = {}
        self._lock = threading.Lock()
        self._written: dict[Digest, list[Descriptor]] = {}

    def read(self, subject: Digest) -> tuple[Descriptor, ...]:
        """The referrers the tag schema lists for *subject* (none when the tag is absent)."""
        cur = self.store.read_tag(fallback_tag(subject))
        if cur is None:
            return ()
        _, m, _ = cur
        if not m.is_index:
            raise InvalidManifest(
                f"the referrers tag {fallback_tag(subject)} is not an index",
                where=self.store.name,
                digest=subject,
            )
        return tuple(m.manifests)

    def add(self, subject: Digest, entry: Descriptor) -> None:
        """List *entry* among the referrers of *subject*, merging with what is there."""
        with self._lock:
            lock = self._locks.setdefault(subject, threading.Lock())
        with lock:
            self._add(subject, entry)
        with self._lock:
            self._written.setdefault(subject, []).append(entry)

    def _add(self, subject: Digest, entry: Descriptor) -> None:
        tag = fallback_tag(subject)
        for attempt in range(TRIES):
            started = time.monotonic()
            cur = self.store.read_tag(tag)
            listed = list(cur[1].manifests) if cur is not None and cur[1].is_index else []
            if any(d.digest == entry.digest for d in listed):
                return
            if time.monotonic() - started > WINDOW / 2:
                continue  # a slow read: what it saw may be stale by the time we write
            index = index_of_referrers(subject, [*listed, entry])
            try:
                self.store.push_manifest_if(index, tag, cur[2] if cur is not None else None)
            except PreconditionFailed:
                import random

                cancel.sleep(min(1.0, 0.05 * 2**attempt) * (0.5 + random.random()))
                continue
            return
        raise RegistryError(
            f"could not list the referrer in {tag}: other writers kept changing it",
            where=self.store.name,
            digest=entry.digest,
        )

    def settle(self) -> None:
        """Check, one window after the last write, that every entry written is still listed.

        Needed only where the registry ignores conditional writes; entries
        lost to another writer are added again, a bounded number of rounds.
        """
        with self._lock:
            written, self._written = self._written, {}
        if not written or self.store.enforces_conditions():
            return
        for _ in range(ROUNDS):
            cancel.sleep(WINDOW)
            lost = {
                s: [e for e in entries if e.digest not in {d.digest for d in self.read(s)}]
                for s, entries in written.items()
            }
            lost = {s: es for s, es in lost.items() if es}
            if not lost:
                return
            for s, es in lost.items():
                for e in es:
                    self.add(s, e)
            with self._lock:
                written, self._written = self._written, {}
        raise RegistryError(
            "referrers listed in the tag schema kept being overwritten by other writers",
            where=self.store.name,
        )
