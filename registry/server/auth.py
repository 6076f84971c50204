"""The auth middleware: what each request needs, and the 401 challenge when it is missing.

Basic (htpasswd) mode: any valid user may do anything. Token mode: the bearer token's access
claim must cover the request's scope; a request without one gets
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` so the client knows what to ask for.
"""

from __future__ import annotations

import base64
import binascii
from typing import Awaitable, Callable

from aiohttp import web

from registry.auth.access import Access
from registry.auth.errors import BadCredentials, InvalidToken
from registry.auth.setup import AuthSetup
from registry.auth.tokens import Claims
from registry.server.errors import RegistryError
from registry.server.handlers.common import API_VERSION, API_VERSION_HEADER
from registry.server.state import CLAIMS, CONFIG

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# route name (as registered: "<method>_<route>") -> actions needed on the repository in the URL.
_ROUTE_ACTIONS: dict[str, frozenset[str]] = {
    "get_tags": frozenset({"pull"}),
    "get_referrers": frozenset({"pull"}),
    "get_blob": frozenset({"pull"}),
    "head_blob": frozenset({"pull"}),
    "get_manifest": frozenset({"pull"}),
    "head_manifest": frozenset({"pull"}),
    "post_upload_start": frozenset({"pull", "push"}),
    "get_upload": frozenset({"pull", "push"}),
    "patch_upload": frozenset({"pull", "push"}),
    "put_upload": frozenset({"pull", "push"}),
    "delete_upload": frozenset({"pull", "push"}),
    "put_manifest": frozenset({"pull", "push"}),
    "delete_blob": frozenset({"delete"}),
    "delete_manifest": frozenset({"delete"}),
}
CATALOG = Access("registry", "catalog", frozenset({"*"}))


def required_access(request: web.Request) -> list[Access] | None:
    """The scopes a request needs; [] for routes that only need a valid identity, None for open ones."""
    route = request.match_info.route.name
    if route in ("get_token", "post_token", "get_health", "get_metrics") or route is None:
        return None
    if route == "get_catalog":
        return [CATALOG]
    actions = _ROUTE_ACTIONS.get(route)
    if actions is None:
        return []
    return [Access("repository", request.match_info["name"], actions)]


def _challenge(setup: AuthSetup, request: web.Request, needed: list[Access], error: str | None) -> dict[str, str]:
    if setup.mode == "htpasswd":
        return {"WWW-Authenticate": f'Basic realm="{setup.realm}"'}
    realm = setup.realm or f"{request.scheme}://{request.host}/token"
    parts = [f'realm="{realm}"', f'service="{setup.service}"']
    if needed:
        parts.append(f'scope="{" ".join(a.scope() for a in needed)}"')
    if error:
        parts.append(f'error="{error}"')
    return {"WWW-Authenticate": "Bearer " + ",".join(parts)}


def _unauthorized(setup: AuthSetup, request: web.Request, needed: list[Access], error: str | None = None,
                  message: str = "authentication required") -> RegistryError:
    detail = [a.to_claim() for a in needed] or None
    return RegistryError("UNAUTHORIZED", message, detail, headers=_challenge(setup, request, needed, error))


def basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


async def _check(setup: AuthSetup, request: web.Request, needed: list[Access]) -> None:
    header = request.headers.get("Authorization", "")
    if setup.mode == "htpasswd":
        creds = basic_credentials(header)
        if creds is None:
            raise _unauthorized(setup, request, needed)
        try:
            await setup.htpasswd.acheck(*creds)  # type: ignore[union-attr]
        except BadCredentials:
            raise _unauthorized(setup, request, needed, message="invalid username or password") from None
        request[CLAIMS] = Claims(creds[0], ())
        return
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized(setup, request, needed)
    try:
        claims = setup.verifier.verify(token.strip())  # type: ignore[union-attr]
    except InvalidToken as e:
        raise _unauthorized(setup, request, needed, "invalid_token", str(e)) from None
    missing = [a for a in needed if not claims.allows(a)]
    if missing:
        raise _unauthorized(setup, request, needed, "insufficient_scope", "insufficient scope")
    request[CLAIMS] = claims


def may_pull(request: web.Request, name: str) -> bool:
    """Whether the caller may read ``name`` (for the source of a cross-repository mount)."""
    setup = request.app[CONFIG].auth
    if setup is None or setup.mode == "htpasswd":
        return True
    claims = request.get(CLAIMS)
    return claims is not None and claims.allows(Access("repository", name, frozenset({"pull"})))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    setup = request.app[CONFIG].auth
    if setup is not None:
        needed = required_access(request)
        if needed is not None:
            try:
                await _check(setup, request, needed)
            except RegistryError as e:
                resp = e.response()
                resp.headers[API_VERSION_HEADER] = API_VERSION
                return resp
    return await handler(request)
