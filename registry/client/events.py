"""Progress events: how the client says what it is doing (it never prints)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from storage.digest import Digest

# The states a blob goes through, as docker names them.
WAITING = "waiting"
DOWNLOADING = "downloading"
UPLOADING = "uploading"
VERIFYING = "verifying"
RETRYING = "retrying"
DONE = "done"
EXISTS = "exists"
MOUNTED = "mounted"
PUSHED = "pushed"
FAILED = "failed"

FINAL_STATES = frozenset({DONE, EXISTS, MOUNTED, PUSHED, FAILED})


@dataclass(frozen=True)
class Progress:
    """One blob's state. ``id`` is the short digest docker shows; ``current``/``total`` bytes."""

    id: str
    state: str
    current: int = 0
    total: int = 0
    detail: str = ""

    @classmethod
    def of(cls, digest: Digest, state: str, current: int = 0, total: int = 0, detail: str = "") -> Progress:
        return cls(short_id(digest), state, current, total, detail)


ProgressFn = Callable[[Progress], None]


def short_id(digest: Digest) -> str:
    return digest.hex[:12]


def ignore(_: Progress) -> None:
    """The default callback: report nothing."""
