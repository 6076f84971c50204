"""GET /v2/<name>/tags/list[?n=&last=]."""

from __future__ import annotations

from aiohttp import web

from registry import routes
from registry.server.handlers.common import repo_name, store
from registry.server.handlers.pagination import page


async def list_tags(request: web.Request) -> web.Response:
    name = repo_name(request)
    # Read only the page (and one more, so page() knows whether to link the next).
    n = request.query.get("n", "")
    tags = await store(request).tags(name, after=request.query.get("last") or None,
                                     limit=int(n) + 1 if n.isdigit() else None)
    shown, headers = page(request, tags, lambda n, last: routes.tags(name, n, last))
    return web.json_response({"name": name, "tags": shown}, headers=headers)
