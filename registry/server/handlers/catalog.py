"""GET /v2/_catalog[?n=&last=]."""

from __future__ import annotations

from aiohttp import web

from registry import routes
from registry.server.handlers.common import store
from registry.server.handlers.pagination import page


async def get_catalog(request: web.Request) -> web.Response:
    names = [n async for n in store(request).repositories()]
    shown, headers = page(request, names, lambda n, last: routes.catalog(n, last))
    return web.json_response({"repositories": shown}, headers=headers)
