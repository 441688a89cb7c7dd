"""The referrers tag schema: an index tagged ``sha256-<hex>`` lists the referrers of a manifest.

Registries without the OCI 1.1 referrers API (distribution 2.8, Docker
Hub, older Harbor) hold referrers this way. Adding an entry is
read-modify-write of one tag, which is not atomic: two writers at once can
lose an entry. luff narrows this as far as the registry allows:

- writers in one process take turns (a lock per subject);
- each write is conditional (``If-Match`` on the index read): a registry
  that honours it refuses a stale write, and the writer re-reads and
  re-merges;
- every write is read back at once, and written again if an entry is gone
  (this catches a writer that wrote in between, not one that is about to);
- with ``Settings.concurrent_window`` (``--concurrent``), where the registry
  ignores conditions, a writer re-reads before it writes when its read is
  older than half the window, and after all its writes it waits one window
  (:meth:`TagSchema.settle`, run when the store is closed) and checks that
  its entries are still listed, adding them again if not. Another luff
  process that overwrote an entry must have read before that write and
  written within the window, so the loss is seen. Tools other than luff get
  no such promise.
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
from luff.pool import Limiter, run_all

if TYPE_CHECKING:
    from luff.stores.registry import RegistryStore

#: Seconds (``--concurrent``'s default): a write follows its read within half of it,
#: and is checked a window later.
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
        self._pending: dict[Digest, list[Descriptor]] = {}

    def read(self, subject: Digest) -> tuple[Descriptor, ...]:
        """The referrers the tag schema lists for *subject* (none when the tag is absent)."""
        known = self.store.known_tags
        if known is not None and fallback_tag(subject) not in known:
            return ()
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
        """List *entry* among the referrers of *subject* now, merging with what is there."""
        self.queue(subject, entry)
        self.flush()

    def queue(self, subject: Digest, entry: Descriptor) -> None:
        """List *entry* at the next :meth:`flush` (one write per subject for many entries)."""
        with self._lock:
            pending = self._pending.setdefault(subject, [])
            if all(e.digest != entry.digest for e in pending):
                pending.append(entry)

    def flush(self) -> None:
        """Write what :meth:`queue` collected: one read-merge-write per subject."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return

        def write(item: tuple[Digest, list[Descriptor]]) -> None:
            subject, entries = item
            with self._lock:
                lock = self._locks.setdefault(subject, threading.Lock())
            with lock:
                self._add(subject, entries)
            with self._lock:
                self._written.setdefault(subject, []).extend(entries)

        run_all(write, list(pending.items()), Limiter(self.store.client.settings.jobs))

    def _window(self) -> float | None:
        return self.store.client.settings.concurrent_window

    def _add(self, subject: Digest, entries: list[Descriptor]) -> None:
        tag = fallback_tag(subject)
        window = self._window()  # only with --concurrent: a slow read is read again
        for attempt in range(TRIES):
            started = time.monotonic()
            cur = self.store.read_tag(tag)
            listed = list(cur[1].manifests) if cur is not None and cur[1].is_index else []
            have = {d.digest for d in listed}
            new = [e for e in entries if e.digest not in have]
            if not new:
                return
            if window is not None and time.monotonic() - started > window / 2:
                continue  # a slow read: what it saw may be stale by the time we write
            index = index_of_referrers(subject, [*listed, *new])
            try:
                self.store.push_manifest_if(index, tag, cur[2] if cur is not None else None)
            except PreconditionFailed:
                _backoff(attempt)
                continue
            listed_now = {d.digest for d in self.read(subject)}
            if all(e.digest in listed_now for e in new):
                return
            _backoff(attempt)
        raise RegistryError(
            f"could not list referrers in {tag}: other writers kept changing it",
            where=self.store.name,
            digest=subject,
        )

    def settle(self) -> None:
        """Check, one window after the last write, that every entry written is still listed.

        Needed only where the registry ignores conditional writes; entries
        lost to another writer are added again, a bounded number of rounds.
        """
        self.flush()
        with self._lock:
            written, self._written = self._written, {}
        window = self._window()
        if not written or window is None or self.store.enforces_conditions():
            return
        for _ in range(ROUNDS):
            cancel.sleep(window)
            lost: dict[Digest, list[Descriptor]] = {}
            for s, entries in written.items():
                listed = {d.digest for d in self.read(s)}
                missing = [e for e in entries if e.digest not in listed]
                if missing:
                    lost[s] = missing
            if not lost:
                return
            for s, es in lost.items():
                for e in es:
                    self.queue(s, e)
            self.flush()
            with self._lock:
                written, self._written = self._written, {}
        raise RegistryError(
            "referrers listed in the tag schema kept being overwritten by other writers",
            where=self.store.name,
        )


def _backoff(attempt: int) -> None:
    """A short jittered wait before writing the tag again."""
    import random

    cancel.sleep(min(1.0, 0.05 * 2**attempt) * (0.5 + random.random()))
