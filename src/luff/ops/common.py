"""What every operation does first: open an address, find its root manifest, pick a platform."""

from __future__ import annotations

from luff.context import Context, default_context
from luff.copy import MAX_DEPTH
from luff.errors import (
    InvalidManifest,
    InvalidPlatform,
    LimitExceeded,
    NotFound,
    UsageError,
    located,
)
from luff.model import jsonutil
from luff.model import mediatypes as mt
from luff.model.address import Address, parse_address
from luff.model.descriptor import Descriptor
from luff.model.manifest import Manifest
from luff.model.matching import best_match, only
from luff.model.platform import Platform
from luff.record import Record
from luff.stores import open_source
from luff.stores.base import EntryLister, Store

#: Largest image config luff reads whole.
CONFIG_LIMIT = 16 * 1024 * 1024


class Root(Record):
    """An opened source: its store, address, and the manifest it names."""

    store: Store
    address: Address
    descriptor: Descriptor
    manifest: Manifest

    def __init__(
        self,
        store: Store,
        address: Address,
        descriptor: Descriptor,
        manifest: Manifest,
    ) -> None:
        self.store = store
        self.address = address
        self.descriptor = descriptor
        self.manifest = manifest

    def close(self) -> None:
        """Release the store (archives hold open files)."""
        self.store.close()


def as_address(address: str | Address) -> Address:
    """*address* parsed, if it is text."""
    return address if isinstance(address, Address) else parse_address(address)


def open_root(address: str | Address, ctx: Context | None = None) -> Root:
    """Open *address* and fetch the manifest it names (a store's only image when it names none)."""
    addr = as_address(address)
    store, ident = open_source(addr, ctx or default_context())
    try:
        desc, m = get_root(store, ident)
    except BaseException:
        store.abort()
        raise
    return Root(store, addr, desc, m)


def get_root(store: Store, ident: str) -> tuple[Descriptor, Manifest]:
    """The manifest at *ident*; an empty identifier means the store's only image."""
    if not ident:
        ident = only_identifier(store)
    return store.get_manifest(ident)


def only_identifier(store: Store) -> str:
    """The digest of a store's only entry (a layout, an archive); ``latest`` elsewhere."""
    if not isinstance(store, EntryLister):
        return "latest"
    es = store.entries()
    if len(es) == 1:
        return str(es[0].digest)
    names = ", ".join(e.annotations.get(mt.REF_NAME, str(e.digest)) for e in es) or "none"
    raise UsageError(f"holds {len(es)} images ({names}); name one with :TAG", where=store.name)


def config_platform(
    store: Store, m: Manifest, label: str = "", *, data: bytes | None = None
) -> Platform | None:
    """The platform an image's config declares (os, architecture, variant, os.version/features),
    exactly as written there.

    None when the config names no os and architecture (an artifact, say).
    *data* is the config's bytes when the caller has them already.
    """
    label = label or store.name
    if m.is_index:
        raise UsageError("an index has no config", where=label)
    if m.config.media_type not in (mt.OCI_CONFIG, mt.DOCKER_CONFIG):
        return None
    with located(where=label):
        if data is None:
            data = store.fetch_bytes(m.config, limit=CONFIG_LIMIT)
        try:
            cfg = jsonutil.loads(data, what="the image config")
        except (ValueError, UnicodeDecodeError):
            raise InvalidManifest("the image config is not JSON") from None
        try:
            return Platform.from_config(cfg)
        except InvalidPlatform as e:
            raise InvalidManifest(f"bad platform in the image config: {e.message}") from None


def image_platform(store: Store, desc: Descriptor, m: Manifest) -> Platform | None:
    """The platform *desc* lists, else the one its config declares (None for an index)."""
    if desc.platform is not None:
        return desc.platform
    if m.is_index:
        return None
    return config_platform(store, m)


def select_platform(
    store: Store, desc: Descriptor, m: Manifest, platform: Platform | str
) -> tuple[Descriptor, Manifest]:
    """The image for *platform* inside index *m* (recursively).

    Matching follows containerd: the best of the entries a host of
    *platform* runs (``linux/amd64`` prefers amd64 to amd64/v3 and to 386).
    An image is returned as it is when its config's platform is compatible
    (or it declares none); otherwise :class:`NotFound` names both platforms.
    """
    want = Platform.parse(platform) if isinstance(platform, str) else platform
    for _ in range(MAX_DEPTH):
        if not m.is_index:
            have = image_platform(store, desc, m)
            if have is not None and not only(want).match(have):
                raise NotFound(f"the image is {have}, not {want}", where=store.name)
            return desc, m
        entry = best_match(only(want), m.manifests, key=lambda d: d.platform)
        if entry is None:
            plats = [str(e.platform) for e in m.manifests if e.platform is not None]
            raise NotFound(
                f"no image for platform {want} in the index (has: {', '.join(plats) or 'none'})",
                where=store.name,
            )
        desc, m = entry, store.fetch_manifest(entry)
    raise LimitExceeded(
        f"indexes nested too deeply (more than {MAX_DEPTH} levels)", where=store.name
    )
