"""htpasswd users (bcrypt only, as Distribution accepts): ``user:$2y$...`` lines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import bcrypt

from registry.auth.errors import AuthConfigError, BadCredentials


def hash_password(password: str, rounds: int = 10) -> str:
    """A bcrypt hash in the ``$2y$`` form htpasswd writes."""
    h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
    return "$2y$" + h[4:]


class Htpasswd:
    def __init__(self, entries: dict[str, bytes]) -> None:
        self._entries = entries
        # bcrypt is slow on purpose; remember recent successes so a busy client does not pay it
        # on every request (keyed by the exact pair, so a changed password still fails).
        self._verified: set[tuple[str, str]] = set()

    @classmethod
    def load(cls, path: str | Path) -> "Htpasswd":
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise AuthConfigError(f"cannot read htpasswd file {path}: {e.strerror}") from None
        entries: dict[str, bytes] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user or not hashed.startswith(("$2y$", "$2b$", "$2a$")):
                raise AuthConfigError(f"{path}:{number}: expected user:bcrypt-hash")
            entries[user] = ("$2b$" + hashed[4:]).encode()
        return cls(entries)

    def check(self, user: str, password: str) -> None:
        """Raise BadCredentials unless the pair is valid (blocking: bcrypt)."""
        if (user, password) in self._verified:
            return
        hashed = self._entries.get(user)
        if hashed is None or not bcrypt.checkpw(password.encode(), hashed):
            raise BadCredentials(f"invalid credentials for {user!r}")
        if len(self._verified) > 1024:
            self._verified.clear()
        self._verified.add((user, password))

    async def acheck(self, user: str, password: str) -> None:
        if (user, password) in self._verified:
            return
        await asyncio.to_thread(self.check, user, password)
