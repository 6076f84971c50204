"""GET /v2/ — API version check."""

from __future__ import annotations

from aiohttp import web


async def get_base(request: web.Request) -> web.Response:
    return web.json_response({})
