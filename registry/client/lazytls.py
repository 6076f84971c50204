"""aiohttp imported without loading the system's CAs twice at import time.

``aiohttp.connector`` builds its two default TLS contexts (verifying and not) when it is
imported, and each loads the system's CA bundle: ~0.1 s here, a tenth of a fresh CI runner's
fully cached build, paid by every build, push and pull, plain-HTTP registry or not. Inside
``deferred_default_cas()``, a context asked to load the default CA paths
(``set_default_verify_paths``, which ``ssl.create_default_context`` calls) loads them the first
time it wraps a connection instead: the verifying context then trusts exactly what it would
have trusted (the same default paths, read when it is first used), and the other one, which
verifies nothing, never reads them. Contexts made outside the block are untouched.

It works by giving ``ssl.SSLContext`` a ``set_default_verify_paths`` of its own for the
duration of the block: a context that calls it becomes a ``DeferredCAContext`` (a subclass, so
``isinstance`` holds and its settings stay as they are) that loads the paths at its first wrap."""

from __future__ import annotations

import _ssl
import contextlib
import ssl
import threading
from collections.abc import Iterator
from typing import Any

_LOAD_DEFAULT_PATHS = _ssl._SSLContext.set_default_verify_paths


class DeferredCAContext(ssl.SSLContext):
    """An SSLContext whose default CA paths are loaded at its first wrap."""

    _defer_lock = threading.Lock()
    _hoist_default_cas = False

    def set_default_verify_paths(self) -> None:
        self._hoist_default_cas = True

    def _load_deferred(self) -> None:
        if self._hoist_default_cas:
            with self._defer_lock:
                if self._hoist_default_cas:
                    _LOAD_DEFAULT_PATHS(self)
                    self._hoist_default_cas = False

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load_deferred()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load_deferred()
        return super().wrap_bio(*args, **kwargs)

    def get_ca_certs(self, binary_form: bool = False) -> Any:
        self._load_deferred()
        return super().get_ca_certs(binary_form)

    def cert_store_stats(self) -> dict[str, int]:
        self._load_deferred()
        return super().cert_store_stats()


def _defer(self: ssl.SSLContext) -> None:
    self.__class__ = DeferredCAContext
    self._hoist_default_cas = True  # type: ignore[attr-defined]


@contextlib.contextmanager
def deferred_default_cas() -> Iterator[None]:
    """Within the block, an ``ssl.SSLContext`` told to load the default CAs loads them at its
    first use."""
    own = ssl.SSLContext.__dict__.get("set_default_verify_paths")
    ssl.SSLContext.set_default_verify_paths = _defer  # type: ignore[method-assign]
    try:
        yield
    finally:
        if own is None:
            del ssl.SSLContext.set_default_verify_paths
        else:
            ssl.SSLContext.set_default_verify_paths = own  # type: ignore[method-assign]


def deferred(context: ssl.SSLContext) -> bool:
    """Whether ``context`` still has default CAs to load (for tests)."""
    return bool(context.__dict__.get("_hoist_default_cas", False))
