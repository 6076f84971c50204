"""One registry, spoken to over the V2 API: requests with authentication, and one method per
API operation. Transfers with retries and progress are in ``pull.py`` and ``push.py``.

URLs come from :mod:`registry.routes`, except upload locations, which the registry hands out
(the spec says to follow ``Location`` as given).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urljoin

from registry import routes
from registry.client.auth import Authenticator, Body, Credentials, Request
from registry.client.errors import (
    AccessDenied,
    AuthenticationFailed,
    AuthenticationRequired,
    BlobNotFound,
    ConnectionLost,
    ManifestNotFound,
    NotFound,
    PlainHTTP,
    ProtocolError,
    RegistryUnreachable,
    ServerError,
)
from registry.client.retry import parse_retry_after
from registry.client.transport import AiohttpTransport, Response, Transport
from storage import mediatypes as mt
from storage.digest import Digest

# Every manifest kind we can use, so the registry does not down-convert (or refuse) an index.
MANIFEST_ACCEPT = ", ".join([mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST])
DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
# Manifests are small; a registry sending more than this is misbehaving.
MANIFEST_MAX_BYTES = 4 << 20


def is_loopback(registry: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1, with or without a port."""
    host = registry
    if host.startswith("["):
        host = host[1:host.find("]")]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pull_scope(name: str) -> str:
    return f"repository:{name}:pull"


def push_scope(name: str) -> str:
    return f"repository:{name}:pull,push"


class RegistryClient:
    """A client for one registry (``host[:port]`` as in a reference).

    HTTPS with verification (``tls``: a context with extra CAs or a client certificate) unless
    the registry is insecure: loopback registries and those the user marked insecure are tried,
    as docker does, over HTTPS without verification first and over plain HTTP if that fails."""

    def __init__(self, registry: str, *, credentials: Credentials | None = None,
                 insecure: bool = False, transport: Transport | None = None,
                 connections: int = 8, tls: ssl.SSLContext | None = None) -> None:
        self.registry = registry
        self.credentials = credentials
        insecure = insecure or is_loopback(registry)
        host = DOCKER_HUB_ENDPOINT if registry == DOCKER_HUB else registry
        self.base = f"https://{host}"
        # Insecure: which scheme works is settled by the first request (see _settle_scheme).
        self._fallback: str | None = f"http://{host}" if insecure else None
        self._settling = asyncio.Lock()
        self.auth = Authenticator(registry, credentials)
        self.transport: Transport = transport or AiohttpTransport(connections, verify_tls=not insecure, tls=tls)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    # -- sending ------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return urljoin(self.base, path)

    async def _settle_scheme(self) -> None:
        """For an insecure registry: keep HTTPS if it answers over TLS at all, else use HTTP."""
        async with self._settling:
            if self._fallback is None:
                return
            try:
                probe = await self.transport.send(Request("GET", urljoin(self.base, routes.base())))
                probe.release()
            except (RegistryUnreachable, ConnectionLost):
                self.base = self._fallback
            self._fallback = None

    async def send(self, request: Request) -> Response:
        """Send ``request`` through the auth flow; return the final answer (body unread).
        Raises RegistryUnreachable, ConnectionLost, and the auth errors."""
        if self._fallback is not None:
            before = self.base
            await self._settle_scheme()
            if self.base != before and request.url.startswith(before):
                request.url = self.base + request.url[len(before):]
        flow = self.auth.flow(request)
        outgoing = next(flow)
        while True:
            try:
                response = await self.transport.send(outgoing)
            except PlainHTTP:
                raise  # its message says it all, and the CLI words it with the config's path
            except RegistryUnreachable as e:
                raise RegistryUnreachable(f"registry {self.registry} is unreachable ({e})") from None
            if outgoing.read_body:
                await response.read()
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return response
            response.release()

    async def call(self, method: str, path_or_url: str, *, scopes: Iterable[str] = (),
                   headers: dict[str, str] | None = None, body: Body = None,
                   ok: tuple[int, ...] = (200,), what: str = "") -> Response:
        """Send and check: an answer outside ``ok`` becomes the matching ClientError."""
        request = Request(method, self.url(path_or_url), dict(headers or {}), body, tuple(scopes))
        response = await self.send(request)
        if response.status not in ok:
            try:
                await self._raise_for(response, what or f"{method} {path_or_url}")
            finally:
                response.release()
        return response

    async def _raise_for(self, response: Response, what: str) -> None:
        code, message = await _error_of(response)
        detail = f"{code}: {message}" if code else f"HTTP {response.status}"
        if response.status == 401:
            if self.credentials is None:
                raise AuthenticationRequired(
                    f"{self.registry} requires authentication for {what}: run 'hoist login {self.registry}'")
            raise AuthenticationFailed(f"{self.registry} refused {what} for {self.credentials.username!r} ({detail})")
        if response.status == 403:
            raise AccessDenied(f"{self.registry} denied {what} ({detail})")
        if response.status == 404:
            if code in ("BLOB_UNKNOWN",):
                raise BlobNotFound(f"{what}: blob unknown to {self.registry}")
            if code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "TAG_UNKNOWN", ""):
                raise ManifestNotFound(f"{what}: not found on {self.registry}")
            raise NotFound(f"{what}: {detail}")
        if response.status >= 500 or response.status == 429:
            raise ServerError(f"{self.registry} answered {what} with {detail}", response.status,
                              parse_retry_after(response.headers.get("Retry-After")))
        raise ProtocolError(f"{self.registry} answered {what} with {detail}")

    # -- API operations -------------------------------------------------------------------------
    async def ping(self) -> None:
        """GET /v2/, authenticating if asked: proves the registry is there and the credentials work."""
        response = await self.call("GET", routes.base(), what="the API version check")
        response.release()

    async def get_manifest(self, name: str, reference: str) -> tuple[bytes, str, str | None]:
        """(raw bytes, Content-Type, Docker-Content-Digest) of a manifest or index."""
        response = await self.call("GET", routes.manifest(name, reference), scopes=[pull_scope(name)],
                                   headers={"Accept": MANIFEST_ACCEPT}, what=f"manifest {name}:{reference}"
                                   if ":" not in reference else f"manifest {name}@{reference}")
        try:
            length = int(response.headers.get("Content-Length") or 0)
            if length > MANIFEST_MAX_BYTES:
                raise ProtocolError(f"manifest {name}:{reference} is {length} bytes; refusing it")
            raw = await response.read()
        finally:
            response.release()
        ctype = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        return raw, ctype, response.headers.get("Docker-Content-Digest")

    async def put_manifest(self, name: str, reference: str, raw: bytes, media_type: str) -> str | None:
        response = await self.call("PUT", routes.manifest(name, reference), scopes=[push_scope(name)],
                                   headers={"Content-Type": media_type}, body=raw, ok=(200, 201, 202),
                                   what=f"manifest upload to {name}:{reference}")
        response.release()
        return response.headers.get("Docker-Content-Digest")

    async def blob_exists(self, name: str, digest: Digest) -> bool:
        response = await self.call("HEAD", routes.blob(name, str(digest)), scopes=[push_scope(name)],
                                   ok=(200, 404), what=f"blob check {digest}")
        response.release()
        return response.status == 200

    async def open_blob(self, name: str, digest: Digest, offset: int = 0) -> Response:
        """The blob's bytes from ``offset`` (200 from zero, or 206 if the registry honoured Range)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return await self.call("GET", routes.blob(name, str(digest)), scopes=[pull_scope(name)],
                               headers=headers, ok=(200, 206, 416), what=f"blob {digest} of {name}")

    async def mount_blob(self, name: str, digest: Digest, from_name: str) -> str | None:
        """Ask for a cross-repository mount: None if mounted, else the upload URL the registry
        opened instead."""
        response = await self.call("POST", routes.upload_start(name, mount=str(digest), from_repo=from_name),
                                   scopes=[push_scope(name), pull_scope(from_name)], ok=(201, 202),
                                   what=f"mount of {digest} from {from_name}")
        response.release()
        return None if response.status == 201 else self._location(response)

    async def start_upload(self, name: str) -> str:
        response = await self.call("POST", routes.upload_start(name), scopes=[push_scope(name)],
                                   ok=(202,), what=f"upload to {name}")
        response.release()
        return self._location(response)

    async def upload_status(self, location: str, name: str) -> tuple[int, str]:
        """(bytes the registry holds, the upload's current URL)."""
        response = await self.call("GET", location, scopes=[push_scope(name)], ok=(204, 200),
                                   what=f"upload status in {name}")
        response.release()
        return _range_end(response.headers.get("Range")), self._location(response, location)

    async def upload_chunk(self, location: str, name: str, body: Callable[[], AsyncIterator[bytes]],
                           start: int, length: int) -> str:
        """PATCH one chunk at ``start``; return the URL for the next request."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                   "Content-Range": f"{start}-{start + length - 1}"}
        response = await self.call("PATCH", location, scopes=[push_scope(name)], headers=headers,
                                   body=body, ok=(202, 204), what=f"upload chunk at {start} in {name}")
        response.release()
        return self._location(response, location)

    async def finish_upload(self, location: str, name: str, digest: Digest,
                            body: Callable[[], AsyncIterator[bytes]] | None = None, length: int = 0) -> None:
        """PUT ?digest=: with the whole blob (monolithic) or nothing (after chunks)."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length if body else 0)}
        sep = "&" if "?" in location else "?"
        response = await self.call("PUT", f"{location}{sep}digest={digest}", scopes=[push_scope(name)],
                                   headers=headers, body=body, ok=(201, 204),
                                   what=f"upload of {digest} to {name}")
        response.release()

    async def tags(self, name: str) -> list[str]:
        response = await self.call("GET", routes.tags(name), scopes=[pull_scope(name)], what=f"tags of {name}")
        try:
            doc = json.loads(await response.read())
        except ValueError:
            raise ProtocolError(f"{self.registry} sent an invalid tag list for {name}") from None
        finally:
            response.release()
        return list(doc.get("tags") or [])

    def _location(self, response: Response, default: str | None = None) -> str:
        location = response.headers.get("Location")
        if not location:
            if default is not None:
                return default
            raise ProtocolError(f"{self.registry} opened an upload without a Location")
        return urljoin(response.url, location)


async def run_all(jobs: list[Awaitable[Any]]) -> list[Any]:
    """Run jobs concurrently; on the first failure cancel the rest and raise that failure
    itself (not an ExceptionGroup), so callers and the CLI see one clear error."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks: list[asyncio.Task[Any]] = [group.create_task(_awaited(job)) for job in jobs]
    except BaseExceptionGroup as group_error:
        first = group_error.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]


async def _awaited(job: Awaitable[Any]) -> Any:
    return await job


async def _error_of(response: Response) -> tuple[str, str]:
    """The first spec error (code, message) in an answer's body, or ("", "")."""
    try:
        body = await response.read()
    except ConnectionLost:
        return "", ""
    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        return str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, AttributeError, IndexError, TypeError):
        return "", ""


def _range_end(value: str | None) -> int:
    """Bytes held, from an upload's ``Range: 0-<last>``. Distribution answers ``0-0`` for an
    empty upload too; reading it as 0 costs at worst one byte sent again."""
    if not value:
        return 0
    try:
        last = int(value.replace("bytes=", "").split("-")[1])
    except (IndexError, ValueError):
        raise ProtocolError(f"invalid upload Range header {value!r}") from None
    return last + 1 if last > 0 else 0

