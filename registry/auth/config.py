"""The registry's auth set-up built from the ``auth:`` config section.

::

    auth:
      htpasswd: {realm: hoist, path: /etc/hoist/htpasswd}     # Basic auth: every valid user may do everything
    # or
    auth:
      token:
        realm: https://registry.example/token    # where clients get tokens (default: this registry's /token)
        service: hoist-registry
        issuer: hoist
        rootcertbundle: /etc/hoist/issuer.pem    # verify tokens of an external issuer (certificates / public keys)
        signingkey: /etc/hoist/token-key.pem     # built-in issuer: sign with this key (RSA or EC PEM) ...
        htpasswd: /etc/hoist/htpasswd            # ... its users ...
        expiration: 5m
        acl:                                     # ... and what they may do (first match wins)
          - {account: admin, name: "*", actions: ["*"]}
          - {account: "*", name: "${account}/*", actions: [pull, push, delete]}
          - {account: "", name: "public/*", actions: [pull]}          # "" = anonymous
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry.auth.access import ACL
from registry.auth.errors import AuthConfigError
from registry.auth.htpasswd import Htpasswd
from registry.auth.tokens import (
    TokenIssuer,
    TokenVerifier,
    load_private_key,
    load_public_keys,
)
from registry.config_values import duration_seconds


@dataclass
class AuthSetup:
    mode: str                                  # "htpasswd" | "token"
    realm: str = ""
    service: str = ""
    htpasswd: Htpasswd | None = None
    verifier: TokenVerifier | None = None
    issuer: TokenIssuer | None = None
    acl: ACL = field(default_factory=ACL)


def build_auth(section: Any) -> AuthSetup | None:
    """None when auth is off; AuthConfigError naming the key on a bad section."""
    if not section:
        return None
    if not isinstance(section, dict):
        raise AuthConfigError("auth: expected a mapping")
    modes = [k for k in section if section[k] is not None]
    if len(modes) != 1 or modes[0] not in ("htpasswd", "token"):
        raise AuthConfigError("auth: configure exactly one of htpasswd or token")
    mode = modes[0]
    cfg = section[mode]
    if not isinstance(cfg, dict):
        raise AuthConfigError(f"auth.{mode}: expected a mapping")
    if mode == "htpasswd":
        if "path" not in cfg:
            raise AuthConfigError("auth.htpasswd.path is required")
        return AuthSetup("htpasswd", realm=str(cfg.get("realm", "hoist-registry")),
                         htpasswd=Htpasswd.load(cfg["path"]))
    service = str(cfg.get("service", "hoist-registry"))
    issuer_name = str(cfg.get("issuer", "hoist"))
    setup = AuthSetup("token", realm=str(cfg.get("realm", "")), service=service)
    keys = []
    if cfg.get("signingkey"):
        key = load_private_key(cfg["signingkey"])
        expiration = duration_seconds(cfg.get("expiration", "5m"), "auth.token.expiration")
        setup.issuer = TokenIssuer(key, issuer_name, service, expiration)
        setup.htpasswd = Htpasswd.load(cfg["htpasswd"]) if cfg.get("htpasswd") else Htpasswd({})
        setup.acl = ACL.from_config(cfg.get("acl"))
        keys.append(key.public_key())
    if cfg.get("rootcertbundle"):
        keys += load_public_keys(cfg["rootcertbundle"])
    if not keys:
        raise AuthConfigError("auth.token: set signingkey (built-in issuer) or rootcertbundle (external issuer)")
    if setup.issuer is None and not setup.realm:
        raise AuthConfigError("auth.token.realm is required with an external issuer")
    setup.verifier = TokenVerifier(keys, issuer_name, service)
    return setup
