"""The CLI's wiring of the client and the local store: state paths, the client configuration
read from the environment, and errors turned into one-line UserErrors.

Credential lookup (docker's ``config.json``, credential helpers), certs.d and the insecure
registry list belong to the registry client (:mod:`registry.client.credentials`,
:mod:`registry.client.tls`, :mod:`registry.client.config`); the functions here call them with
hoist's paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hoist.errors import UserError
from hoist.paths import hoist_root, images_dir
from registry.client.errors import ClientError, PlainHTTP
from storage.errors import NameInvalid, StorageError, TagInvalid
from storage.fsutil import secure_store_root
from storage.layout import ImageLayout
from storage.platform import Platform
from storage.reference import Reference, parse_reference

if TYPE_CHECKING:  # the client (aiohttp, ssl) is imported only by the verbs that talk to a registry
    from registry.client.auth import Credentials
    from registry.client.client import RegistryClient
    from registry.client.config import ClientConfig


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn client and store errors into one-line UserErrors (their messages already name what
    went wrong); an interrupted transfer is left as it is, to resume next time."""
    try:
        yield
    except PlainHTTP as e:
        raise UserError(f"{e.registry} answers plain HTTP, not HTTPS: it is an insecure registry",
                        hint=f"pass --insecure, or list \"{e.registry}\" under \"insecure-registries\" "
                             f"in {client_settings().insecure_file}") from None
    except ClientError as e:
        raise UserError(str(e)) from None
    except StorageError as e:
        raise UserError(str(e)) from None


def client_settings() -> ClientConfig:
    """Where credentials, certificates and the insecure list are, for this hoist."""
    from registry.client.config import ClientConfig

    return ClientConfig.from_env(hoist_root())


def open_client(registry: str, insecure: bool = False, connections: int = 8,
                credentials: Credentials | None = None) -> RegistryClient:
    from registry.client import config as client_config

    with user_errors():
        return client_config.open_client(registry, client_settings(), insecure=insecure,
                                         connections=connections, credentials=credentials)


def load_credentials(registry: str) -> Credentials | None:
    from registry.client import credentials as stored

    with user_errors():
        return stored.load_credentials(registry, client_settings().docker_config)


def store_credentials(registry: str, credentials: Credentials) -> Path:
    from registry.client import credentials as stored

    with user_errors():
        return stored.store_credentials(registry, credentials, client_settings().docker_config)


def remove_credentials(registry: str) -> bool:
    from registry.client import credentials as stored

    with user_errors():
        return stored.remove_credentials(registry, client_settings().docker_config)


def is_insecure(registry: str) -> bool:
    with user_errors():
        return client_settings().is_insecure(registry)


def local_store() -> ImageLayout:
    secure_store_root(hoist_root())
    return ImageLayout(images_dir()).init()


def parse_ref(text: str) -> Reference:
    try:
        return parse_reference(text)
    except (NameInvalid, TagInvalid) as e:
        raise UserError(str(e)) from None


def parse_platform(text: str | None) -> Platform | None:
    if not text:
        return None
    try:
        return Platform.parse(text)
    except ValueError as e:
        raise UserError(str(e), hint="e.g. linux/amd64 or linux/arm/v7") from None
