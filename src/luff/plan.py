"""The plan of a copy, and the choices that shape it: values with no I/O.

A :class:`Plan` lists what happens to every blob (:class:`PlanItem`: an
action and where it comes from) and manifest (:class:`ManifestItem`, with
its write level), before any byte moves; it prints one line per item and
is JSON-able. :class:`Referrers` says which attached content a copy takes
along; :class:`Expect` makes the root's tag write conditional.
"""

from __future__ import annotations

from typing import Protocol

from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.referrers import artifact_type
from luff.record import Record, setfields
from luff.stores.base import Store

EXISTS = "exists"
MOUNT = "mount"
COPY = "copy"
SKIP = "skip"  # non-distributable (foreign) layers
RELIST = "relist"  # a referrer the target holds but does not list (an interrupted copy)
REMOTE = "remote"  # a layer left where it is (a sparse layout records where)
TAG = "tag"  # the root, pushed under its tags last


class PlanItem(Record):
    """What happens to one blob."""

    descriptor: Descriptor
    action: str
    source: Store
    mount_from: str

    def __init__(
        self,
        descriptor: Descriptor,
        action: str,
        source: Store,
        mount_from: str = "",
    ) -> None:
        self.descriptor = descriptor
        self.action = action
        self.source = source
        self.mount_from = mount_from

    @property
    def size(self) -> int:
        """The blob's size in bytes."""
        return self.descriptor.size


class ManifestItem(Record, hide=("children",)):
    """A manifest to write, with its exact bytes (empty when the target has it).

    Manifests are written by ``level``, lowest first; everything a manifest
    points at, and the subject a referrer (``kind == "referrer"``) is
    attached to, has a lower level. ``tags`` are written last (cosign's
    ``sha256-<hex>.sig`` tags, say).
    """

    descriptor: Descriptor
    manifest: Manifest
    source: Store
    level: int
    action: str
    children: list[Digest]
    kind: str
    after: Digest | None
    tags: list[str]

    def __init__(
        self,
        descriptor: Descriptor,
        manifest: Manifest,
        source: Store,
        level: int = 0,
        action: str = COPY,
        children: list[Digest] | None = None,
        kind: str = "manifest",
        after: Digest | None = None,
        tags: list[str] | None = None,
    ) -> None:
        self.descriptor = descriptor
        self.manifest = manifest
        self.source = source
        self.level = level
        self.action = action
        self.children = [] if children is None else children
        self.kind = kind
        self.after = after
        self.tags = [] if tags is None else tags


class Referrers(Record, frozen=True):
    """Which referrers a copy takes along: signatures, SBOMs, attestations.

    Every referrer of every manifest in the graph is copied (and referrers of
    referrers), of the artifact ``types`` given (all when empty), with
    cosign's ``sha256-<hex>.sig``/``.att``/``.sbom`` tags when
    ``cosign_tags``. A malformed listing, or one naming content that does not
    exist, fails the copy when ``strict``; otherwise it is reported and
    passed over.
    """

    types: tuple[str, ...]
    strict: bool
    cosign_tags: bool

    def __init__(
        self,
        types: tuple[str, ...] = (),
        strict: bool = True,
        cosign_tags: bool = True,
    ) -> None:
        setfields(
            self,
            types=types,
            strict=strict,
            cosign_tags=cosign_tags,
        )


class Plan(Record):
    """The transfer plan of one copy: blobs and manifests with their actions."""

    target: Store
    blobs: list[PlanItem]
    manifests: list[ManifestItem]

    def __init__(
        self,
        target: Store,
        blobs: list[PlanItem] | None = None,
        manifests: list[ManifestItem] | None = None,
    ) -> None:
        self.target = target
        self.blobs = [] if blobs is None else blobs
        self.manifests = [] if manifests is None else manifests

    def totals(self) -> dict[str, tuple[int, int]]:
        """``{action: (count, bytes)}`` over blobs."""
        out: dict[str, tuple[int, int]] = {}
        for b in self.blobs:
            n, s = out.get(b.action, (0, 0))
            out[b.action] = (n + 1, s + b.size)
        return out

    @property
    def bytes_to_copy(self) -> int:
        """Bytes of the blobs whose action is ``copy``."""
        return sum(b.size for b in self.blobs if b.action == COPY)

    def lines(self) -> list[str]:
        """Human-readable plan, one line per item, then totals."""
        out = []
        for b in self.blobs:
            extra = f" from {b.mount_from}" if b.action == MOUNT else ""
            if b.action == COPY:
                extra = f" from {b.source.name}"
            out.append(f"blob     {b.action:<6} {b.descriptor.digest} {b.size:>12}{extra}")
        for m in self.manifests:
            what = m.descriptor.media_type
            if m.kind == "referrer":
                what = m.descriptor.artifact_type or artifact_type(m.manifest) or what
            out.append(
                f"{m.kind:<8} {m.action:<6} {m.descriptor.digest} {m.descriptor.size:>12} {what}"
                + "".join(f" tag {t}" for t in m.tags)
            )
        tot = self.totals()
        parts = [f"{a}: {n} ({_human(s)})" for a, (n, s) in sorted(tot.items())]
        out.append("total    " + (", ".join(parts) if parts else "no blobs"))
        return out

    def to_dict(self) -> dict[str, object]:
        """JSON-able form of the plan."""
        return {
            "blobs": [
                {
                    "digest": str(b.descriptor.digest),
                    "size": b.size,
                    "mediaType": b.descriptor.media_type,
                    "action": b.action,
                    **({"from": b.mount_from} if b.mount_from else {}),
                    "source": b.source.name,
                }
                for b in self.blobs
            ],
            "manifests": [
                {
                    "digest": str(m.descriptor.digest),
                    "size": m.descriptor.size,
                    "mediaType": m.descriptor.media_type,
                    "action": m.action,
                    **({"kind": m.kind} if m.kind != "manifest" else {}),
                    **({"subject": str(m.after)} if m.kind == "referrer" and m.after else {}),
                    **({"tags": m.tags} if m.tags else {}),
                }
                for m in self.manifests
            ],
            "totals": {a: {"count": n, "bytes": s} for a, (n, s) in self.totals().items()},
        }


def _human(n: int) -> str:
    f = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if f < 1000 or unit == "GB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1000
    return f"{n} B"


class Progress(Protocol):
    """Receives transfer events; the CLI draws them with rich."""

    def planned(self, plan: Plan) -> None:
        """The plan is made; transfers start."""
        ...

    def advance(self, item: PlanItem, nbytes: int) -> None:
        """*nbytes* more of *item* were transferred."""
        ...

    def finished(self, item: PlanItem) -> None:
        """*item* is transferred and verified."""
        ...


class Expect(Record, frozen=True):
    """Write the root's (first) tag only if it still points where it was read.

    ``token`` is the version read (a registry's ``ETag``), or None for "the
    tag does not exist". The target must be a
    :class:`~luff.stores.base.ConditionalTagger`.
    """

    token: str | None

    def __init__(
        self,
        token: str | None,
    ) -> None:
        setfields(
            self,
            token=token,
        )


def as_referrers(value: Referrers | bool | None) -> Referrers | None:
    """*value* as a policy: True means every referrer, strictly; False or None, none."""
    if value is True:
        return Referrers()
    return value or None
