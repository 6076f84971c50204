"""The auth flow without a network: the generator is driven by hand, and the client runs on the
in-memory transport."""

from __future__ import annotations

import json

import pytest
from multidict import CIMultiDict

from registry.client.auth import Authenticator, Credentials, Request, merge_scopes, parse_token, parse_www_authenticate
from registry.client.client import RegistryClient, is_loopback
from registry.client.errors import AuthenticationFailed, AuthenticationRequired, ProtocolError, RegistryUnreachable
from registry.client.transport import MemoryResponse, MemoryTransport

REALM = "https://auth.example/token"
CHALLENGE = f'Bearer realm="{REALM}",service="registry.example",scope="repository:team/app:pull"'
SCOPE = ("repository:team/app:pull",)


def answer(status: int, body: object = b"", **headers: str) -> MemoryResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return MemoryResponse(status, CIMultiDict(headers), data, body=data)


@pytest.mark.parametrize("header, expected", [
    (CHALLENGE, [("bearer", {"realm": REALM, "service": "registry.example", "scope": SCOPE[0]})]),
    ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
    ('Bearer realm="a", Basic realm="b"', [("bearer", {"realm": "a"}), ("basic", {"realm": "b"})]),
    ('Bearer realm="x\\"y",error="invalid_token"', [("bearer", {"realm": 'x"y', "error": "invalid_token"})]),
    ("Negotiate, Basic realm=r", [("negotiate", {}), ("basic", {"realm": "r"})]),
    ("", []),
])
def test_parse_www_authenticate(header: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    assert [(c.scheme, c.params) for c in parse_www_authenticate(header)] == expected


def test_merge_scopes_joins_actions_per_resource() -> None:
    assert merge_scopes(("repository:a:pull",), ("repository:a:push", "repository:b:pull")) == \
        ("repository:a:pull,push", "repository:b:pull")


def test_parse_token_accepts_token_or_access_token() -> None:
    assert parse_token(b'{"token": "t", "expires_in": 120}') == ("t", 120)
    assert parse_token(b'{"access_token": "a"}') == ("a", 60)
    with pytest.raises(ProtocolError):
        parse_token(b'{"nothing": 1}')


def test_bearer_dance_then_cached_token() -> None:
    auth = Authenticator("registry.example", Credentials("alice", "pw"))
    flow = auth.flow(Request("GET", "https://registry.example/v2/team/app/manifests/1", scopes=SCOPE))
    first = next(flow)
    assert "Authorization" not in first.headers
    token_request = flow.send(MemoryResponse(401, CIMultiDict({"WWW-Authenticate": CHALLENGE})))
    assert token_request.url == (f"{REALM}?service=registry.example&scope=repository%3Ateam%2Fapp%3Apull"
                                 f"&account=alice")
    assert token_request.headers["Authorization"] == Credentials("alice", "pw").basic_header()
    retried = flow.send(answer(200, {"token": "T1"}))
    assert retried.headers["Authorization"] == "Bearer T1"
    with pytest.raises(StopIteration):
        flow.send(answer(200))
    # The next request with the same scope goes out with the token straight away.
    again = auth.flow(Request("GET", "https://registry.example/v2/team/app/blobs/x", scopes=SCOPE))
    assert next(again).headers["Authorization"] == "Bearer T1"
    assert auth.token_requests == 1


def test_new_scope_fetches_token_before_sending() -> None:
    auth = Authenticator("registry.example", None)
    flow = auth.flow(Request("GET", "u", scopes=SCOPE))
    next(flow)
    flow.send(MemoryResponse(401, CIMultiDict({"WWW-Authenticate": CHALLENGE})))
    flow.send(answer(200, {"token": "T1"}))
    other = auth.flow(Request("GET", "u", scopes=("repository:team/other:pull",)))
    token_request = next(other)                  # realm known: no 401 round trip first
    assert token_request.url.startswith(REALM) and "team%2Fother" in token_request.url
    assert other.send(answer(200, {"token": "T2"})).headers["Authorization"] == "Bearer T2"


def test_refused_token_names_what_to_do() -> None:
    anonymous = Authenticator("registry.example", None).flow(Request("GET", "u", scopes=SCOPE))
    next(anonymous)
    anonymous.send(MemoryResponse(401, CIMultiDict({"WWW-Authenticate": CHALLENGE})))
    with pytest.raises(AuthenticationRequired, match="hoist login registry.example"):
        anonymous.send(answer(401))
    wrong = Authenticator("registry.example", Credentials("alice", "bad")).flow(Request("GET", "u", scopes=SCOPE))
    next(wrong)
    wrong.send(MemoryResponse(401, CIMultiDict({"WWW-Authenticate": CHALLENGE})))
    with pytest.raises(AuthenticationFailed, match="alice"):
        wrong.send(answer(401))


def test_basic_challenge_retries_with_credentials_once() -> None:
    auth = Authenticator("r", Credentials("bob", "pw"))
    flow = auth.flow(Request("GET", "u"))
    next(flow)
    retried = flow.send(MemoryResponse(401, CIMultiDict({"WWW-Authenticate": 'Basic realm="r"'})))
    assert retried.headers["Authorization"] == Credentials("bob", "pw").basic_header()
    with pytest.raises(StopIteration):
        flow.send(answer(401))                   # still refused: the caller gets the 401
    assert next(auth.flow(Request("GET", "u"))).headers["Authorization"].startswith("Basic ")


def test_parallel_requests_each_retry_with_basic() -> None:
    """Two requests sent before the first 401 came back: both must be retried with Basic."""
    auth = Authenticator("r", Credentials("bob", "pw"))
    challenge = MemoryResponse(401, CIMultiDict({"WWW-Authenticate": 'Basic realm="r"'}))
    a, b = auth.flow(Request("HEAD", "a")), auth.flow(Request("HEAD", "b"))
    assert "Authorization" not in next(a).headers
    assert "Authorization" not in next(b).headers
    assert a.send(challenge).headers["Authorization"].startswith("Basic ")
    assert b.send(challenge).headers["Authorization"].startswith("Basic ")


async def test_client_on_memory_transport_negotiates_manifest() -> None:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": []}).encode()

    async def handler(request: Request, body: bytes) -> MemoryResponse:
        if request.url.startswith(REALM):
            return answer(200, {"access_token": "T"})
        if request.headers.get("Authorization") != "Bearer T":
            return MemoryResponse(401, CIMultiDict({"WWW-Authenticate": CHALLENGE}))
        assert "application/vnd.oci.image.index.v1+json" in request.headers["Accept"]
        return MemoryResponse(200, CIMultiDict({"Content-Type": "application/vnd.oci.image.index.v1+json"}),
                              manifest)

    transport = MemoryTransport(handler)
    async with RegistryClient("registry.example", transport=transport) as client:
        raw, ctype, _ = await client.get_manifest("team/app", "1")
    assert raw == manifest and ctype.endswith("index.v1+json")
    assert [r.url.split("?")[0] for r in transport.sent] == [
        "https://registry.example/v2/team/app/manifests/1", REALM,
        "https://registry.example/v2/team/app/manifests/1"]


@pytest.mark.parametrize("registry, loopback", [
    ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.1.2.3", True), ("[::1]:5000", True),
    ("::1", True), ("registry.local:5000", False), ("10.0.0.1:5000", False), ("docker.io", False),
])
def test_loopback_detection(registry: str, loopback: bool) -> None:
    assert is_loopback(registry) is loopback


def _tls_or_plain(tls_works: bool):
    async def handler(request: Request, body: bytes) -> MemoryResponse:
        if request.url.startswith("https://") and not tls_works:
            raise RegistryUnreachable("TLS handshake failed")
        return answer(200, {})
    return MemoryTransport(handler)


@pytest.mark.parametrize("registry,insecure", [("127.0.0.1:5000", False), ("registry.local:5000", True)])
async def test_insecure_registry_falls_back_to_plain_http(registry: str, insecure: bool) -> None:
    """As docker: HTTPS without verification first; plain HTTP when TLS does not answer."""
    transport = _tls_or_plain(tls_works=False)
    async with RegistryClient(registry, insecure=insecure, transport=transport) as client:
        await client.ping()
        await client.ping()
    assert [r.url for r in transport.sent] == [f"https://{registry}/v2/", f"http://{registry}/v2/",
                                               f"http://{registry}/v2/"]


async def test_insecure_registry_keeps_https_when_it_answers() -> None:
    transport = _tls_or_plain(tls_works=True)
    async with RegistryClient("registry.local:5000", insecure=True, transport=transport) as client:
        await client.ping()
    assert {r.url for r in transport.sent} == {"https://registry.local:5000/v2/"}


async def test_secure_registry_never_falls_back() -> None:
    transport = _tls_or_plain(tls_works=False)
    async with RegistryClient("registry.example", transport=transport) as client:
        with pytest.raises(RegistryUnreachable):
            await client.ping()
    assert [r.url for r in transport.sent] == ["https://registry.example/v2/"]
    assert RegistryClient("docker.io").base == "https://registry-1.docker.io"
