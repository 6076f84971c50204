"""Certificates for a registry with a private CA, or that wants a client certificate, where
docker and podman look for them: ``<root>/certs.d/<registry>/`` for each root (hoist's state
root, ``/etc/docker``, ``/etc/containers``): ``*.crt`` are CAs to trust, ``NAME.cert`` +
``NAME.key`` a client certificate."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

from registry.client.errors import ConfigurationError

SYSTEM_CERTS_ROOTS = (Path("/etc/docker"), Path("/etc/containers"))


def certs_dirs(registry: str, roots: Iterable[Path]) -> list[Path]:
    """``<root>/certs.d/<registry>`` for each root, in order (existing or not)."""
    return [root / "certs.d" / registry for root in roots]


def tls_context(registry: str, roots: Iterable[Path]) -> ssl.SSLContext | None:
    """System CAs plus the registry's certs.d CAs and client certificate; None when it has none."""
    dirs = [d for d in certs_dirs(registry, roots) if d.is_dir()]
    if not dirs:
        return None
    ctx = ssl.create_default_context()
    try:
        for d in dirs:
            for ca in sorted(d.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(ca))
            for cert in sorted(d.glob("*.cert")):
                key = cert.with_suffix(".key")
                if not key.exists():
                    raise ConfigurationError(f"client certificate {cert} has no {key.name} beside it")
                ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as e:
        raise ConfigurationError(f"cannot use the certificates in {', '.join(map(str, dirs))}: {e}") from None
    return ctx
