"""The auth middleware: what each request needs, and the 401 challenge when it is missing.

What a route needs is a ``Needs`` carried by its entry in the route table (``registry.server.app``);
there is no second list of route names here. A matched route whose entry carries no ``Needs`` is
refused (fail closed), with or without auth configured.

Basic (htpasswd) mode: any valid user may do anything. Token mode: the bearer token's access
claim must cover the request's scope; a request without one gets
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` so the client knows what to ask for.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from registry.auth.access import Access
from registry.auth.config import AuthSetup
from registry.auth.errors import BadCredentials, InvalidToken
from registry.auth.tokens import Claims
from registry.server.errors import Code, RegistryError
from registry.server.handlers.common import API_VERSION, API_VERSION_HEADER
from registry.server.state import CLAIMS, CONFIG, ROUTE_NEEDS, STORE
from storage.digest import Digest

log = logging.getLogger("hoist.registry")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Needs:
    """What a route needs from the caller: nothing (``open``), any valid identity (``identity``),
    the catalog scope (``catalog``), or ``actions`` on the repository named in the URL."""

    kind: str
    actions: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.kind not in ("open", "identity", "catalog", "repository"):
            raise ValueError(f"unknown access kind {self.kind!r}")
        if (self.kind == "repository") != bool(self.actions):
            raise ValueError("repository access needs actions; other kinds take none")

    def scopes(self, request: web.Request) -> list[Access] | None:
        """The scopes a request needs; [] when any valid identity will do, None when open."""
        if self.kind == "open":
            return None
        if self.kind == "identity":
            return []
        if self.kind == "catalog":
            return [CATALOG]
        return [Access("repository", request.match_info["name"], self.actions)]


OPEN = Needs("open")
IDENTITY = Needs("identity")
CATALOG_SCOPE = Needs("catalog")
CATALOG = Access("registry", "catalog", frozenset({"*"}))


def repository(*actions: str) -> Needs:
    return Needs("repository", frozenset(actions))


def route_key(method: str, route: str) -> str:
    """The aiohttp route name a table entry is registered under."""
    return f"{method.lower()}_{route}"


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
    return RegistryError(Code.UNAUTHORIZED, message, detail, headers=_challenge(setup, request, needed, error))


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
    """Whether the caller may read ``name`` (the source of a cross-repository mount).

    The token's own claims count, and so does the built-in issuer's ACL: a client asks for a
    token scoped to the repository it pushes to, and may still read the mount's source."""
    setup = request.app[CONFIG].auth
    if setup is None or setup.mode == "htpasswd":
        return True
    claims = request.get(CLAIMS)
    if claims is None:
        return False
    wanted = Access("repository", name, frozenset({"pull"}))
    if claims.allows(wanted):
        return True
    return setup.issuer is not None and "pull" in setup.acl.granted(claims.account, wanted)


async def mount_origin(request: web.Request, d: Digest, source: str | None) -> tuple[bool, str | None]:
    """Whether a mount of ``d`` may be tried, and the repository to link it from.

    With ``from`` the caller must be able to pull that repository. Without it (automatic
    mounting) and with per-repository access rules, the origin is a repository that holds ``d``
    and that the caller may pull; when there is none the answer is (False, None), so the client
    gets a plain upload (202) exactly as if the blob did not exist: 201 versus 202 tells nobody
    about a blob they cannot read."""
    if source is not None:
        return may_pull(request, source), source
    setup = request.app[CONFIG].auth
    store = request.app[STORE]
    if setup is None or setup.mode == "htpasswd" or not store.automatic_crossmount:
        return True, None
    async for name in store.repositories_linking(d):
        if may_pull(request, name):
            return True, name
    return False, None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        return await handler(request)  # no route matched: aiohttp answers 404 / 405
    needs = request.app[ROUTE_NEEDS].get(request.match_info.route.name or "")
    if not isinstance(needs, Needs):
        log.error("route %s has no access rule; refusing %s %s", request.match_info.route.name,
                  request.method, request.path)
        return _with_version(RegistryError(Code.DENIED, "this route has no access rule").response())
    setup = request.app[CONFIG].auth
    if setup is not None:
        needed = needs.scopes(request)
        if needed is not None:
            try:
                await _check(setup, request, needed)
            except RegistryError as e:
                return _with_version(e.response())
    return await handler(request)


def _with_version(resp: web.Response) -> web.Response:
    resp.headers[API_VERSION_HEADER] = API_VERSION
    return resp
