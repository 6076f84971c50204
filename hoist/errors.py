"""User-facing errors: one line, no traceback.

::

    UserError        what the user asked cannot be done; message says what and what to do
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user caused or can fix. ``hint`` is an optional second sentence."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message, self.hint, self.exit_code = message, hint, exit_code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
