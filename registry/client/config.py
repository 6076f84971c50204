"""Where the client's configuration lives, and a client opened with it.

:class:`ClientConfig` names the files: docker's ``config.json`` (credentials,
:mod:`registry.client.credentials`), the roots holding ``certs.d/`` (:mod:`registry.client.tls`)
and the JSON file listing insecure registries (``{"insecure-registries": ["host:port", ...]}``;
loopback registries are always spoken to over plain HTTP, as docker does).
:meth:`ClientConfig.from_env` is the one place that reads the environment for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from registry.client.auth import Credentials
from registry.client.client import RegistryClient
from registry.client.credentials import docker_config_path, load_credentials, read_json_object
from registry.client.errors import ConfigurationError
from registry.client.tls import SYSTEM_CERTS_ROOTS, tls_context


@dataclass(frozen=True)
class ClientConfig:
    docker_config: Path                     # config.json with auths / credsStore / credHelpers
    certs_roots: tuple[Path, ...] = ()      # each holds certs.d/<registry>/
    insecure_file: Path | None = None       # a JSON object with "insecure-registries"

    @classmethod
    def from_env(cls, state_root: Path) -> ClientConfig:
        """``$DOCKER_CONFIG`` for credentials; ``state_root`` (hoist's ``$HOIST_ROOT``), then
        /etc/docker and /etc/containers for certs.d; ``state_root/config.json`` for the
        insecure list."""
        return cls(docker_config_path(), (state_root, *SYSTEM_CERTS_ROOTS), state_root / "config.json")

    def insecure_registries(self, extra: Iterable[str] = ()) -> set[str]:
        doc = read_json_object(self.insecure_file) if self.insecure_file is not None else {}
        listed = doc.get("insecure-registries") or []
        if not isinstance(listed, list):
            raise ConfigurationError(f"insecure-registries in {self.insecure_file} must be a list")
        return {str(r) for r in listed} | set(extra)

    def is_insecure(self, registry: str, extra: Iterable[str] = ()) -> bool:
        return registry in self.insecure_registries(extra)

    def credentials(self, registry: str) -> Credentials | None:
        return load_credentials(registry, self.docker_config)


def open_client(registry: str, config: ClientConfig, *, insecure: bool = False, connections: int = 8,
                credentials: Credentials | None = None) -> RegistryClient:
    """A client for ``registry`` with ``credentials`` (default: the stored ones), its insecure
    setting and its certificates."""
    return RegistryClient(registry, credentials=credentials or config.credentials(registry),
                          insecure=insecure or config.is_insecure(registry), connections=connections,
                          tls=tls_context(registry, config.certs_roots))
