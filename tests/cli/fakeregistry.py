"""A small in-process V2 registry (aiohttp) that can misbehave on purpose: cut a blob download
after N bytes, cut an upload chunk after N bytes, send bytes that do not match their digest,
trickle bytes slowly, or demand bearer-token or Basic authentication. It records the requests
it saw so tests can assert on headers such as Range."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from registry import routes
from registry.routes import PATTERNS

TOKEN_PATH = "/token"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Behaviour:
    drop_blob_after: dict[str, int] = field(default_factory=dict)   # digest -> bytes sent before the cut
    drop_patch_after: int | None = None                             # first PATCH cut after N bytes
    corrupt: set[str] = field(default_factory=set)                  # digests served with a flipped byte
    trickle: dict[str, float] = field(default_factory=dict)         # digest -> seconds between 64 kB writes
    auth: str | None = None                                         # None, "bearer" or "basic"
    users: dict[str, str] = field(default_factory=dict)             # user -> password


class FakeRegistry:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.seen: list[Seen] = []
        self.tokens_issued: list[dict[str, list[str]]] = []

    # -- set-up ---------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record, self._authenticate], client_max_size=1 << 30)
        r = app.router
        r.add_get(TOKEN_PATH, self.token)
        r.add_get(PATTERNS["base"], self.base)
        r.add_route("*", PATTERNS["manifest"], self.manifest)
        r.add_route("POST", PATTERNS["upload_start"], self.upload_start)
        r.add_route("*", PATTERNS["upload"], self.upload)
        r.add_route("*", PATTERNS["blob"], self.blob)
        return app

    def add_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def add_manifest(self, name: str, refs: list[str], raw: bytes, media_type: str) -> str:
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        for ref in [*refs, digest]:
            self.manifests[(name, ref)] = (raw, media_type)
        return digest

    def seen_for(self, method: str, needle: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and needle in s.path]

    # -- middlewares ----------------------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.seen.append(Seen(request.method, request.path_qs, dict(request.headers)))
        return await handler(request)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        mode = self.behaviour.auth
        if mode is None or request.path == TOKEN_PATH:
            return await handler(request)
        given = request.headers.get("Authorization", "")
        if mode == "bearer" and given.startswith("Bearer tok-"):
            return await handler(request)
        if mode == "basic" and self._basic_ok(given):
            return await handler(request)
        if mode == "bearer":
            realm = f"http://{request.host}{TOKEN_PATH}"
            challenge = f'Bearer realm="{realm}",service="fake"'
            name = request.match_info.get("name")
            if name:
                challenge += f',scope="repository:{name}:pull"'
        else:
            challenge = 'Basic realm="fake"'
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
        return web.Response(status=401, text=body, content_type="application/json",
                            headers={"WWW-Authenticate": challenge})

    def _basic_ok(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return self.behaviour.users.get(user) == password

    # -- handlers -------------------------------------------------------------------------------
    async def token(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        if auth is not None and not self._basic_ok(auth):
            return web.Response(status=401, text="bad credentials")
        if auth is None and self.behaviour.users:
            return web.Response(status=401, text="credentials required")
        self.tokens_issued.append({"scope": request.query.getall("scope", []),
                                   "service": request.query.getall("service", [])})
        return web.json_response({"access_token": f"tok-{len(self.tokens_issued)}", "expires_in": 300})

    async def base(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        key = (request.match_info["name"], request.match_info["reference"])
        if request.method == "PUT":
            raw = await request.read()
            digest = self.add_manifest(key[0], [key[1]], raw, request.content_type)
            return web.Response(status=201, headers={"Docker-Content-Digest": digest})
        if key not in self.manifests:
            return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        raw, ctype = self.manifests[key]
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        return web.Response(body=raw if request.method == "GET" else None, content_type=None,
                            headers={"Content-Type": ctype, "Docker-Content-Digest": digest,
                                     "Content-Length": str(len(raw))})

    async def blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        data = self.blobs.get(digest)
        if data is None:
            return _error(404, "BLOB_UNKNOWN", "blob unknown")
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": str(len(data)), "Docker-Content-Digest": digest})
        if digest in self.behaviour.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = _range_start(request.headers.get("Range"))
        status = 206 if start else 200
        headers = {"Content-Length": str(len(data) - start), "Content-Type": "application/octet-stream"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        cut = self.behaviour.drop_blob_after.pop(digest, None)
        body = data[start:cut] if cut is not None else data[start:]
        delay = self.behaviour.trickle.get(digest)
        step = 64 << 10 if delay else 1 << 20
        for offset in range(0, len(body), step):
            await response.write(body[offset:offset + step])
            if delay:
                await asyncio.sleep(delay)
        if cut is not None:
            # Let the client read what was sent, then cut the connection mid-body.
            await asyncio.sleep(0.3)
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response

    async def upload_start(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        mount, source = request.query.get("mount"), request.query.get("from")
        if mount and source and mount in self.blobs:
            return web.Response(status=201, headers={"Location": routes.blob(name, mount)})
        upload_id = uuid.uuid4().hex
        self.uploads[upload_id] = bytearray()
        return _upload_answer(name, upload_id, 0)

    async def upload(self, request: web.Request) -> web.StreamResponse:
        name, upload_id = request.match_info["name"], request.match_info["uuid"]
        held = self.uploads.get(upload_id)
        if held is None:
            return _error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
        if request.method == "GET":
            return _upload_answer(name, upload_id, len(held), status=204)
        if request.method == "PATCH":
            start = int(request.headers.get("Content-Range", f"{len(held)}-").split("-")[0])
            if start != len(held):
                return _error(416, "BLOB_UPLOAD_INVALID", f"expected offset {len(held)}, got {start}")
            cut, self.behaviour.drop_patch_after = self.behaviour.drop_patch_after, None
            if cut is not None:
                held += await request.content.readexactly(cut)
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            held += await request.read()
            return _upload_answer(name, upload_id, len(held))
        if request.method == "PUT":
            held += await request.read()
            digest = request.query.get("digest", "")
            if "sha256:" + hashlib.sha256(held).hexdigest() != digest:
                return _error(400, "DIGEST_INVALID", "digest mismatch")
            self.blobs[digest] = bytes(held)
            del self.uploads[upload_id]
            return web.Response(status=201, headers={"Docker-Content-Digest": digest,
                                                     "Location": routes.blob(name, digest)})
        return _error(405, "UNSUPPORTED", "method not allowed")


def _range_start(header: str | None) -> int:
    if not header:
        return 0
    return int(header.removeprefix("bytes=").split("-")[0])


def _upload_answer(name: str, upload_id: str, held: int, status: int = 202) -> web.Response:
    return web.Response(status=status, headers={
        "Location": routes.upload(name, upload_id),
        "Range": f"0-{max(held - 1, 0)}", "Docker-Upload-UUID": upload_id})


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps({"errors": [{"code": code, "message": message}]}))
