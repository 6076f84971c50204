"""HEAD/GET/DELETE /v2/<name>/blobs/<digest>."""

from __future__ import annotations

import re

from aiohttp import web

from registry.server.errors import Code, RegistryError
from registry.server.handlers.common import DIGEST_HEADER, parse_digest, repo_name, store
from registry.server.state import CONFIG
from storage.digest import Digest

_IMMUTABLE = "max-age=31536000"


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    d = parse_digest(request.match_info["digest"])
    st = store(request)
    size = await st.stat_blob(name, d)
    headers = {DIGEST_HEADER: str(d), "ETag": f'"{d}"', "Cache-Control": _IMMUTABLE,
               "Accept-Ranges": "bytes"}
    if request.method == "HEAD":
        headers["Content-Length"] = str(size)
        return web.Response(status=200, headers=headers, content_type="application/octet-stream")
    redirect = await st.blob_redirect(d)
    if redirect:
        raise web.HTTPTemporaryRedirect(redirect, headers={DIGEST_HEADER: str(d)})
    rng = byte_range(request.headers.get("Range"), request.headers.get("If-Range"), headers["ETag"], size)
    if rng is None:
        local = st.blob_local_path(d)
        if local is not None and "Range" not in request.headers:
            # sendfile. Only without Range: FileResponse would apply its own Range rules, and
            # ranges are decided by byte_range alone.
            return web.FileResponse(local, headers={**headers, "Content-Type": "application/octet-stream"})
        return await _stream_blob(request, d, 0, size - 1, 200, headers)
    start, end = rng
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return await _stream_blob(request, d, start, end, 206, headers)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$", re.ASCII | re.IGNORECASE)


def byte_range(header: str | None, if_range: str | None, etag: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range to serve per RFC 9110 section 14, or None for the whole blob.

    Ignored (whole blob, 200): no header, another unit, several ranges (allowed by 14.2, and it
    stops ``bytes=0-,0-,...`` amplification), an If-Range that is not this blob's ETag.
    Refused (416): a malformed range or first > last (invalid, 14.1.1), a first byte at or past
    the end, a zero-length suffix (``bytes=-0``: unsatisfiable, 14.1.2)."""
    if header is None or (if_range is not None and if_range.strip() != etag):
        return None
    spec = header.strip()
    if not spec.lower().startswith("bytes=") or "," in spec:
        return None
    m = _RANGE.match(spec.replace(" ", ""))
    if m is None or (not m.group(1) and not m.group(2)):
        raise _unsatisfiable(size)
    first, last = m.group(1), m.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if end < start or start >= size:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> web.HTTPRequestRangeNotSatisfiable:
    return web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})


async def _stream_blob(request: web.Request, d: Digest, start: int, end: int, status: int,
                       headers: dict[str, str]) -> web.StreamResponse:
    resp = web.StreamResponse(status=status, headers={**headers, "Content-Type": "application/octet-stream"})
    resp.content_length = end - start + 1
    await resp.prepare(request)
    if end >= start:
        async for chunk in store(request).blob_reader(d, start, end - start + 1):
            await resp.write(chunk)
    await resp.write_eof()
    return resp


async def delete_blob(request: web.Request) -> web.Response:
    name = repo_name(request)
    d = parse_digest(request.match_info["digest"])
    if not request.app[CONFIG].delete_enabled:
        raise RegistryError(Code.UNSUPPORTED, "deletion is disabled on this registry")
    await store(request).delete_blob(name, d)
    return web.Response(status=202, headers={"Content-Length": "0"})
