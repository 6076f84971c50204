"""How requests reach a registry: a small transport interface, the aiohttp one, and an
in-memory one that routes requests to a Python handler (for client tests without a network).

Transports translate their backend's exceptions: a connection that cannot be opened raises
:class:`RegistryUnreachable`; one that drops mid-request or mid-body raises
:class:`ConnectionLost`. Nothing from aiohttp leaks past this module.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from registry.client.auth import Request
from registry.client.auth import Response as ResponseHead
from registry.client.errors import ConnectionLost, PlainHTTP, RegistryUnreachable
from registry.client.lazytls import deferred_default_cas

with deferred_default_cas():    # aiohttp's import-time CA loads (~0.1 s), deferred to first use
    import aiohttp

if TYPE_CHECKING:
    from aiohttp import web

# Bytes asked of the socket per read; large reads keep per-chunk overhead low on fast links.
READ_CHUNK = 1 << 20


class Response(ResponseHead, Protocol):
    """What the authenticator reads (status, headers, body), plus the URL and the body's reading."""

    @property
    def url(self) -> str: ...

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


def _plain_http_answer(e: aiohttp.ClientSSLError) -> bool:
    """OpenSSL's words for a server that answered the ClientHello with a plain-HTTP response
    ("HTTP/1.1 400 ..." read as a TLS record header)."""
    text = f"{e} {getattr(e, 'os_error', '')}".lower()
    return any(word in text for word in ("wrong_version_number", "wrong version number", "record_layer_failure"))


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

    def _connector(self) -> aiohttp.BaseConnector:
        tls: ssl.SSLContext | bool = (self.tls or True) if self.verify_tls else False
        return aiohttp.TCPConnector(limit_per_host=self.connections, ssl=tls)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = self._connector()
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
            raise RegistryUnreachable(
                f"the TLS certificate of {e.host}:{e.port} is not trusted "
                f"({getattr(e.certificate_error, 'reason', None) or e.certificate_error}): "
                f"put its CA in certs.d/{e.host}:{e.port}/ca.crt, or mark the registry insecure") from None
        except aiohttp.ClientSSLError as e:
            if _plain_http_answer(e):
                url = urlsplit(request.url)
                raise PlainHTTP(f"{url.hostname}:{url.port or 443}") from None
            raise RegistryUnreachable(f"TLS failure talking to {request.url}: {e}") from None
        except aiohttp.ClientConnectorError as e:
            raise RegistryUnreachable(f"cannot reach {e.host}:{e.port}: {e.os_error.strerror or e}") from None
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


# -- an application in process ---------------------------------------------------------------

class _AppConnector(aiohttp.BaseConnector):
    """Each connection is a socket pair inside this process: the client end is aiohttp's own
    protocol, the other end the application's server protocol. No port, no network."""

    def __init__(self, server: web.Server, connections: int) -> None:
        super().__init__(limit_per_host=connections)
        self._server = server

    async def _create_connection(self, req: aiohttp.ClientRequest, traces: list[Any],
                                 timeout: aiohttp.ClientTimeout) -> Any:  # noqa: ASYNC109 (aiohttp's signature)
        ours, theirs = socket.socketpair()
        await self._loop.connect_accepted_socket(self._server, sock=theirs)
        _, protocol = await self._loop.create_connection(self._factory, sock=ours)
        return protocol


class AppTransport(AiohttpTransport):
    """An aiohttp application (the registry's ``create_app(...)``, with whatever middleware a
    test adds) served in process: real HTTP/1.1 through aiohttp's client and server protocols,
    so a fault the application causes (a dropped connection, a short body) reaches the client
    as it would over a network. Any registry name works; the scheme is not negotiated."""

    def __init__(self, app: web.Application, connections: int = 8) -> None:
        super().__init__(connections, verify_tls=False)
        self.app = app
        self._runner: web.AppRunner | None = None

    def _connector(self) -> aiohttp.BaseConnector:
        assert self._runner is not None and self._runner.server is not None
        return _AppConnector(self._runner.server, self.connections)

    async def send(self, request: Request) -> AiohttpResponse:
        if self._runner is None:
            from aiohttp import web
            self._runner = web.AppRunner(self.app, access_log=None)
            await self._runner.setup()
        return await super().send(request)

    async def close(self) -> None:
        await super().close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


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
