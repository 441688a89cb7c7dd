"""Manifests over HTTP: get, put (with conditional writes), delete; tag lists and referrers.

A manifest is bounded by :data:`~luff.model.manifest.MAX_MANIFEST` bytes and
:data:`MAX_JSON_DEPTH` levels of nesting, and is parsed in a worker thread. A
PUT is checked (media type, digest, ``If-Match``/``If-None-Match``, the blobs
and manifests it references) and applied with nothing awaited in between, so
conditional writes are atomic with respect to other requests.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from luff.errors import LuffError
from luff.model import mediatypes as mt
from luff.model.digest import Digest
from luff.model.jsonutil import MAX_DEPTH, too_deep
from luff.model.manifest import MAX_MANIFEST, Manifest
from luff.model.referrers import referrer_descriptor
from luff.record import replace
from luff.server.api import TAG_RE, ApiError, check_name, head_response, paginate, parse_digest
from luff.server.auth import Access
from luff.server.gate import Gate
from luff.server.storage import Storage

#: Manifests nested deeper than this (arrays and objects) are refused as invalid.
MAX_JSON_DEPTH = MAX_DEPTH


def _parse_manifest(data: bytes, ctype: str) -> Manifest:
    if too_deep(data):
        raise ApiError(
            400,
            "MANIFEST_INVALID",
            f"manifest JSON nests deeper than {MAX_JSON_DEPTH} levels",
        )
    try:
        return Manifest.parse(data, ctype)
    except LuffError as e:
        raise ApiError(400, "MANIFEST_INVALID", str(e)) from None
    except RecursionError:  # pragma: no cover - too_deep keeps well below the limit
        raise ApiError(400, "MANIFEST_INVALID", "manifest JSON nests too deep") from None


def _entity_tags(header: str) -> list[str] | None:
    """The entity tags of an ``If-Match``/``If-None-Match`` header; None for ``*``.

    Weak tags keep their ``W/`` prefix (they never match strongly).
    """
    if header.strip() == "*":
        return None
    out = []
    for part in header.split(","):
        part = part.strip()
        weak = part.startswith("W/")
        if weak:
            part = part[2:]
        if len(part) >= 2 and part[0] == part[-1] == '"':
            part = part[1:-1]
        if part:
            out.append(("W/" if weak else "") + part)
    return out


@dataclass
class Manifests:
    """The manifest, tag list and referrers handlers over a :class:`Storage`."""

    storage: Storage
    gate: Gate

    async def tags(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = check_name(m["name"])
        await self.gate.authorize(request, [Access("repository", name, "pull")])
        if not self.storage.has_repository(name):
            raise ApiError(404, "NAME_UNKNOWN", "repository name not known to registry")
        tags, headers = paginate(request, self.storage.tags(name), f"/v2/{name}/tags/list")
        return web.json_response({"name": name, "tags": tags}, headers=headers)

    def _lookup(self, name: str, ref: str) -> tuple[Digest, str]:
        st = self.storage
        if ":" in ref:
            d = parse_digest(ref)
        else:
            if not TAG_RE.match(ref):
                # No manifest can have an invalid tag: unknown (as the spec's conformance
                # suite expects), not a malformed request.
                raise ApiError(
                    404, "MANIFEST_UNKNOWN", "manifest unknown (invalid tag)", {"tag": ref}
                )
            found = st.get_tag(name, ref)
            if found is None:
                if not st.has_repository(name):
                    raise ApiError(404, "NAME_UNKNOWN", "repository name not known to registry")
                raise ApiError(404, "MANIFEST_UNKNOWN", "manifest unknown", {"tag": ref})
            d = found
        media = st.manifest_type(name, d)
        if media is None:
            raise ApiError(404, "MANIFEST_UNKNOWN", "manifest unknown", {"digest": str(d)})
        return d, media

    async def get_manifest(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = check_name(m["name"])
        await self.gate.authorize(request, [Access("repository", name, "pull")])
        d, media = self._lookup(name, m["ref"])
        data = self.storage.blob_bytes(d)
        headers = {"Docker-Content-Digest": str(d), "ETag": f'"{d}"'}
        if request.method == "HEAD":
            return await head_response(request, {**headers, "Content-Type": media}, len(data))
        return web.Response(body=data, headers={**headers, "Content-Type": media})

    async def _read_manifest(self, request: web.Request) -> bytes:
        cl = request.content_length
        if cl is not None and cl > MAX_MANIFEST:
            raise ApiError(413, "SIZE_INVALID", f"manifest larger than {MAX_MANIFEST} bytes")
        parts = []
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
            if total > MAX_MANIFEST:
                raise ApiError(413, "SIZE_INVALID", f"manifest larger than {MAX_MANIFEST} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def put_manifest(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = check_name(m["name"])
        await self.gate.authorize(request, [Access("repository", name, "push")])
        ref = m["ref"]
        by_digest = ":" in ref
        if not by_digest and not TAG_RE.match(ref):
            raise ApiError(400, "MANIFEST_INVALID", "invalid tag", {"tag": ref})
        data = await self._read_manifest(request)
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        man = await asyncio.to_thread(_parse_manifest, data, ctype)
        # From here to the tag update nothing awaits: the precondition check and
        # the update are atomic with respect to other requests.
        if mt.is_manifest(ctype) and ctype != man.media_type:
            raise ApiError(
                400,
                "MANIFEST_INVALID",
                f"Content-Type {ctype} does not match the manifest's mediaType {man.media_type}",
            )
        if by_digest:
            want = parse_digest(ref)
            d = Digest.of(data, want.algorithm)
            if d != want:
                raise ApiError(
                    400,
                    "DIGEST_INVALID",
                    "manifest digest did not match the reference",
                    {"digest": ref, "computed": str(d)},
                )
        else:
            d = Digest.of(data)
        st = self.storage
        if by_digest:
            current = d if st.manifest_type(name, d) is not None else None
        else:
            current = st.get_tag(name, ref)
        self._check_preconditions(request, ref, current)
        self._check_references(name, man)
        st.put_small_blob(d, data)
        st.link_manifest(name, d, man.media_type)
        st.link_blob(name, d)
        if not by_digest:
            st.set_tag(name, ref, d)
        headers = {
            "Location": f"/v2/{name}/manifests/{d}",
            "Docker-Content-Digest": str(d),
        }
        subject = man.subject
        if subject is not None:
            st.add_referrer(name, subject.digest, _referrer_descriptor(man, d))
            headers["OCI-Subject"] = str(subject.digest)
        return web.Response(status=201, headers=headers)

    def _check_preconditions(self, request: web.Request, ref: str, current: Digest | None) -> None:
        """``If-Match``/``If-None-Match`` of a manifest PUT against *current* (RFC 9110 13.2.2).

        The entity tag of a manifest is its quoted digest (the ``ETag`` of GET/HEAD).
        """
        what = f"tag {ref}" if ":" not in ref else f"manifest {ref}"
        cur = str(current) if current is not None else None
        headers = {"ETag": f'"{cur}"'} if cur else {}
        detail = {"reference": ref, "current": cur}
        if_match = request.headers.get("If-Match")
        if if_match is not None:
            tags = _entity_tags(if_match)
            if cur is None or (tags is not None and cur not in tags):
                if cur is None:
                    msg = f"precondition failed: {what} does not exist (If-Match)"
                else:
                    msg = (
                        f"precondition failed: {what} moved: it is now {cur}, "
                        f"not what If-Match names"
                    )
                raise ApiError(412, "PRECONDITION_FAILED", msg, detail, headers)
        if_none = request.headers.get("If-None-Match")
        if if_none is not None and cur is not None:
            tags = _entity_tags(if_none)
            if tags is None or cur in tags or f"W/{cur}" in tags:
                raise ApiError(
                    412,
                    "PRECONDITION_FAILED",
                    f"precondition failed: {what} already exists ({cur}) (If-None-Match)",
                    detail,
                    headers,
                )

    def _check_references(self, name: str, man: Manifest) -> None:
        st = self.storage
        missing: list[str] = []
        if man.is_index:
            for child in man.manifests:
                if st.manifest_type(name, child.digest) is None:
                    missing.append(str(child.digest))
        else:
            for b in man.blobs():
                if b.urls and b.media_type == mt.DOCKER_FOREIGN_LAYER:
                    continue  # foreign layers live elsewhere
                if not st.has_blob(name, b.digest):
                    missing.append(str(b.digest))
        if missing:
            raise ApiError(
                400,
                "MANIFEST_BLOB_UNKNOWN",
                f"manifest references {len(missing)} unknown blob(s), e.g. {missing[0]}",
                {"digest": missing[0], "missing": missing},
            )

    async def delete_manifest(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = check_name(m["name"])
        await self.gate.authorize(request, [Access("repository", name, "delete")])
        ref = m["ref"]
        st = self.storage
        if ":" not in ref:
            if not TAG_RE.match(ref) or not st.delete_tag(name, ref):
                raise ApiError(404, "MANIFEST_UNKNOWN", "manifest unknown", {"tag": ref})
            return web.Response(status=202)
        d, media = self._lookup(name, ref)
        try:
            subject = Manifest.parse(st.blob_bytes(d), media).subject
        except LuffError:
            subject = None
        # Crash-safe order: tags, then the manifest (unlink_manifest does both), then
        # its referrer entry; whatever a crash leaves, DiskStorage.repair removes.
        st.unlink_manifest(name, d)
        if subject is not None:
            st.remove_referrer(name, subject.digest, d)
        st.unlink_blob(name, d)
        return web.Response(status=202)

    # --- referrers --------------------------------------------------------
    async def referrers(self, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
        name = check_name(m["name"])
        await self.gate.authorize(request, [Access("repository", name, "pull")])
        d = parse_digest(m["digest"])
        entries = self.storage.referrers(name, d)
        headers = {}
        want = request.query.get("artifactType")
        if want:
            entries = [e for e in entries if e.get("artifactType") == want]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
        return web.Response(
            body=json.dumps(body).encode(),
            headers={**headers, "Content-Type": mt.OCI_INDEX},
        )


def _referrer_descriptor(man: Manifest, d: Digest) -> dict[str, Any]:
    # *d* is the digest the manifest was put by (sha512 too), not always man.digest.
    return replace(referrer_descriptor(man), digest=d).to_dict()
