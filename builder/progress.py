"""The build's progress display, as BuildKit prints it: a step starts (``#N name``), shows its
output, ends CACHED, DONE in so many seconds, or in an ERROR. ``PlainProgress`` is
``--progress plain``; ``hoist.progress.BuildTtyProgress`` the folded terminal display;
``QuietProgress`` is ``-q``. A light module: a build served from the build memo
(``builder.memo``) replays its steps through these without importing the executor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    # kind: "from" for a FROM (shown DONE, not CACHED, when the build is cached), else "step"
    def start(self, name: str, kind: str = "step") -> int: ...
    def output(self, step: int, data: bytes) -> None: ...
    def done(self, step: int, seconds: float | None) -> None: ...     # None: CACHED
    def error(self, step: int, message: str) -> None: ...
    def close(self) -> None: ...                                        # the build is over


class PlainProgress:
    """BuildKit's plain progress: ``#N name``, output lines, ``#N DONE 0.1s`` or ``#N CACHED``."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.lock = threading.Lock()
        self._write = write
        self.count = 0
        self.started: dict[int, float] = {}
        self.partial: dict[int, bytes] = {}

    def write(self, text: str) -> None:
        with self.lock:
            self._write(text)

    def start(self, name: str, kind: str = "step") -> int:
        with self.lock:
            self.count += 1
            step = self.count
        self.started[step] = time.monotonic()
        self.write(f"#{step} {name}\n")
        return step

    def output(self, step: int, data: bytes) -> None:
        buf = self.partial.get(step, b"") + data
        *lines, rest = buf.split(b"\n")
        self.partial[step] = rest
        elapsed = time.monotonic() - self.started.get(step, time.monotonic())
        for line in lines:
            self.write(f"#{step} {elapsed:.3f} {line.decode(errors='replace')}\n")

    def _flush(self, step: int) -> None:
        rest = self.partial.pop(step, b"")
        if rest:
            self.output(step, rest + b"\n")
            self.partial.pop(step, None)

    def done(self, step: int, seconds: float | None) -> None:
        self._flush(step)
        self.write(f"#{step} CACHED\n\n" if seconds is None else f"#{step} DONE {seconds:.1f}s\n\n")

    def error(self, step: int, message: str) -> None:
        self._flush(step)
        self.write(f"#{step} ERROR: {message}\n\n")

    def close(self) -> None:
        pass


class QuietProgress:
    def start(self, name: str, kind: str = "step") -> int:
        return 0

    def output(self, step: int, data: bytes) -> None:
        pass

    def done(self, step: int, seconds: float | None) -> None:
        pass

    def error(self, step: int, message: str) -> None:
        pass

    def close(self) -> None:
        pass


class RecordingProgress:
    """A Progress that also keeps what a cached build of the same steps would show: each step's
    name, whether it is a FROM, and a FROM's output (its warnings). The build memo replays it."""

    MAX_OUTPUT = 64 * 1024          # a FROM's output kept (its warnings: a few lines)

    def __init__(self, inner: Progress) -> None:
        self.inner = inner
        self.steps: list[list] = []         # [name, kind, output text]
        self._inner_step: list[int] = []
        self.lock = threading.Lock()

    def start(self, name: str, kind: str = "step") -> int:
        inner = self.inner.start(name, kind)
        with self.lock:
            self.steps.append([name, kind, ""])
            self._inner_step.append(inner)
            return len(self.steps)

    def output(self, step: int, data: bytes) -> None:
        self.inner.output(self._inner_step[step - 1], data)
        record = self.steps[step - 1]
        if record[1] == "from" and len(record[2]) < self.MAX_OUTPUT:
            record[2] += data.decode("utf-8", errors="replace")

    def done(self, step: int, seconds: float | None) -> None:
        self.inner.done(self._inner_step[step - 1], seconds)

    def error(self, step: int, message: str) -> None:
        self.inner.error(self._inner_step[step - 1], message)

    def close(self) -> None:
        self.inner.close()


def replay(progress: Progress, steps: list[list]) -> None:
    """Show ``steps`` (``RecordingProgress.steps``) as a build whose every step is a cache hit
    shows them: each CACHED, a FROM done at once with its output."""
    for name, kind, output in steps:
        step = progress.start(name, kind)
        if output:
            progress.output(step, output.encode("utf-8", errors="replace"))
        progress.done(step, 0.0 if kind == "from" else None)
