"""Transfer progress for push and pull, as docker shows it.

On a terminal: one line per blob (short digest, state, bytes, rate), redrawn in place at most
ten times a second. Elsewhere (a pipe, a CI log): one plain line each time a blob changes state.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO
from collections.abc import Callable

from registry.client.events import DOWNLOADING, FINAL_STATES, UPLOADING, Progress

REDRAW_SECONDS = 0.1
BAR_WIDTH = 30


def human_size(n: float) -> str:
    """Decimal units, as docker prints them (``12.3MB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}B"


def docker_size(n: float, precision: int = 3) -> str:
    """go-units' ``HumanSizeWithPrecision(n, precision)``, what ``docker images`` and ``docker
    ps -s`` print: decimal units, three significant digits (``0B``, ``4.26MB``, ``124MB``);
    ``HumanSize`` is precision 4."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.{precision}g}{units[i]}"


def human_duration(seconds: float) -> str:
    """go-units' ``HumanDuration``: docker's ``Up 5 minutes`` and ``2 weeks ago``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


@dataclass
class _Line:
    event: Progress
    started: float | None = None
    start_bytes: int = 0

    def rate(self, now: float) -> float:
        if self.started is None or now <= self.started:
            return 0.0
        return (self.event.current - self.start_bytes) / (now - self.started)


class ProgressDisplay:
    """A progress callback that renders to ``stream``."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.lines: dict[str, _Line] = {}
        self._drawn = 0
        self._last_draw = 0.0

    def __call__(self, event: Progress) -> None:
        line = self.lines.get(event.id)
        changed = line is None or line.event.state != event.state
        if line is None:
            line = self.lines[event.id] = _Line(event)
        if event.state in (DOWNLOADING, UPLOADING) and line.started is None:
            line.started, line.start_bytes = self.clock(), event.current
        line.event = event
        if self.tty:
            now = self.clock()
            if changed or now - self._last_draw >= REDRAW_SECONDS:
                self._redraw(now)
        elif changed:
            self._print_plain(line)

    def note(self, text: str) -> None:
        """A line of its own above the blob lines (e.g. the digest at the end)."""
        if self.tty and self._drawn:
            self._redraw(self.clock())
            self._drawn = 0
            self.lines.clear()
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self.lines:
            self._redraw(self.clock())
        self._drawn = 0
        self.lines.clear()

    def _print_plain(self, line: _Line) -> None:
        e = line.event
        text = f"{e.id}: {e.state.capitalize()}"
        if e.state in FINAL_STATES and e.total:
            text += f" ({human_size(e.total)})"
        if e.detail:
            text += f": {e.detail}"
        print(text, file=self.stream, flush=True)

    def _redraw(self, now: float) -> None:
        out = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}A")
        for line in self.lines.values():
            out.append("\x1b[2K" + self._render(line, now) + "\n")
        self.stream.write("".join(out))
        self.stream.flush()
        self._drawn = len(self.lines)
        self._last_draw = now

    @staticmethod
    def _render(line: _Line, now: float) -> str:
        e = line.event
        label = f"{e.id}: {e.state.capitalize():<12}"
        if e.state in (DOWNLOADING, UPLOADING) and e.total:
            filled = int(BAR_WIDTH * min(e.current, e.total) / e.total)
            bar = "=" * max(filled - 1, 0) + (">" if filled else "") + " " * (BAR_WIDTH - filled)
            rate = line.rate(now)
            speed = f"  {human_size(rate)}/s" if rate else ""
            return f"{label}[{bar}] {human_size(e.current)}/{human_size(e.total)}{speed}"
        if e.state in FINAL_STATES and e.total:
            return f"{label}{human_size(e.total)}"
        return label + (f" {e.detail}" if e.detail else "")
