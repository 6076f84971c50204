"""Bearer tokens per the Docker token authentication spec: JWTs signed by an issuer, carrying
an ``access`` claim of granted scopes, verified by the registry with the issuer's public keys.

The ``kid`` header is the libtrust key ID of the signing key (what Distribution and docker's
token servers use), so hoist's tokens and an external issuer's look the same to a verifier.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry.auth.access import Access
from registry.auth.errors import AuthConfigError, InvalidToken

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_LEEWAY = 60.0


def key_id(public: PublicKey) -> str:
    """libtrust key ID: base32 of the first 240 bits of sha256(DER SubjectPublicKeyInfo), in groups of 4."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


def _algorithm(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RS256"
    curve = key.curve.name
    return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(curve, "ES256")


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def load_private_key(path: str | Path) -> PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AuthConfigError(f"cannot read signing key {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise AuthConfigError(f"signing key {path} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise AuthConfigError(f"signing key {path}: only RSA and EC keys are supported")
    return key


def load_public_keys(path: str | Path) -> list[PublicKey]:
    """Certificates (a root cert bundle) and/or public keys from one PEM file."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AuthConfigError(f"cannot read {path}: {e.strerror}") from None
    keys: list[PublicKey] = []
    try:
        keys += [c.public_key() for c in x509.load_pem_x509_certificates(data)]  # type: ignore[misc]
    except ValueError:
        pass
    for block in data.split(b"-----END PUBLIC KEY-----")[:-1]:
        start = block.find(b"-----BEGIN PUBLIC KEY-----")
        if start >= 0:
            keys.append(serialization.load_pem_public_key(block[start:] + b"-----END PUBLIC KEY-----\n"))  # type: ignore[arg-type]
    if not keys:
        raise AuthConfigError(f"{path}: no certificates or public keys found")
    return keys


class TokenIssuer:
    def __init__(self, key: PrivateKey, issuer: str, service: str, expiration: float = 300.0) -> None:
        self.key, self.issuer, self.service, self.expiration = key, issuer, service, expiration
        self.kid = key_id(key.public_key())
        self.algorithm = _algorithm(key)

    def issue(self, account: str, access: list[Access]) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": account, "aud": self.service,
            "exp": now + int(self.expiration), "nbf": now - 1, "iat": now,
            "jti": secrets.token_hex(16),
            "access": [a.to_claim() for a in access if a.actions],
        }
        token = jwt.encode(claims, self.key, algorithm=self.algorithm, headers={"kid": self.kid})
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": int(self.expiration), "issued_at": issued}


@dataclass(frozen=True)
class Claims:
    account: str
    access: tuple[Access, ...]

    def allows(self, needed: Access) -> bool:
        for a in self.access:
            if a.type == needed.type and a.name == needed.name and (needed.actions <= a.actions or "*" in a.actions):
                return True
        return False


class TokenVerifier:
    def __init__(self, keys: list[PublicKey], issuer: str, service: str) -> None:
        if not keys:
            raise AuthConfigError("token verification needs at least one public key")
        self.keys = {key_id(k): k for k in keys}
        self.issuer, self.service = issuer, service

    def verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise InvalidToken(f"malformed token: {e}") from None
        alg = header.get("alg")
        if alg not in ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512"):
            raise InvalidToken(f"unsupported token algorithm {alg!r}")
        kid = header.get("kid")
        candidates = [self.keys[kid]] if kid in self.keys else ([] if kid else list(self.keys.values()))
        if not candidates:
            raise InvalidToken("token signed by an unknown key")
        last: Exception | None = None
        for key in candidates:
            try:
                claims = jwt.decode(token, key, algorithms=[alg], audience=self.service, issuer=self.issuer,
                                    leeway=_LEEWAY, options={"require": ["exp", "iss", "aud"]})
                return _claims(claims)
            except jwt.PyJWTError as e:
                last = e
        raise InvalidToken(f"invalid token: {last}")


def _claims(claims: dict[str, Any]) -> Claims:
    items = claims.get("access") or []
    if not isinstance(items, list):
        raise InvalidToken("access claim must be a list")
    access = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidToken("access entries must be objects")
        actions = item.get("actions") or []
        if not isinstance(actions, list):
            raise InvalidToken("access actions must be a list")
        access.append(Access(str(item.get("type", "")), str(item.get("name", "")), frozenset(map(str, actions))))
    return Claims(str(claims.get("sub", "")), tuple(access))
