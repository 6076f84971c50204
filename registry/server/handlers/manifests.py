"""HEAD/GET/PUT/DELETE /v2/<name>/manifests/<reference> (a tag or a digest)."""

from __future__ import annotations

from aiohttp import web

from registry import routes
from registry.server.errors import Code, RegistryError, from_domain
from registry.server.handlers.common import (
    DIGEST_HEADER,
    SUBJECT_HEADER,
    TAG_HEADER,
    content_length,
    parse_digest,
    repo_name,
    store,
)
from registry.server.state import CONFIG
from storage import mediatypes as mt
from storage.errors import DomainError
from storage.manifest import parse_manifest
from storage.registry import StoredManifest


def _reference(request: web.Request) -> str:
    ref = request.match_info["reference"]
    if ":" in ref:
        parse_digest(ref, "reference")
    return ref


def _accepted(request: web.Request) -> set[str] | None:
    """Media types the client accepts, or None when it accepts anything."""
    values = request.headers.getall("Accept", [])
    types = {part.split(";")[0].strip() for v in values for part in v.split(",")}
    types.discard("")
    if not types or "*/*" in types:
        return None
    return types


async def _negotiate(request: web.Request, name: str, ref: str, m: StoredManifest) -> StoredManifest:
    """Serve the manifest as stored when the client accepts its type. For an index fetched by
    tag by a client that takes only image manifests, serve the linux/amd64 child (as
    Distribution does for old clients); otherwise MANIFEST_UNKNOWN, as Distribution answers."""
    accepted = _accepted(request)
    if accepted is None or m.media_type in accepted:
        return m
    if m.media_type in mt.INDEXES and ":" not in ref and accepted & mt.IMAGE_MANIFESTS:
        index = parse_manifest(m.raw, m.media_type)
        for desc in index.manifests:
            p = desc.platform or {}
            if p.get("os") == "linux" and p.get("architecture") == "amd64" and desc.media_type in accepted:
                return await store(request).get_manifest(name, str(desc.digest))
    raise RegistryError(Code.MANIFEST_UNKNOWN, f"manifest is {m.media_type}, which the Accept header "
                        f"does not allow", {"reference": ref})


async def get_manifest(request: web.Request) -> web.Response:
    name = repo_name(request)
    ref = _reference(request)
    m = await store(request).get_manifest(name, ref)
    m = await _negotiate(request, name, ref, m)
    headers = {DIGEST_HEADER: str(m.digest), "ETag": f'"{m.digest}"'}
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(m.raw))
        headers["Content-Type"] = m.media_type
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, body=m.raw, headers={**headers, "Content-Type": m.media_type})


async def put_manifest(request: web.Request) -> web.Response:
    name = repo_name(request)
    ref = _reference(request)
    limit = request.app[CONFIG].max_manifest_bytes
    length = content_length(request)
    if length is not None and length > limit:
        raise RegistryError(Code.SIZE_INVALID, f"manifest is {length} bytes; the limit is {limit}", status=413)
    raw = await _read_limited(request, limit)
    # OCI 1.1+: a push by digest may name tags to set in the same request (?tag=a&tag=b).
    extra_tags = tuple(request.query.getall("tag", [])) if ":" in ref else ()
    try:
        d, m = await store(request).put_manifest(name, ref, raw, request.headers.get("Content-Type"), extra_tags)
    except DomainError as e:
        raise from_domain(e, "manifest-put") from None
    resp = web.Response(status=201, headers={"Location": routes.manifest(name, str(d)), DIGEST_HEADER: str(d),
                                             "Content-Length": "0"})
    if m.subject is not None:
        resp.headers[SUBJECT_HEADER] = str(m.subject.digest)
    for tag in extra_tags:
        resp.headers.add(TAG_HEADER, tag)
    return resp


async def _read_limited(request: web.Request, limit: int) -> bytes:
    chunks, total = [], 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if total > limit:
            raise RegistryError(Code.SIZE_INVALID, f"manifest exceeds the limit of {limit} bytes", status=413)
        chunks.append(chunk)
    raw = b"".join(chunks)
    length = content_length(request)
    if length is not None and len(raw) != length:
        raise RegistryError(Code.SIZE_INVALID, f"body has {len(raw)} bytes, Content-Length said {length}")
    return raw


async def delete_manifest(request: web.Request) -> web.Response:
    name = repo_name(request)
    ref = _reference(request)
    if not request.app[CONFIG].delete_enabled:
        raise RegistryError(Code.UNSUPPORTED, "deletion is disabled on this registry")
    st = store(request)
    if ":" in ref:
        await st.delete_manifest(name, parse_digest(ref))
    else:
        await st.delete_tag(name, ref)
    return web.Response(status=202, headers={"Content-Length": "0"})
