"""Connection timeouts: an idle timeout (aiohttp's keep-alive timeout, which also covers a
connection that never sends a request) and a header-read timeout, which aiohttp lacks.

The header timer starts at the first byte of a request's head while the connection waits for a
request, and is dropped once the head is complete: a client dribbling header bytes (slowloris)
is cut off after ``read_header_timeout`` however often it sends. A request body is never
timed, so a slow upload that keeps sending lives as long as it needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server


class HeaderTimeoutHandler(RequestHandler):
    def __init__(self, manager: Server, *, read_header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._read_header_timeout = read_header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def _waiting_for_request(self) -> bool:
        # start() parks on _waiter exactly while no request is queued or being handled.
        return self._waiter is not None and not self._waiter.done()

    def data_received(self, data: bytes) -> None:
        if data and self._header_timer is None and self._read_header_timeout > 0 and self._waiting_for_request():
            self._header_timer = self._loop.call_later(self._read_header_timeout, self._header_timed_out)
        super().data_received(data)
        if self._header_timer is not None and not self._waiting_for_request():
            self._cancel_header_timer()

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._waiting_for_request():
            self.force_close()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)


def handler_factory(server: Server, loop: asyncio.AbstractEventLoop, read_header_timeout: float,
                    **kwargs: Any) -> Callable[[], HeaderTimeoutHandler]:
    """The protocol factory for ``loop.create_server``: one handler per connection."""
    def make() -> HeaderTimeoutHandler:
        return HeaderTimeoutHandler(server, loop=loop, read_header_timeout=read_header_timeout, **kwargs)
    return make
