"""Registry client errors. Each message is one line that names the registry, the repository or
the digest concerned, so the CLI can print it as it is.

::

    ClientError                  base of everything the client raises
    ├── RegistryUnreachable      connection refused, DNS failure, TLS failure, timeout
    │   └── PlainHTTP            a registry spoken to over TLS that answers plain HTTP (``registry``)
    ├── AuthenticationRequired   401 and no credentials to offer
    ├── AuthenticationFailed     credentials offered and refused (401 from the registry or the token realm)
    ├── AccessDenied             403: authenticated, but not allowed
    ├── NotFound                 the registry does not have it
    │   ├── ManifestNotFound     unknown repository, tag or manifest digest
    │   └── BlobNotFound         a blob a manifest names is missing
    ├── PlatformNotFound         an index without an entry for the wanted platform
    ├── ContentInvalid           bytes that do not match their digest or size (nothing is committed)
    ├── ConnectionLost           the connection dropped mid-request (transfers retry and resume)
    ├── TransferFailed           a transfer that kept failing after its retries
    ├── ConfigurationError       a client config file, credential helper or certificate that cannot be used
    ├── StoreFull                the local store's disk is full (the partial downloads are removed)
    └── ProtocolError            an answer the spec does not allow (unexpected status, bad header)
        └── ServerError          a 5xx, or 429 Too Many Requests (``status``, ``retry_after`` seconds)
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the registry client raises."""


class RegistryUnreachable(ClientError):
    pass


class PlainHTTP(RegistryUnreachable):
    """``registry`` (host:port) answered a TLS handshake with plain HTTP: it is an insecure
    registry the caller has not marked as one."""

    def __init__(self, registry: str, message: str | None = None) -> None:
        self.registry = registry
        super().__init__(message or f"{registry} answers plain HTTP, not HTTPS: mark it as an insecure registry")


class AuthenticationRequired(ClientError):
    pass


class AuthenticationFailed(ClientError):
    pass


class AccessDenied(ClientError):
    pass


class NotFound(ClientError):
    pass


class ManifestNotFound(NotFound):
    pass


class BlobNotFound(NotFound):
    pass


class PlatformNotFound(ClientError):
    pass


class ContentInvalid(ClientError):
    pass


class ConnectionLost(ClientError):
    pass


class TransferFailed(ClientError):
    pass


class ConfigurationError(ClientError):
    pass


class StoreFull(ClientError):
    pass


class ProtocolError(ClientError):
    pass


class ServerError(ProtocolError):
    """The registry failed (5xx) or asked to slow down (429); ``retry_after`` is the delay its
    ``Retry-After`` header asked for, in seconds, when it sent one."""

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after
