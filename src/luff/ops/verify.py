"""Re-reading and re-hashing an image or index with everything it points at.

:func:`verify` opens any address (a registry, a layout, an archive),
resolves it and walks its graph level by level, each distinct digest once
whatever the shape (diamonds cost their size, not their paths) and no
deeper than :data:`luff.copy.MAX_DEPTH`. Manifests are fetched, verified,
parsed and followed; blobs are streamed and hashed. What is missing,
corrupt or malformed becomes a :class:`Problem` in the :class:`Report`
instead of an exception, so that one run names every one of them. Failures
that say nothing about the content (a registry that cannot be reached,
denied access) are raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from luff.context import Context, default_context
from luff.copy import MAX_DEPTH
from luff.errors import DigestMismatch, InvalidManifest, LimitExceeded, NotFound
from luff.model import mediatypes as mt
from luff.model.address import Address
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.ops.common import as_address, only_identifier
from luff.pool import run_all
from luff.stores import open_source
from luff.stores.base import Store

__all__ = ["CORRUPT", "INVALID", "MISSING", "Problem", "Report", "verify", "verify_store"]

MISSING = "missing"
CORRUPT = "corrupt"
INVALID = "invalid"

CHUNK = 1 << 20


@dataclass(frozen=True)
class Problem:
    """One manifest or blob that is missing, corrupt (does not match its digest) or invalid."""

    kind: str
    descriptor: Descriptor
    role: str  # index, manifest, config, layer, blob
    parent: Digest | None
    message: str

    @property
    def digest(self) -> Digest:
        """The digest of the missing, corrupt or invalid item."""
        return self.descriptor.digest

    def line(self) -> str:
        """``KIND DIGEST (ROLE of PARENT): MESSAGE``, the line ``luff verify`` prints."""
        of = f" of {self.parent}" if self.parent is not None else ""
        return f"{self.kind} {self.digest} ({self.role}{of}): {self.message}"

    def to_dict(self) -> dict[str, object]:
        """The problem as JSON (``luff verify --json``)."""
        out: dict[str, object] = {
            "kind": self.kind,
            "digest": str(self.digest),
            "size": self.descriptor.size,
            "mediaType": self.descriptor.media_type,
            "role": self.role,
            "message": self.message,
        }
        if self.parent is not None:
            out["parent"] = str(self.parent)
        return out


@dataclass
class Report:
    """What :func:`verify` read and found."""

    where: str
    root: Descriptor
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    #: Non-distributable layers with URLs: not held by stores, so not read.
    skipped: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing, corrupt or invalid."""
        return not self.problems

    def summary(self) -> str:
        """One line: what was read, and how many problems."""
        skipped = f", {self.skipped} foreign layers skipped" if self.skipped else ""
        n = len(self.problems)
        problems = f"{n} problem{'' if n == 1 else 's'}" if n else "no problems"
        return (
            f"{self.where}@{self.root.digest}: {self.manifests} manifests, {self.blobs} blobs, "
            f"{self.bytes} bytes verified{skipped}; {problems}"
        )

    def to_dict(self) -> dict[str, object]:
        """The report as JSON (``luff verify --json``)."""
        return {
            "where": self.where,
            "digest": str(self.root.digest),
            "manifests": self.manifests,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "skipped": self.skipped,
            "problems": [p.to_dict() for p in self.problems],
        }


def verify(address: str | Address, *, ctx: Context | None = None) -> Report:
    """Re-read and re-hash the image or index at *address* and everything below it.

    A store holding one image needs no tag (its only entry). Raises for an
    address that cannot be opened or resolved; reports the rest.
    """
    ctx = ctx or default_context()
    addr = as_address(address)
    store, ident = open_source(addr, ctx)
    with store:
        desc = store.resolve(ident or only_identifier(store))
        report = verify_store(store, desc, ctx=ctx)
    report.where = addr.repository  # as the user wrote it (a store may shorten a path)
    return report


@dataclass
class _Checked:
    children: list[tuple[Descriptor, str, Digest]] = field(default_factory=list)
    problem: Problem | None = None
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    skipped: int = 0


_Item = tuple[Descriptor, str, "Digest | None"]


def verify_store(store: Store, desc: Descriptor, *, ctx: Context | None = None) -> Report:
    """Verify *desc* in *store* and everything it points at, each digest once."""
    ctx = ctx or default_context()
    report = Report(store.name, desc)
    seen = {desc.digest}
    level: list[_Item] = [(desc, _role(desc), None)]
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise LimitExceeded(
                f"manifests nested too deeply (more than {MAX_DEPTH} levels)",
                where=store.name,
                digest=level[0][0].digest,
            )
        results: Sequence[_Checked] = run_all(lambda i: _check(store, *i), level, ctx.limiter)
        nxt: list[_Item] = []
        for r in results:
            report.manifests += r.manifests
            report.blobs += r.blobs
            report.bytes += r.bytes
            report.skipped += r.skipped
            if r.problem is not None:
                report.problems.append(r.problem)
            for c in r.children:
                if c[0].digest not in seen:
                    seen.add(c[0].digest)
                    nxt.append(c)
        level = nxt
    return report


_FOREIGN = frozenset({mt.DOCKER_FOREIGN_LAYER})


def _foreign(desc: Descriptor) -> bool:
    kind = desc.media_type
    return bool(desc.urls) and (kind in _FOREIGN or ".nondistributable." in kind)


def _role(desc: Descriptor) -> str:
    if mt.is_index(desc.media_type):
        return "index"
    return "manifest" if mt.is_manifest(desc.media_type) else "blob"


def _check(store: Store, desc: Descriptor, role: str, parent: Digest | None) -> _Checked:
    out = _Checked()

    def problem(kind: str, message: str) -> _Checked:
        out.problem = Problem(kind, desc, role, parent, message)
        return out

    if mt.is_manifest(desc.media_type):
        try:
            m = store.fetch_manifest(desc)
        except NotFound as e:
            return problem(MISSING, e.message or "not found")
        except DigestMismatch as e:
            return problem(CORRUPT, e.message)
        except InvalidManifest as e:
            return problem(INVALID, e.message)
        except RecursionError:
            return problem(INVALID, "manifest JSON nested too deeply")
        out.manifests, out.bytes = 1, desc.size
        if m.is_index:
            out.children = [(c, _role(c), desc.digest) for c in m.manifests]
        else:
            out.children = [(m.config, "config", desc.digest)]
            out.children += [(x, "layer", desc.digest) for x in m.layers]
        return out
    if _foreign(desc):
        out.skipped = 1
        return out
    n = 0
    try:
        with store.fetch(desc) as f:
            while chunk := f.read(CHUNK):
                n += len(chunk)
    except NotFound as e:
        return problem(MISSING, e.message or "not found")
    except DigestMismatch as e:
        return problem(CORRUPT, e.message)
    out.blobs, out.bytes = 1, n
    return out
