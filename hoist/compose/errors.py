"""Errors of the compose model and engine: one line, naming the file, the service and the key.

::

    UserError (hoist.errors)
    └── ComposeError        a compose file or project that cannot be loaded or brought up
"""

from __future__ import annotations

from hoist.errors import UserError


class ComposeError(UserError):
    """``where`` is the file (and service and key) the message is about, when known."""

    def __init__(self, message: str, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message, hint=hint)


def where(file: str | None, service: str | None = None, key: str | None = None) -> str:
    """``compose.yaml: service "web": ports.0`` (the parts that are known)."""
    parts = [file] if file else []
    if service:
        parts.append(f'service "{service}"')
    if key:
        parts.append(key)
    return ": ".join(parts)
