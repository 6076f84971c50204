"""Auth: htpasswd Basic, the built-in token issuer, bearer verification, scopes and the ACL."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from registry import routes
from registry.auth.access import ACL, Access, parse_scope
from registry.auth.errors import InvalidToken
from registry.auth.htpasswd import hash_password
from registry.auth.tokens import TokenIssuer, TokenVerifier, generate_key, key_id
from tests.registry.http import Client, ServerProcess, digest_of, htpasswd_registry

ROOT = Path(__file__).resolve().parents[2]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _write_key(path: Path):
    key = generate_key()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key


# -- units ---------------------------------------------------------------------------------------

def test_scope_parsing() -> None:
    assert parse_scope("repository:team/app:pull,push") == Access("repository", "team/app", frozenset({"pull", "push"}))
    assert parse_scope("repository:host:5000/app:pull").name == "host:5000/app"
    assert parse_scope("registry:catalog:*").actions == frozenset({"*"})
    assert parse_scope("garbage") is None


def test_acl_first_match_wins_and_account_substitution() -> None:
    acl = ACL.from_config([
        {"account": "admin", "name": "*", "actions": ["*"]},
        {"account": "*", "name": "${account}/*", "actions": ["pull", "push"]},
        {"account": "", "name": "public/*", "actions": ["pull"]},
    ])
    want = Access("repository", "alice/app", frozenset({"pull", "push", "delete"}))
    assert acl.granted("alice", want) == {"pull", "push"}
    assert acl.granted("bob", want) == frozenset()
    assert acl.granted("admin", want) == {"pull", "push", "delete"}
    pub = Access("repository", "public/x", frozenset({"pull", "push"}))
    assert acl.granted("", pub) == {"pull"}
    assert acl.granted("alice", pub) == frozenset()


def test_token_roundtrip_and_rejections() -> None:
    key = generate_key()
    issuer = TokenIssuer(key, "hoist", "svc", 60)
    verifier = TokenVerifier([key.public_key()], "hoist", "svc")
    token = issuer.issue("alice", [Access("repository", "a/b", frozenset({"pull"}))])["token"]
    claims = verifier.verify(token)
    assert claims.account == "alice"
    assert claims.allows(Access("repository", "a/b", frozenset({"pull"})))
    assert not claims.allows(Access("repository", "a/b", frozenset({"push"})))
    assert jwt.get_unverified_header(token)["kid"] == key_id(key.public_key())
    with pytest.raises(InvalidToken):
        TokenVerifier([key.public_key()], "hoist", "other-service").verify(token)
    with pytest.raises(InvalidToken):
        TokenVerifier([generate_key().public_key()], "hoist", "svc").verify(token)
    expired = jwt.encode({"iss": "hoist", "aud": "svc", "sub": "a", "exp": int(time.time()) - 3600},
                         key, algorithm="ES256", headers={"kid": key_id(key.public_key())})
    with pytest.raises(InvalidToken):
        verifier.verify(expired)
    forged = jwt.encode({"iss": "hoist", "aud": "svc", "exp": int(time.time()) + 60}, "a-shared-secret-an-attacker-might-try", algorithm="HS256")
    with pytest.raises(InvalidToken):
        verifier.verify(forged)
    for junk in ("", "a.b.c", "x" * 50):
        with pytest.raises(InvalidToken):
            verifier.verify(junk)


# -- htpasswd mode ---------------------------------------------------------------------------------

@pytest.fixture
def htpasswd_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = htpasswd_registry(tmp_path, {"alice": "s3cret"}, realm="test-realm")
    yield server
    server.stop()


def test_htpasswd_basic_auth(htpasswd_server: ServerProcess) -> None:
    c = htpasswd_server.client()
    r = c.request("GET", routes.base())
    assert r.status == 401
    assert r.header("WWW-Authenticate") == 'Basic realm="test-realm"'
    assert r.error_codes() == ["UNAUTHORIZED"]
    assert c.request("GET", routes.base(), headers=_basic("alice", "wrong")).status == 401
    assert c.request("GET", routes.base(), headers=_basic("mallory", "s3cret")).status == 401
    assert c.request("GET", routes.base(), headers=_basic("alice", "s3cret")).status == 200
    # HEAD /v2/ answers as GET does (Distribution), behind the same check.
    r = c.request("HEAD", routes.base())
    assert r.status == 401 and r.header("WWW-Authenticate") == 'Basic realm="test-realm"'
    r = c.request("HEAD", routes.base(), headers=_basic("alice", "s3cret"))
    assert r.status == 200 and r.header("Docker-Distribution-API-Version") == "registry/2.0"
    r = c.request("POST", routes.upload_start("a/b", digest=digest_of(b"x")), b"x", _basic("alice", "s3cret"))
    assert r.status == 201
    assert c.request("HEAD", routes.blob("a/b", digest_of(b"x"))).status == 401


# -- token mode ------------------------------------------------------------------------------------

@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[ServerProcess]:
    _write_key(tmp_path / "key.pem")
    (tmp_path / "htpasswd").write_text(f"alice:{hash_password('s3cret', 4)}\nadmin:{hash_password('root', 4)}\n")
    cfg = tmp_path / "c.yml"
    cfg.write_text(json.dumps({
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}},
        "auth": {"token": {"service": "test-svc", "issuer": "test-issuer", "signingkey": str(tmp_path / "key.pem"),
                           "htpasswd": str(tmp_path / "htpasswd"), "acl": [
                               {"account": "admin", "name": "*", "actions": ["*"], "type": "*"},
                               {"account": "alice", "name": "alice/*", "actions": ["pull", "push"]},
                               {"account": "*", "name": "public/*", "actions": ["pull"]},
                               {"account": "", "name": "public/*", "actions": ["pull"]}]}}}))
    server = ServerProcess(tmp_path / "root", config=cfg)
    yield server
    server.stop()


def _challenge(header: str) -> dict[str, str]:
    assert header.startswith("Bearer ")
    out = {}
    for part in header[len("Bearer "):].split('",'):
        k, _, v = part.partition("=")
        out[k.strip()] = v.strip().strip('"')
    return out


def _token(c: Client, scope: str, creds: tuple[str, str] | None = None) -> tuple[int, dict]:
    r = c.request("GET", routes.token("test-svc", [scope]), headers=_basic(*creds) if creds else {})
    return r.status, (r.json() if r.status == 200 else {})


def test_token_flow(token_server: ServerProcess) -> None:
    c = token_server.client()
    r = c.request("POST", routes.upload_start("alice/app"))
    assert r.status == 401
    ch = _challenge(r.header("WWW-Authenticate"))
    assert ch["realm"] == f"{token_server.url}/token"
    assert ch["service"] == "test-svc"
    assert ch["scope"] == "repository:alice/app:pull,push"
    status, tok = _token(c, ch["scope"], ("alice", "s3cret"))
    assert status == 200 and tok["token"] == tok["access_token"] and tok["expires_in"] > 0
    bearer = {"Authorization": f"Bearer {tok['token']}"}
    assert c.request("POST", routes.upload_start("alice/app"), headers=bearer).status == 202
    # The token is for alice/app only.
    r = c.request("POST", routes.upload_start("alice/other"), headers=bearer)
    assert r.status == 401 and "insufficient_scope" in r.header("WWW-Authenticate")
    # Asking for more than the ACL gives yields a token with less.
    status, tok = _token(c, "repository:bob/app:pull,push", ("alice", "s3cret"))
    assert status == 200
    bob = {"Authorization": f"Bearer {tok['token']}"}
    assert c.request("GET", routes.tags("bob/app"), headers=bob).status == 401


def test_token_bad_credentials_and_anonymous(token_server: ServerProcess) -> None:
    c = token_server.client()
    status, _ = _token(c, "repository:alice/app:pull", ("alice", "nope"))
    assert status == 401
    status, tok = _token(c, "repository:public/app:pull,push")
    assert status == 200
    claims = jwt.decode(tok["token"], options={"verify_signature": False})
    assert claims["sub"] == "" and claims["access"] == [{"type": "repository", "name": "public/app", "actions": ["pull"]}]
    r = c.request("GET", routes.token("wrong-service", ["repository:public/app:pull"]))
    assert r.status == 400


def test_token_password_grant(token_server: ServerProcess) -> None:
    c = token_server.client()
    body = urlencode({"grant_type": "password", "username": "admin", "password": "root", "service": "test-svc",
                      "scope": "registry:catalog:*", "client_id": "test"}).encode()
    r = c.request("POST", "/token", body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200
    bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert c.request("GET", routes.catalog(), headers=bearer).status == 200
    r = c.request("POST", "/token", urlencode({"grant_type": "refresh_token", "refresh_token": "x"}).encode(),
                  {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400 and r.json()["error"] == "unsupported_grant_type"


def test_tampered_token_is_refused(token_server: ServerProcess) -> None:
    c = token_server.client()
    _, tok = _token(c, "repository:alice/app:pull", ("alice", "s3cret"))
    header, payload, sig = tok["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["access"][0]["name"] = "admin/secret"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    bearer = {"Authorization": f"Bearer {header}.{forged_payload}.{sig}"}
    r = c.request("GET", routes.tags("admin/secret"), headers=bearer)
    assert r.status == 401 and 'error="invalid_token"' in r.header("WWW-Authenticate")


def test_auth_config_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    for text, message in [
        ("auth: {htpasswd: {realm: r}}", "auth.htpasswd.path is required"),
        ("auth: {htpasswd: {path: /nope}}", "cannot read htpasswd"),
        ("auth: {token: {service: s}}", "set signingkey"),
        ("auth: {token: {signingkey: /nope}}", "cannot read signing key"),
        ("auth: {silly: {}}", "unknown config key 'auth.silly'"),
        ("auth: {htpasswd: {path: /x}, token: {service: s}}", "exactly one of htpasswd or token"),
    ]:
        cfg.write_text(text)
        r = subprocess.run([sys.executable, "-m", "hoist.cli", "registry", "serve", "--config", str(cfg)],
                           capture_output=True, text=True, cwd=ROOT, timeout=20)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, (text, r.stderr)


# -- automatic cross-repository mount: never from a repository the caller may not pull ---------------

@pytest.fixture
def two_user_server(tmp_path: Path) -> Iterator[ServerProcess]:
    _write_key(tmp_path / "key.pem")
    (tmp_path / "htpasswd").write_text(f"alice:{hash_password('a-pw', 4)}\nbob:{hash_password('b-pw', 4)}\n")
    cfg = tmp_path / "c.yml"
    cfg.write_text(json.dumps({
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}},
        "auth": {"token": {"service": "test-svc", "issuer": "test-issuer", "signingkey": str(tmp_path / "key.pem"),
                           "htpasswd": str(tmp_path / "htpasswd"), "acl": [
                               {"account": "*", "name": "${account}/*", "actions": ["pull", "push"]},
                               {"account": "bob", "name": "shared/*", "actions": ["pull", "push"]},
                               {"account": "*", "name": "shared/*", "actions": ["pull"]}]}}}))
    server = ServerProcess(tmp_path / "root", config=cfg)
    yield server
    server.stop()


def _bearer(c: Client, scope: str, creds: tuple[str, str]) -> dict[str, str]:
    status, tok = _token(c, scope, creds)
    assert status == 200
    return {"Authorization": f"Bearer {tok['token']}"}


def test_automatic_mount_never_links_a_blob_the_caller_cannot_pull(two_user_server: ServerProcess) -> None:
    c = two_user_server.client()
    bob = ("bob", "b-pw")
    private, shared = b"bob's private layer", b"a layer everyone may pull"
    bob_private = _bearer(c, "repository:bob/private:pull,push", bob)
    r = c.request("POST", routes.upload_start("bob/private", digest=digest_of(private)), private, bob_private)
    assert r.status == 201
    bob_shared = _bearer(c, "repository:shared/base:pull,push", bob)
    r = c.request("POST", routes.upload_start("shared/base", digest=digest_of(shared)), shared, bob_shared)
    assert r.status == 201

    # alice's token covers only her own repository, as a docker client asks for it.
    alice = _bearer(c, "repository:alice/app:pull,push", ("alice", "a-pw"))
    r = c.request("POST", routes.upload_start("alice/app", mount=digest_of(private)), headers=alice)
    assert r.status == 202 and r.header("Location"), (r.status, r.body)
    r = c.request("POST", routes.upload_start("alice/app", mount=digest_of(private), from_repo="bob/private"),
                  headers=alice)
    assert r.status == 202
    # A digest nobody holds answers exactly like one alice may not see.
    r = c.request("POST", routes.upload_start("alice/app", mount=digest_of(b"nowhere")), headers=alice)
    assert r.status == 202
    assert c.request("HEAD", routes.blob("alice/app", digest_of(private)), headers=alice).status == 404
    # A blob held by a repository the ACL lets alice pull is mounted without from=.
    r = c.request("POST", routes.upload_start("alice/app", mount=digest_of(shared)), headers=alice)
    assert r.status == 201 and r.header("Docker-Content-Digest") == digest_of(shared)
    assert c.request("GET", routes.blob("alice/app", digest_of(shared)), headers=alice).body == shared
    # The blob is still nowhere in alice's repository, so a manifest naming it is refused.
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(private),
             "size": len(private)}
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(shared),
                      "size": len(shared)}, "layers": [layer]}
    r = c.request("PUT", routes.manifest("alice/app", "v1"), json.dumps(doc).encode(),
                  {**alice, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 400 and r.error_codes() == ["MANIFEST_BLOB_UNKNOWN"]
    # bob may pull his own blob into another of his repositories without from=.
    bob_other = _bearer(c, "repository:bob/other:pull,push", bob)
    r = c.request("POST", routes.upload_start("bob/other", mount=digest_of(private)), headers=bob_other)
    assert r.status == 201


# -- the route table carries each route's access rule; a route without one is refused ---------------

def test_every_route_carries_an_access_rule() -> None:
    from registry.server.app import ROUTES, create_app
    from registry.server.auth import Needs, route_key
    from registry.server.config import Config
    from registry.server.state import ROUTE_NEEDS
    from storage.drivers.memory import MemoryDriver

    app = create_app(Config(), MemoryDriver())
    registered = {r.name for r in app.router.routes()}
    assert registered == {route_key(r.method, r.name) for r in ROUTES}
    assert all(isinstance(app[ROUTE_NEEDS][name], Needs) for name in registered)
    # Writes and deletes of a repository never run on "any valid identity".
    for r in ROUTES:
        if r.method in ("POST", "PUT", "PATCH", "DELETE") and "name" in routes.PATTERNS[r.name]:
            assert r.needs.kind == "repository" and r.needs.actions & {"push", "delete"}, r


async def test_a_route_without_a_rule_is_refused(aiohttp_client) -> None:
    from aiohttp import web

    from registry.server.app import create_app
    from registry.server.config import Config
    from storage.drivers.memory import MemoryDriver

    called = []

    async def extra(request: web.Request) -> web.Response:
        called.append(request.path)
        return web.Response(text="should not run")

    app = create_app(Config(), MemoryDriver())
    app.router.add_get("/v2/{name:.+}/extra", extra, name="get_extra")
    client = await aiohttp_client(app)
    r = await client.get("/v2/a/b/extra")
    assert r.status == 403 and (await r.json())["errors"][0]["code"] == "DENIED"
    assert called == []
    assert (await client.head(routes.base())).status == 200


# -- passwords bcrypt cannot take, and users that do not exist ---------------------------------------

LONG = "p" * 73


def test_a_password_over_72_bytes_is_401_not_500(htpasswd_server: ServerProcess, token_server: ServerProcess) -> None:
    c = htpasswd_server.client()
    r = c.request("GET", routes.base(), headers=_basic("alice", LONG))
    assert r.status == 401 and r.error_codes() == ["UNAUTHORIZED"]
    assert c.request("HEAD", routes.base(), headers=_basic("alice", "é" * 37)).status == 401  # 74 bytes
    t = token_server.client()
    status, _ = _token(t, "repository:alice/app:pull", ("alice", LONG))
    assert status == 401
    body = urlencode({"grant_type": "password", "username": "alice", "password": LONG, "service": "test-svc"})
    r = t.request("POST", "/token", body.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 401


def test_htpasswd_command_refuses_a_password_over_72_bytes() -> None:
    r = subprocess.run([sys.executable, "-m", "hoist.cli", "registry", "htpasswd", "alice", "--password-stdin"],
                       input=LONG + "\n", capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode != 0 and r.stdout == ""
    assert "73 bytes" in r.stderr and "72" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "hoist.cli", "registry", "htpasswd", "alice", "--password-stdin"],
                       input="p" * 72 + "\n", capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("alice:$2y$")


def test_htpasswd_file_with_a_malformed_hash_is_a_config_error(tmp_path: Path) -> None:
    from registry.auth.errors import AuthConfigError
    from registry.auth.htpasswd import Htpasswd

    (tmp_path / "htpasswd").write_text("alice:$2y$10$short\n")
    with pytest.raises(AuthConfigError, match=":1: expected user:bcrypt-hash"):
        Htpasswd.load(tmp_path / "htpasswd")


def test_unknown_users_pay_a_bcrypt_check_like_known_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Behaviour, not time: an unknown user's password is checked against a hash of the same cost."""
    import bcrypt

    from registry.auth.errors import BadCredentials
    from registry.auth.htpasswd import Htpasswd

    (tmp_path / "htpasswd").write_text(f"alice:{hash_password('s3cret', 5)}\n")
    users = Htpasswd.load(tmp_path / "htpasswd")
    checked: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    with pytest.raises(BadCredentials):
        users.check("mallory", "s3cret")
    with pytest.raises(BadCredentials):
        users.check("alice", "wrong")
    assert len(checked) == 2
    assert checked[0] != checked[1] and checked[0][:7] == checked[1][:7] == b"$2b$05$"
