"""A fault-injecting aiohttp middleware for the real registry application (``create_app``):
the client's retry and resume paths are tested against the real server, in process
(``AppTransport``) or on loopback (:func:`serve_on_loopback`), made to misbehave on purpose.

Each :class:`Fault` matches requests by method and a substring of the path and fires ``times``
times; the middleware also records every request it saw (method, path with query, headers).

kinds:
  ``status``       answer ``status`` (500, 429 ...) with a spec error body, ``Retry-After`` if given
  ``drop_body``    send ``after`` bytes of the answer's body, then close the connection
  ``truncate``     answer with only ``after`` bytes of the body (Content-Length says so), cleanly
  ``corrupt``      flip the first byte of the body (the digest no longer matches)
  ``drop_request`` read ``after`` bytes of the request's body, then close the connection unanswered
  ``drop_answer``  let the server handle the request fully, then close instead of answering
  ``trickle``      send the body ``after`` bytes at a time, ``delay`` seconds apart

``skip`` lets that many matching requests through before the fault fires.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from registry.server.app import create_app
from registry.server.config import Config
from storage.drivers.memory import MemoryDriver

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Fault:
    method: str
    path: str                      # a substring of the request's path
    kind: str
    after: int = 0
    status: int = 500
    retry_after: str | None = None
    times: int = 1
    skip: int = 0
    delay: float = 0.0


@dataclass
class Faults:
    pending: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def add(self, method: str, path: str, kind: str, **options: Any) -> Fault:
        fault = Fault(method, path, kind, **options)
        self.pending.append(fault)
        return fault

    def seen_for(self, method: str, needle: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and needle in s.path]

    def _take(self, request: web.Request) -> Fault | None:
        for fault in self.pending:
            if fault.method == request.method and fault.path in request.path and fault.times > 0:
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                return fault
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path_qs, dict(request.headers)))
        fault = self._take(request)
        if fault is None:
            return await handler(request)
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            code = "TOOMANYREQUESTS" if fault.status == 429 else "UNAVAILABLE"
            return web.Response(status=fault.status, headers=headers, content_type="application/json",
                                text=json.dumps({"errors": [{"code": code, "message": "injected fault"}]}))
        if fault.kind == "drop_request":
            await request.content.readexactly(fault.after)
            _close(request)
            return web.Response(status=500)
        if fault.kind == "drop_answer":
            response = await handler(request)
            _close(request)
            return response
        # The body faults sit between the response and the connection (aiohttp keeps the
        # connection's writer on the request; the response takes it from there when prepared).
        request._payload_writer = _BodyFault(request, fault)  # type: ignore[assignment]
        return await handler(request)


def _close(request: web.Request) -> None:
    assert request.transport is not None
    request.transport.close()


class _BodyFault:
    """Wraps the connection's stream writer and changes the body on its way out."""

    def __init__(self, request: web.Request, fault: Fault) -> None:
        self.__dict__["_inner"] = request._payload_writer
        self.__dict__["_request"], self.__dict__["_fault"] = request, fault
        self.__dict__["_sent"], self.__dict__["_cut"] = 0, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)

    async def write_headers(self, status_line: str, headers: CIMultiDict[str]) -> None:
        if self._fault.kind == "truncate" and "Content-Length" in headers:
            headers["Content-Length"] = str(min(self._fault.after, int(headers["Content-Length"])))
        await self._inner.write_headers(status_line, headers)

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        data = bytes(chunk)
        if self._fault.kind == "corrupt" and self._sent == 0 and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if self._fault.kind == "trickle":
            step = max(1, self._fault.after)
            for start in range(0, len(data), step):
                await self._inner.write(data[start:start + step])
                await asyncio.sleep(self._fault.delay)
            return
        if self._fault.kind in ("drop_body", "truncate"):
            data = data[:max(0, self._fault.after - self._sent)]
        self.__dict__["_sent"] = self._sent + len(data)
        if self._cut:
            return
        if data:
            await self._inner.write(data)
        if self._fault.kind in ("drop_body", "truncate") and self._sent >= self._fault.after:
            self.__dict__["_cut"] = True
            if self._fault.kind == "drop_body":
                await self._inner.drain()
                _close(self._request)

    async def write_eof(self, chunk: bytes = b"") -> None:
        if chunk:
            await self.write(chunk)
        if self._cut and self._fault.kind == "drop_body":
            return
        await self._inner.write_eof()


def faulty_app(faults: Faults, config: Config | None = None) -> web.Application:
    """The real registry application on the in-memory driver, behind the fault middleware."""
    app = create_app(config or Config(), MemoryDriver())
    app.middlewares.insert(0, faults.middleware)
    return app


@asynccontextmanager
async def serve_on_loopback(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on a free loopback port (for a CLI subprocess); yield its "127.0.0.1:PORT"."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()
