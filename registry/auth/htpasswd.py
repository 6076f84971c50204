"""htpasswd users (bcrypt only, as Distribution accepts): ``user:$2y$...`` lines.

bcrypt reads at most 72 bytes of a password; bcrypt 5 refuses longer ones instead of silently
truncating. Such a password can never be hashed here, so it never checks out (401, not 500).
An unknown user costs the same bcrypt check as a known one (a dummy hash of the same cost),
so the time to answer does not tell which users exist.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import bcrypt

from registry.auth.errors import AuthConfigError, BadCredentials, PasswordTooLong

MAX_PASSWORD_BYTES = 72
DEFAULT_COST = 10
_HASH = re.compile(rb"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")


def hash_password(password: str, rounds: int = DEFAULT_COST) -> str:
    """A bcrypt hash in the ``$2y$`` form htpasswd writes; PasswordTooLong past 72 bytes."""
    data = password.encode()
    if len(data) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong(f"the password is {len(data)} bytes; bcrypt uses at most {MAX_PASSWORD_BYTES}")
    h = bcrypt.hashpw(data, bcrypt.gensalt(rounds)).decode()
    return "$2y$" + h[4:]


def _cost(hashed: bytes) -> int:
    return int(hashed[4:6])


class Htpasswd:
    def __init__(self, entries: dict[str, bytes]) -> None:
        self._entries = entries
        # bcrypt is slow on purpose; remember recent successes so a busy client does not pay it
        # on every request (keyed by the exact pair, so a changed password still fails).
        self._verified: set[tuple[str, str]] = set()
        cost = max((_cost(h) for h in entries.values()), default=DEFAULT_COST)
        self._dummy = bcrypt.hashpw(b"hoist: no such user", bcrypt.gensalt(cost))

    @classmethod
    def load(cls, path: str | Path) -> Htpasswd:
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
            if not sep or not user or not _HASH.match(hashed.encode()):
                raise AuthConfigError(f"{path}:{number}: expected user:bcrypt-hash")
            entries[user] = ("$2b$" + hashed[4:]).encode()
        return cls(entries)

    def check(self, user: str, password: str) -> None:
        """Raise BadCredentials unless the pair is valid (blocking: bcrypt)."""
        if (user, password) in self._verified:
            return
        data = password.encode()
        if len(data) > MAX_PASSWORD_BYTES:
            raise BadCredentials(f"invalid credentials for {user!r}")
        hashed = self._entries.get(user)
        if hashed is None:
            bcrypt.checkpw(data, self._dummy)
            raise BadCredentials(f"invalid credentials for {user!r}")
        if not bcrypt.checkpw(data, hashed):
            raise BadCredentials(f"invalid credentials for {user!r}")
        if len(self._verified) > 1024:
            self._verified.clear()
        self._verified.add((user, password))

    async def acheck(self, user: str, password: str) -> None:
        if (user, password) in self._verified:
            return
        await asyncio.to_thread(self.check, user, password)
