"""crane-style basic operations: copy, manifest, config, digest, blob, ls, tag, delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from luff.context import Context, default_context
from luff.copy import Plan, Progress, copy_graph
from luff.errors import InvalidReference, NotFound, UsageError
from luff.model import mediatypes as mt
from luff.model.address import DOCKER_ARCHIVE, parse_address
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest, is_digest
from luff.model.manifest import Manifest
from luff.model.platform import Platform, host_platform
from luff.model.reference import Reference, valid_tag
from luff.stores import open_store
from luff.stores.base import Store
from luff.stores.registry import RegistryStore


def _ctx(ctx: Context | None) -> Context:
    return ctx or default_context()


def resolve(
    address: str, *, platform: Platform | str | None = None, ctx: Context | None = None
) -> tuple[Store, Descriptor, Manifest]:
    """Open *address* and fetch its manifest; with *platform*, descend into an index."""
    store, ident = open_store(address, _ctx(ctx))
    desc, m = get_root(store, ident)
    if platform is not None:
        desc, m = select_platform(store, desc, m, platform)
    return store, desc, m


def get_root(store: Store, ident: str) -> tuple[Descriptor, Manifest]:
    """The manifest at *ident*; an empty identifier means the store's only image."""
    if not ident:
        ident = _only_identifier(store)
    return store.get_manifest(ident)


def _only_identifier(store: Store) -> str:
    entries = getattr(store, "entries", None)
    if callable(entries):
        es: list[Descriptor] = entries()
        if len(es) == 1:
            return str(es[0].digest)
        names = ", ".join(e.annotations.get(mt.REF_NAME, str(e.digest)) for e in es) or "none"
        raise UsageError(f"{store.name} holds {len(es)} images ({names}); name one with :TAG")
    return "latest"


def select_platform(
    store: Store, desc: Descriptor, m: Manifest, platform: Platform | str
) -> tuple[Descriptor, Manifest]:
    """The image for *platform* inside index *m* (recursively); an image is returned as is."""
    want = Platform.parse(platform) if isinstance(platform, str) else platform
    if not m.is_index:
        return desc, m
    for entry in m.manifests:
        if entry.platform is not None and want.matches(entry.platform):
            child = store.fetch_manifest(entry)
            if child.is_index:
                return select_platform(store, entry, child, want)
            return entry, child
    have = ", ".join(str(e.platform) for e in m.manifests if e.platform is not None) or "none"
    raise NotFound(f"{store.name}: no image for platform {want} in the index (has: {have})")


def manifest(
    address: str, *, platform: Platform | str | None = None, ctx: Context | None = None
) -> bytes:
    """The exact bytes of the manifest at *address*."""
    _, _, m = resolve(address, platform=platform, ctx=ctx)
    return m.data


def digest(
    address: str, *, platform: Platform | str | None = None, ctx: Context | None = None
) -> Descriptor:
    """The descriptor of the manifest at *address* (of the platform's image, if given)."""
    if platform is None:
        store, ident = open_store(address, _ctx(ctx))
        if isinstance(store, RegistryStore) and ident:
            return store.resolve(ident)
    _, desc, _ = resolve(address, platform=platform, ctx=ctx)
    return desc


def config(
    address: str, *, platform: Platform | str | None = None, ctx: Context | None = None
) -> bytes:
    """The config blob of the image at *address*; an index picks *platform* (default: host)."""
    store, desc, m = resolve(address, platform=platform, ctx=ctx)
    if m.is_index:
        desc, m = select_platform(store, desc, m, host_platform())
    return store.fetch_bytes(m.config, limit=64 * 1024 * 1024)


def blob(address: str, *, ctx: Context | None = None) -> BinaryIO:
    """A verified stream of the blob at ``REPO@DIGEST``."""
    addr = parse_address(address)
    if addr.reference is None:
        raise UsageError(
            f"{address}: blob reads from a registry; a layout's blob is the file DIR/blobs/ALG/HEX"
        )
    if not addr.reference.digest:
        raise UsageError(f"{address}: name a blob as REPOSITORY@sha256:…")
    store, _ = open_store(addr, _ctx(ctx))
    d = Digest.parse(addr.reference.digest)
    if isinstance(store, RegistryStore):
        return store.fetch_blob(d)
    raise UsageError("blob reads from a registry")


def ls(repository: str, *, ctx: Context | None = None) -> list[str]:
    """Tags of *repository* (the ref.names of a layout or archive)."""
    addr = parse_address(repository)
    if addr.reference is None:
        if addr.identifier:
            raise UsageError(f"{repository}: name the layout or archive, without a tag or digest")
        store, _ = open_store(addr, _ctx(ctx))
        with store:
            return store.tags()
    store, _ = open_store(_repo_only(repository), _ctx(ctx))
    return store.tags()


def _repo_only(text: str) -> str:
    ref = Reference.parse(text, default_tag=False)
    if ref.tag or ref.digest:
        raise UsageError(f"{text}: name a repository, without a tag or digest")
    return text


def catalog(registry: str, *, ctx: Context | None = None) -> list[str]:
    """Repositories of *registry*."""
    host = registry.removeprefix("docker://").rstrip("/")
    if not host or "/" in host:
        raise UsageError(f"{registry}: name a registry host, e.g. localhost:5000")
    try:
        ref = Reference.parse(f"{host}/x")
    except InvalidReference as e:
        raise InvalidReference(f"invalid registry host {registry!r}: {e}") from None
    if ref.repository != "x":  # a bare name ("myregistry") is a host here, not a Hub repository
        ref = Reference(host, "x")
    return _ctx(ctx).client(ref.api_host).catalog()


def tag(address: str, new_tag: str, *, ctx: Context | None = None) -> Descriptor:
    """Point *new_tag* (in the same repository) at the manifest of *address*."""
    if not valid_tag(new_tag):
        raise UsageError(
            f"invalid tag {new_tag!r} (letters, digits, '_', '.', '-'; at most 128; "
            "not starting with '.' or '-')"
        )
    store, ident = open_store(address, _ctx(ctx))
    desc, m = get_root(store, ident)
    store.push_manifest(m, new_tag)
    return desc


def pinned_tag(address: str, tag: str, desc: Descriptor) -> str:
    """Where :func:`tag` put *tag*: ``registry/repo:TAG@digest`` or ``oci:DIR:TAG@digest``."""
    addr = parse_address(address)
    if addr.reference is not None:
        return f"{addr.reference.with_tag(tag)}@{desc.digest}"
    return f"{addr.transport}:{addr.path}:{tag}@{desc.digest}"


def delete(address: str, *, ctx: Context | None = None) -> Descriptor:
    """Delete the manifest at *address* (a tag is resolved to its digest first)."""
    store, ident = open_store(address, _ctx(ctx))
    desc = store.resolve(ident)
    store.delete(str(desc.digest))
    return desc


def copy(
    source: str,
    target: str,
    *,
    platform: Platform | str | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Descriptor:
    """Copy the image or index at *source* to *target*; the digest is kept.

    A target without a tag takes the source's tag. With *platform*, an index
    source is narrowed to that platform's image.
    """
    ctx = _ctx(ctx)
    src, ident = open_store(source, ctx)
    desc, m = get_root(src, ident)
    if platform is not None:
        desc, m = select_platform(src, desc, m, platform)
    dst_addr = parse_address(target)
    dst, dst_ident = open_store(dst_addr, ctx, write=True)
    with dst:
        tags = []
        if dst_addr.reference is not None:
            given = Reference.parse(target.removeprefix("docker://"), default_tag=False)
            if given.digest and Digest.parse(given.digest) != desc.digest:
                raise UsageError(f"{target}: target digest differs from the source's {desc.digest}")
            t = given.tag or _tag_only(ident)
            tags = [t] if t else []
        elif dst_ident and not dst_addr.digest:
            tags = [dst_ident]
        elif not dst_ident and _tag_only(ident):
            tags = [ident]
        return copy_graph(
            src, desc, dst, manifest=m, tags=tags, ctx=ctx, progress=progress, on_plan=on_plan
        )


def _tag_only(identifier: str) -> str:
    """*identifier* if it is a tag, "" if it is a digest or empty."""
    return "" if not identifier or is_digest(identifier) else identifier


def copy_all_tags(
    source: str,
    target: str,
    *,
    platform: Platform | str | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> dict[str, Descriptor]:
    """Copy every tag of repository *source* to repository *target* (see :func:`copy`)."""
    ctx = _ctx(ctx)
    for a in (source, target):
        if parse_address(a).reference is None:
            raise UsageError(f"{a}: --all-tags copies between registry repositories")
    src_repo = Reference.parse(_repo_only(source), default_tag=False)
    dst_repo = Reference.parse(_repo_only(target), default_tag=False)
    out: dict[str, Descriptor] = {}
    for t in ls(source, ctx=ctx):
        out[t] = copy(
            str(src_repo.with_tag(t)),
            str(dst_repo.with_tag(t)),
            platform=platform,
            ctx=ctx,
            progress=progress,
            on_plan=on_plan,
        )
    return out


def pinned(address: str, desc: Descriptor) -> str:
    """``registry/repo@digest`` for a registry address, ``transport:path@digest`` otherwise.

    A docker archive gives its images new digests (uncompressed layers), so it
    is named by its address alone.
    """
    addr = parse_address(address)
    if addr.reference is not None:
        return str(addr.reference.with_digest(desc.digest))
    if addr.transport == DOCKER_ARCHIVE:
        return address
    return f"{addr.transport}:{addr.path}@{desc.digest}"
