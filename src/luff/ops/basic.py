"""crane-style basic operations: copy, manifest, config, digest, blob, ls, tag, untag, delete."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import BinaryIO

from luff.context import Context, default_context
from luff.copy import Plan, Progress, Referrers, as_referrers, copy_graph
from luff.errors import UsageError
from luff.model.address import Address
from luff.model.descriptor import Descriptor
from luff.model.digest import Digest
from luff.model.manifest import Manifest
from luff.model.platform import Platform, host_platform
from luff.model.reference import Reference, parse_host
from luff.ops.common import CONFIG_LIMIT, as_address, only_identifier, open_root, select_platform
from luff.stores import open_source, open_target
from luff.stores.base import BlobFetcher, Deleter, Store, TagLister


def _ctx(ctx: Context | None) -> Context:
    return ctx or default_context()


def resolve(
    address: str | Address, *, platform: Platform | str | None = None, ctx: Context | None = None
) -> tuple[Store, Descriptor, Manifest]:
    """Open *address* and fetch its manifest; with *platform*, the image of that platform.

    An index is searched (recursively) for the best match; a single image
    must be compatible with *platform* (or declare none).
    """
    root = open_root(address, _ctx(ctx))
    desc, m = root.descriptor, root.manifest
    if platform is not None:
        desc, m = select_platform(root.store, desc, m, platform)
    return root.store, desc, m


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
        store, ident = open_source(address, _ctx(ctx))
        with store:
            return store.resolve(ident or only_identifier(store))  # a registry: one HEAD
    _, desc, _ = resolve(address, platform=platform, ctx=ctx)
    return desc


def config(
    address: str, *, platform: Platform | str | None = None, ctx: Context | None = None
) -> bytes:
    """The config blob of the image at *address*; an index picks *platform* (default: host)."""
    store, desc, m = resolve(address, platform=platform, ctx=ctx)
    if m.is_index:
        desc, m = select_platform(store, desc, m, host_platform())
    return store.fetch_bytes(m.config, limit=CONFIG_LIMIT)


def blob(address: str, *, ctx: Context | None = None) -> BinaryIO:
    """A verified stream of the blob ``REPO@DIGEST`` (a registry, or a layout)."""
    addr = as_address(address)
    if not addr.has_digest or addr.has_tag:
        raise UsageError(f"{address}: name a blob as REPOSITORY@sha256:…")
    store, _ = open_source(addr, _ctx(ctx))
    if not isinstance(store, BlobFetcher):
        raise UsageError(f"{address}: blob reads from a registry or a layout")
    return store.fetch_blob(Digest.parse(addr.digest))


_HOST_PORT = re.compile(r"^(localhost|[a-z0-9.-]+\.[a-z0-9-]+|\[[0-9a-f:]+\]|[0-9.]+):[0-9]+/?$")


def _repository(text: str) -> Address:
    """A repository address (no tag or digest); bad guesses get a hint."""
    if _HOST_PORT.match(text.lower()):
        raise UsageError(
            f"{text} is a registry; `luff ls` lists the tags of a repository "
            f"(luff ls {text.rstrip('/')}/REPO), `luff catalog {text.rstrip('/')}` its repositories"
        )
    if text.startswith(("./", "../", "/", "~")) or (
        os.path.isdir(text) and not text.startswith(("oci:", "oci-archive:", "docker-archive:"))
    ):
        raise UsageError(f"{text} is a path; name a layout as oci:{text}")
    addr = as_address(text)
    if addr.has_tag or addr.has_digest:
        raise UsageError(f"{text}: name a repository, without a tag or digest")
    return addr


def ls(repository: str, *, ctx: Context | None = None) -> list[str]:
    """Tags of *repository* (the ref.names of a layout or archive)."""
    addr = _repository(repository)
    store, _ = open_source(addr, _ctx(ctx))
    with store:
        if not isinstance(store, TagLister):
            raise UsageError("cannot list tags here", where=store.name)
        return store.tags()


def catalog(registry: str, *, ctx: Context | None = None) -> list[str]:
    """Repositories of *registry*."""
    return _ctx(ctx).client(Reference(parse_host(registry), "x").api_host).catalog()


def tag(address: str, new_tag: str, *, ctx: Context | None = None) -> Descriptor:
    """Point *new_tag* (in the same repository) at the manifest of *address*."""
    addr = as_address(address)
    addr.with_tag(new_tag)  # checks the tag
    root = open_root(addr, _ctx(ctx))
    with root.store:
        root.store.tag(root.descriptor, new_tag)
    return root.descriptor


def untag(address: str, *, ctx: Context | None = None) -> None:
    """Remove the tag *address* names, and nothing else (OCI 1.1 tag deletion)."""
    addr = as_address(address)
    if not addr.has_tag or addr.has_digest:
        raise UsageError(f"{address}: name the tag to remove (REPOSITORY:TAG)")
    store = open_target(addr, _ctx(ctx), create=False)
    with store:
        if not isinstance(store, Deleter):
            raise UsageError("cannot remove tags here", where=store.name)
        store.untag(addr.tag)


def delete(address: str, *, ctx: Context | None = None) -> Descriptor:
    """Delete the manifest at *address* (a tag is resolved to its digest first)."""
    store, ident = open_source(address, _ctx(ctx))
    with store:
        if not isinstance(store, Deleter):
            raise UsageError("cannot delete here", where=store.name)
        desc = store.resolve(ident)
        store.delete(str(desc.digest))
    return desc


def target_tags(target: Address, source: Address) -> list[str]:
    """The tags a copy writes at *target* (see :meth:`Address.target_tag`).

    A docker archive names an image ``REPO:TAG``: the source's repository
    and tag, when the source is a registry.
    """
    source_tag = source.tag
    if source_tag and target.kind.tag_kind == "repo-tag":
        ref = source.reference
        source_tag = f"{ref.name}:{source.tag}" if ref is not None else ""
    tag = target.target_tag(source_tag)
    return [tag] if tag else []


def copy(
    source: str | Address,
    target: str | Address,
    *,
    platform: Platform | str | None = None,
    platforms: Iterable[Platform | str] = (),
    referrers: Referrers | bool | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Descriptor:
    """Copy the image or index at *source* to *target*; the digest is kept.

    With one *platform*, an index source is narrowed to that platform's
    image (a single image must be of that platform). With several
    *platforms*, the copy is a new index of just those images (and their
    attestations), as ``index filter`` makes it. With *referrers* (True, or
    a :class:`~luff.copy.Referrers` policy), the signatures, SBOMs and
    attestations attached to every manifest copied come along.
    """
    ctx = _ctx(ctx)
    wanted = [*([platform] if platform is not None else []), *platforms]
    src_addr, dst_addr = as_address(source), as_address(target)
    policy = as_referrers(referrers)
    if len(wanted) > 1:
        return _copy_platforms(src_addr, dst_addr, wanted, policy, ctx, progress, on_plan)
    root = open_root(src_addr, ctx)
    with root.store:
        desc, m = root.descriptor, root.manifest
        if wanted:
            desc, m = select_platform(root.store, desc, m, wanted[0])
        if dst_addr.has_digest and Digest.parse(dst_addr.digest) != desc.digest:
            raise UsageError(f"{target}: target digest differs from the source's {desc.digest}")
        tags = target_tags(dst_addr, src_addr)
        with open_target(dst_addr, ctx) as dst:
            return copy_graph(
                root.store,
                desc,
                dst,
                manifest=m,
                tags=tags,
                ctx=ctx,
                progress=progress,
                on_plan=on_plan,
                referrers=policy,
            )


def _copy_platforms(
    source: Address,
    target: Address,
    platforms: list[Platform | str],
    referrers: Referrers | None,
    ctx: Context,
    progress: Progress | None,
    on_plan: Callable[[Plan], None] | None,
) -> Descriptor:
    from luff.ops import index

    if target.has_digest:
        raise UsageError(f"{target}: copying several platforms makes a new index; name a tag")
    built = index.build_filter(str(source), platforms=platforms, ctx=ctx)
    try:
        tags = target_tags(target, source)
        with open_target(target, ctx) as dst:
            return built.push(dst, tags, progress=progress, on_plan=on_plan, referrers=referrers)
    finally:
        built.close()


def copy_all_tags(
    source: str,
    target: str,
    *,
    platform: Platform | str | None = None,
    referrers: Referrers | bool | None = None,
    ctx: Context | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> dict[str, Descriptor]:
    """Copy every tag of repository *source* to repository *target* (see :func:`copy`)."""
    ctx = _ctx(ctx)
    src, dst = _repository(source), _repository(target)
    if dst.kind.single_file:
        raise UsageError(
            f"{target}: each copy would replace the archive; --all-tags needs a "
            "registry or a layout"
        )
    out: dict[str, Descriptor] = {}
    for t in ls(source, ctx=ctx):
        out[t] = copy(
            src.with_tag(t),
            dst.with_tag(t),
            platform=platform,
            referrers=referrers,
            ctx=ctx,
            progress=progress,
            on_plan=on_plan,
        )
    return out
