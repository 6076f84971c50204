"""How requests reach a registry: a small transport interface, the aiohttp one, and an
in-memory one that routes requests to a Python handler (for client tests without a network).

Transports translate their backend's exceptions: a connection that cannot be opened raises
:class:`RegistryUnreachable`; one that drops mid-request or mid-body raises
:class:`ConnectionLost`. Nothing from aiohttp leaks past this module.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Protocol
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from registry.client.auth import Request
from registry.client.errors import ConnectionLost, RegistryUnreachable

# Bytes asked of the socket per read; large reads keep per-chunk overhead low on fast links.
READ_CHUNK = 1 << 20


class Response(Protocol):
    status: int
    url: str
    body: bytes | None

    @property
    def headers(self) -> Mapping[str, str]:
        """Read-only, so a transport may keep its own (case-insensitive) mapping."""

    async def read(self) -> bytes:
        """The whole body (kept in ``body``). Raises ConnectionLost."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives. Raises ConnectionLost."""

    def release(self) -> None:
        """Give the connection back (or drop it if the body was not read)."""


class Transport(Protocol):
    async def send(self, request: Request) -> Response:
        """Send one request; the answer's headers are in, its body is not read yet.
        Raises RegistryUnreachable or ConnectionLost."""

    async def close(self) -> None:
        ...


# -- aiohttp ------------------------------------------------------------------------------------

_DROPS = (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
          asyncio.TimeoutError, ConnectionResetError)


class AiohttpResponse:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: CIMultiDictProxy[str] = resp.headers
        self.url = str(resp.url)
        self.body: bytes | None = None

    async def read(self) -> bytes:
        try:
            self.body = await self._resp.read()
        except _DROPS as e:
            raise ConnectionLost(f"connection to {self._resp.url.host} dropped: {e or type(e).__name__}") from None
        return self.body

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await self._resp.content.read(READ_CHUNK):
                yield chunk
        except _DROPS as e:
            raise ConnectionLost(f"connection to {self._resp.url.host} dropped: {e or type(e).__name__}") from None

    def release(self) -> None:
        self._resp.release()


class AiohttpTransport:
    """HTTP(S) over one pooled aiohttp session. ``connections`` bounds concurrent connections
    per registry; ``verify_tls=False`` is for registries the user marked insecure."""

    def __init__(self, connections: int = 8, verify_tls: bool = True, tls: ssl.SSLContext | None = None) -> None:
        self.connections, self.verify_tls, self.tls = connections, verify_tls, tls
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            tls: ssl.SSLContext | bool = (self.tls or True) if self.verify_tls else False
            connector = aiohttp.TCPConnector(limit_per_host=self.connections, ssl=tls)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                                  auto_decompress=False)
        return self._session

    async def send(self, request: Request) -> AiohttpResponse:
        session = self._open()
        data = request.body() if callable(request.body) else request.body
        try:
            resp = await session.request(request.method, request.url, headers=request.headers,
                                         data=data, allow_redirects=True)
        except aiohttp.ClientConnectorCertificateError as e:
            reason = getattr(e.certificate_error, "reason", e.certificate_error)
            raise RegistryUnreachable(
                f"the TLS certificate of {e.host}:{e.port} is not trusted ({reason}): "
                f"put its CA in certs.d/{e.host}:{e.port}/ca.crt, or mark the registry insecure") from None
        except aiohttp.ClientConnectorError as e:
            raise RegistryUnreachable(f"cannot reach {e.host}:{e.port}: {e.os_error.strerror or e}") from None
        except aiohttp.ClientSSLError as e:
            raise RegistryUnreachable(f"TLS failure talking to {request.url}: {e}") from None
        except _DROPS as e:
            raise ConnectionLost(f"connection dropped during {request.method} {request.url}: "
                                 f"{e or type(e).__name__}") from None
        except aiohttp.InvalidURL as e:
            raise RegistryUnreachable(f"invalid registry URL {e}") from None
        return AiohttpResponse(resp)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# -- in memory ----------------------------------------------------------------------------------

@dataclass
class MemoryResponse:
    status: int
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    data: bytes = b""
    url: str = ""
    body: bytes | None = None

    async def read(self) -> bytes:
        self.body = self.data
        return self.data

    async def chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), READ_CHUNK):
            yield self.data[start:start + READ_CHUNK]

    def release(self) -> None:
        pass


Handler = Callable[[Request, bytes], Awaitable[MemoryResponse]]


class MemoryTransport:
    """Routes each request (with its body collected) to ``handler``; records what was sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sent: list[Request] = []

    async def send(self, request: Request) -> MemoryResponse:
        body = request.body
        if callable(body):
            body = b"".join([chunk async for chunk in body()])
        self.sent.append(Request(request.method, request.url, dict(request.headers), body,
                                 request.scopes, request.read_body))
        response = await self.handler(request, body or b"")
        response.url = response.url or request.url
        return response

    async def close(self) -> None:
        pass
