"""The built-in token issuer: GET /token (Docker token spec) and POST /token (OAuth2 password grant)."""

from __future__ import annotations

from aiohttp import web

from registry.auth.access import Access, parse_scopes
from registry.auth.config import AuthSetup
from registry.auth.errors import BadCredentials
from registry.server.auth import basic_credentials
from registry.server.errors import Code, RegistryError
from registry.server.state import CONFIG


def _setup(request: web.Request) -> AuthSetup:
    setup = request.app[CONFIG].auth
    if setup is None or setup.issuer is None:
        raise web.HTTPNotFound(text="this registry does not issue tokens")
    return setup


def _token_response(setup: AuthSetup, account: str, scopes: list[Access], service: str | None) -> web.Response:
    if service and service != setup.service:
        raise RegistryError(Code.DENIED, f"this issuer serves {setup.service!r}, not {service!r}", status=400)
    granted = [Access(a.type, a.name, setup.acl.granted(account, a)) for a in scopes]
    return web.json_response(setup.issuer.issue(account, granted))  # type: ignore[union-attr]


async def _account(setup: AuthSetup, user: str | None, password: str | None) -> str:
    if user is None:
        return ""
    try:
        await setup.htpasswd.acheck(user, password or "")  # type: ignore[union-attr]
    except BadCredentials:
        raise RegistryError(Code.UNAUTHORIZED, "invalid username or password",
                            headers={"WWW-Authenticate": f'Basic realm="{setup.service}"'}) from None
    return user


async def get_token(request: web.Request) -> web.Response:
    setup = _setup(request)
    creds = basic_credentials(request.headers.get("Authorization", ""))
    account = await _account(setup, *(creds or (None, None)))
    return _token_response(setup, account, parse_scopes(request.query.getall("scope", [])),
                           request.query.get("service"))


async def post_token(request: web.Request) -> web.Response:
    setup = _setup(request)
    form = await request.post()
    grant = form.get("grant_type")
    if grant != "password":
        return web.json_response({"error": "unsupported_grant_type",
                                  "error_description": "only the password grant is supported"}, status=400)
    account = await _account(setup, str(form.get("username", "")), str(form.get("password", "")))
    return _token_response(setup, account, parse_scopes([str(s) for s in form.getall("scope", [])]),
                           str(form.get("service", "")) or None)
