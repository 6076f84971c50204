"""HEAD/GET/DELETE /v2/<name>/blobs/<digest>."""

from __future__ import annotations

from aiohttp import web

from registry.server.errors import RegistryError
from registry.server.handlers.common import DIGEST_HEADER, parse_digest, repo_name, store
from registry.server.state import CONFIG

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
    local = st.blob_local_path(d)
    if local is not None:
        # sendfile, with Range / If-Range / If-None-Match handled by aiohttp per RFC 9110.
        resp = web.FileResponse(local, headers={**headers, "Content-Type": "application/octet-stream"})
        return resp
    return await _stream_blob(request, d, size, headers)


async def _stream_blob(request: web.Request, d, size: int, headers: dict[str, str]) -> web.StreamResponse:
    start, end = 0, size - 1
    status = 200
    rng = request.http_range
    if request.headers.get("Range"):
        try:
            s = rng.start if rng.start is not None else 0
            e = (rng.stop - 1) if rng.stop is not None else size - 1
            if rng.start is not None and rng.start < 0:
                s, e = max(0, size + rng.start), size - 1
        except ValueError:
            s, e = 0, size - 1
        if s >= size or s > e:
            raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        start, end, status = s, min(e, size - 1), 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    resp = web.StreamResponse(status=status, headers={**headers, "Content-Type": "application/octet-stream"})
    resp.content_length = end - start + 1
    await resp.prepare(request)
    async for chunk in store(request).blob_reader(d, start, end - start + 1):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def delete_blob(request: web.Request) -> web.Response:
    name = repo_name(request)
    d = parse_digest(request.match_info["digest"])
    if not request.app[CONFIG].delete_enabled:
        raise RegistryError("UNSUPPORTED", "deletion is disabled on this registry")
    await store(request).delete_blob(name, d)
    return web.Response(status=202, headers={"Content-Length": "0"})
