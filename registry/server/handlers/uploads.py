"""Blob uploads: POST (start, monolithic, mount), PATCH (chunks), PUT (finish), GET (status),
DELETE (cancel) on /v2/<name>/blobs/uploads/[<uuid>].

A PATCH or PUT holds the upload's lock (``RegistryStore.upload_lock``: across processes on a
filesystem root) and writes only at the offset the upload had when the request arrived, so of
two copies of one chunk (a client retrying after a timeout) the second gets 416 and the upload
keeps one copy."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from aiohttp import web

from registry import routes
from registry.server.auth import mount_origin
from registry.server.errors import Code, RegistryError
from registry.server.handlers.common import (
    DIGEST_HEADER,
    SESSION_ID_HEADER,
    UPLOAD_UUID_HEADER,
    content_length,
    parse_digest,
    repo_name,
    store,
)
from storage.digest import Digest
from storage.errors import DigestInvalid, SizeInvalid, UploadOffsetMismatch
from storage.registry import Upload

_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")


def _range(size: int) -> str:
    # Inclusive end, as Distribution reports it ("0-0" for an empty upload).
    return f"0-{max(size - 1, 0)}"


def _upload_headers(upload: Upload) -> dict[str, str]:
    return {
        "Location": routes.upload(upload.name, upload.id),
        "Range": _range(upload.size),
        UPLOAD_UUID_HEADER: upload.id,
        SESSION_ID_HEADER: upload.id,
        "Content-Length": "0",
    }


def _created(name: str, d: Digest) -> web.Response:
    return web.Response(status=201, headers={
        "Location": routes.blob(name, str(d)), DIGEST_HEADER: str(d), "Content-Length": "0",
    })


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_any():
        yield chunk


def _range_error(message: str, upload: Upload) -> RegistryError:
    return RegistryError(Code.BLOB_UPLOAD_INVALID, message, status=416,
                         headers={k: v for k, v in _upload_headers(upload).items() if k != "Content-Length"})


def _check_content_range(request: web.Request, upload: Upload, length: int | None) -> None:
    """Chunks must arrive in order: a Content-Range must start at the upload's offset (else 416)."""
    header = request.headers.get("Content-Range")
    if header is None:
        return
    m = _CONTENT_RANGE.match(header.strip())
    bad = m is None
    if m:
        start, end = int(m.group(1)), int(m.group(2))
        bad = start != upload.size or end < start or (length is not None and end - start + 1 != length)
    if bad:
        raise _range_error(f"Content-Range {header[:80]!r} does not continue the upload at offset "
                           f"{upload.size}", upload)


async def _receive(request: web.Request, upload: Upload) -> Upload:
    """Append the body at ``upload.size``; call it holding the upload's lock."""
    length = content_length(request)
    if length == 0:
        return upload
    try:
        return await store(request).append_upload(upload, _body(request), length)
    except SizeInvalid as e:
        raise RegistryError(Code.SIZE_INVALID, str(e)) from None
    except UploadOffsetMismatch as e:
        raise _range_error(f"another request moved the upload to offset {e.size}; this one "
                           f"was written for offset {e.expected}",
                           Upload(upload.name, upload.id, e.size)) from None


async def start_upload(request: web.Request) -> web.Response:
    name = repo_name(request)
    st = store(request)
    q = request.query
    mount = q.get("mount")
    if mount is not None:
        try:
            d = Digest.parse(mount)
        except DigestInvalid:
            d = None
        # A failed mount falls back to a plain upload session (spec: 202); so does a mount
        # from a repository the caller may not read (with or without from=).
        allowed, source = await mount_origin(request, d, q.get("from")) if d is not None else (False, None)
        if d is not None and allowed and await st.mount_blob(name, d, source):
            return _created(name, d)
    elif "digest" in q:
        d = parse_digest(q.get("digest"))
        upload = await st.start_upload(name)
        try:
            upload = await _receive(request, upload)
            await st.finish_upload(upload, d)
        except BaseException:
            await _discard(request, upload)
            raise
        return _created(name, d)
    upload = await st.start_upload(name)
    return web.Response(status=202, headers=_upload_headers(upload))


async def _discard(request: web.Request, upload: Upload) -> None:
    try:
        await store(request).cancel_upload(upload.name, upload.id)
    except Exception:
        pass


async def _get(request: web.Request) -> Upload:
    name = repo_name(request)
    return await store(request).get_upload(name, request.match_info["uuid"])


async def patch_upload(request: web.Request) -> web.Response:
    upload = await _get(request)
    _check_content_range(request, upload, content_length(request))
    async with store(request).upload_lock(upload):
        upload = await _receive(request, upload)
    return web.Response(status=202, headers=_upload_headers(upload))


async def put_upload(request: web.Request) -> web.Response:
    upload = await _get(request)
    d = parse_digest(request.query.get("digest"))
    _check_content_range(request, upload, content_length(request))
    st = store(request)
    async with st.upload_lock(upload):
        upload = await _receive(request, upload)
        # What this request appended is all the upload holds only if no one else wrote meanwhile.
        current = await st.get_upload(upload.name, upload.id)
        if current.size != upload.size:
            raise _range_error(f"the upload moved to offset {current.size} meanwhile", current)
        await st.finish_upload(upload, d)
    return _created(upload.name, d)


async def get_upload(request: web.Request) -> web.Response:
    upload = await _get(request)
    return web.Response(status=204, headers=_upload_headers(upload))


async def delete_upload(request: web.Request) -> web.Response:
    upload = await _get(request)
    await store(request).cancel_upload(upload.name, upload.id)
    return web.Response(status=204, headers={"Content-Length": "0"})
