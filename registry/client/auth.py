"""Registry authentication: the Docker token auth dance and Basic auth, as a pure generator.

:func:`Authenticator.flow` takes the request the client wants to make and yields the requests
to actually send; the caller sends each one and passes the answer back in with ``send()``.
No I/O happens here, so every branch is testable with hand-made responses.

The dance (https://distribution.github.io/distribution/spec/auth/token/):

1. send the request (with a cached token for its scopes, if any);
2. on 401 with ``WWW-Authenticate: Bearer realm=..,service=..,scope=..``, GET the realm with
   ``service`` and every ``scope`` (Basic credentials if we have some), read ``token`` or
   ``access_token``, cache it per scope set, and send the request again with it;
3. on 401 with ``Basic``, send it again with Basic credentials.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from registry.client.errors import AuthenticationFailed, AuthenticationRequired, ProtocolError

# A request body: bytes, or a factory of fresh async chunk iterators (so an auth retry can
# send a streaming body again), or nothing.
Body = bytes | Callable[[], AsyncIterator[bytes]] | None

# A token whose lifetime the realm did not state lives this long (the spec's default).
DEFAULT_TOKEN_SECONDS = 60
# Refresh a little early so a token does not expire in flight.
EXPIRY_MARGIN_SECONDS = 5


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass
class Request:
    """One HTTP request. ``scopes`` are the token scopes it needs
    (``repository:team/app:pull,push``); ``read_body`` asks the sender to read the answer's
    body before handing it back (the flow needs it for token answers)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Body = None
    scopes: tuple[str, ...] = ()
    read_body: bool = False


class Response(Protocol):
    body: bytes | None

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class Challenge:
    scheme: str                 # lower case: "bearer" or "basic"
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scope", "").split())


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN}[^,\s]*)\s*(?:,|$)')
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$|(?=,))")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse every challenge in a WWW-Authenticate value (RFC 7235)."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme_match = _SCHEME.match(header, pos)
        if not scheme_match:
            break
        pos = scheme_match.end()
        params: dict[str, str] = {}
        while (param := _PARAM.match(header, pos)) is not None:
            key, value = param.group(1).lower(), param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[key] = value
            pos = param.end()
        challenges.append(Challenge(scheme_match.group(1).lower(), params))
        if not params:
            # A scheme without parameters ("Negotiate, Basic realm=x"): skip to the next one.
            comma = header.find(",", pos)
            if comma < 0:
                break
            pos = comma + 1
    return challenges


def merge_scopes(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """Union of scopes, joining the actions of one resource (``repository:a:pull`` +
    ``repository:a:push`` → ``repository:a:pull,push``), in a stable order."""
    actions: dict[str, list[str]] = {}
    for scope in (s for group in groups for s in group):
        resource, _, acts = scope.rpartition(":")
        if not resource:
            resource, acts = scope, ""
        have = actions.setdefault(resource, [])
        have += [a for a in acts.split(",") if a and a not in have]
    return tuple(f"{res}:{','.join(sorted(acts))}" for res, acts in sorted(actions.items()))


def parse_token(body: bytes | None) -> tuple[str, int]:
    """The token and its lifetime from a realm's JSON answer (``token`` or ``access_token``)."""
    try:
        doc: Any = json.loads(body or b"")
    except ValueError:
        raise ProtocolError("the token service sent something that is not JSON") from None
    if not isinstance(doc, dict):
        raise ProtocolError("the token service sent something that is not a JSON object")
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise ProtocolError("the token service answered without a token")
    expires = doc.get("expires_in")
    seconds = expires if isinstance(expires, int) and expires > 0 else DEFAULT_TOKEN_SECONDS
    return token, seconds


class Authenticator:
    """Authentication state for one registry: credentials, the scheme it asked for, and
    bearer tokens cached per scope set."""

    def __init__(self, registry: str, credentials: Credentials | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry, self.credentials, self.clock = registry, credentials, clock
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._bearer: Challenge | None = None     # the last bearer challenge: realm and service
        self._basic = False                       # the registry asked for Basic auth
        self.token_requests = 0                   # how many times a realm was asked (for tests)

    def flow(self, request: Request) -> Generator[Request, Response, None]:
        """Yield what to send for ``request``; the caller sends each and ``send()``s the answer.
        The generator ends when the last answer is the one to use (which may still be a 401)."""
        if self._basic and self.credentials:
            request.headers["Authorization"] = self.credentials.basic_header()
        elif (token := self._cached(request.scopes)) is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        elif self._bearer is not None and request.scopes:
            # Seen this registry's realm already: fetch the token first instead of a 401 round trip.
            token = yield from self._fetch_token(self._bearer, request.scopes)
            request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status != 401:
            return
        challenges = parse_www_authenticate(response.headers.get("WWW-Authenticate", ""))
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.realm), None)
        if bearer is not None:
            scopes = merge_scopes(request.scopes, bearer.scopes)
            self._bearer = bearer
            token = yield from self._fetch_token(bearer, scopes)
            self._store(request.scopes, token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
        elif any(c.scheme == "basic" for c in challenges) and self.credentials \
                and request.headers.get("Authorization") != self.credentials.basic_header():
            # Retry once with Basic. Test the request, not self._basic: a request sent in
            # parallel before the first 401 arrived still deserves its retry.
            self._basic = True
            request.headers["Authorization"] = self.credentials.basic_header()
            yield request

    def token_request(self, challenge: Challenge, scopes: tuple[str, ...]) -> Request:
        query: list[tuple[str, str]] = []
        if challenge.service:
            query.append(("service", challenge.service))
        query += [("scope", s) for s in scopes]
        headers = {}
        if self.credentials:
            query.append(("account", self.credentials.username))
            headers["Authorization"] = self.credentials.basic_header()
        sep = "&" if "?" in challenge.realm else "?"
        url = challenge.realm + (sep + urlencode(query) if query else "")
        return Request("GET", url, headers, read_body=True)

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> Generator[Request, Response, str]:
        self.token_requests += 1
        answer = yield self.token_request(challenge, scopes)
        if answer.status in (401, 403):
            if self.credentials is None:
                raise AuthenticationRequired(
                    f"{self.registry} requires authentication: run 'hoist login {self.registry}'")
            raise AuthenticationFailed(
                f"{self.registry} refused the credentials for {self.credentials.username!r}: "
                f"check them with 'hoist login {self.registry}'")
        if answer.status != 200:
            raise ProtocolError(f"token service {challenge.realm} answered {answer.status}")
        token, seconds = parse_token(answer.body)
        self._store(scopes, token, seconds)
        return token

    def _cached(self, scopes: tuple[str, ...]) -> str | None:
        hit = self._tokens.get(merge_scopes(scopes))
        if hit is None or hit[1] <= self.clock():
            return None
        return hit[0]

    def _store(self, scopes: tuple[str, ...], token: str, seconds: int = DEFAULT_TOKEN_SECONDS) -> None:
        expiry = self.clock() + max(seconds - EXPIRY_MARGIN_SECONDS, 1)
        self._tokens[merge_scopes(scopes)] = (token, expiry)
