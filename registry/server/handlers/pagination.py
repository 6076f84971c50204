"""``n``/``last`` pagination with a ``Link: <...>; rel="next"`` header, shared by tags and catalog."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from registry.server.errors import Code, RegistryError


def page(request: web.Request, items: list[str], url: Callable[[int, str], str]) -> tuple[list[str], dict[str, str]]:
    """Items after ``last`` (lexically), at most ``n`` of them, and the Link header if more remain."""
    n_text = request.query.get("n")
    last = request.query.get("last")
    if last:
        items = [i for i in items if i > last]
    if n_text is None or n_text == "":
        return items, {}
    if not n_text.isdigit():
        raise RegistryError(Code.PAGINATION_NUMBER_INVALID, f"invalid n {n_text[:20]!r}")
    n = int(n_text)
    if len(items) <= n:
        return items, {}
    shown = items[:n]
    if not shown:
        return shown, {}
    return shown, {"Link": f'<{url(n, shown[-1])}>; rel="next"'}
