"""Progress displays: transfers for push and pull, as docker shows them; builds on a terminal,
as BuildKit's tty display shows them (``BuildTtyProgress``; the plain build format is
``builder.execute.PlainProgress``).

Transfers on a terminal: one line per blob (short digest, state, bytes, rate), redrawn in place
at most ten times a second. Elsewhere (a pipe, a CI log): one plain line each time a blob changes
state.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

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


# -- hoist build's progress on a terminal ------------------------------------------------------------

LOG_LINES = 6           # a running step's last output lines shown beneath it, as BuildKit shows them
_CONTROL = {c: None for c in range(32) if c != 9} | {9: " ", 127: None}


def _clean(line: str) -> str:
    """A step's output line as it may be drawn: the text after its last carriage return (a
    progress bar's newest state), without control characters (a stranger's escape sequences
    never reach the terminal)."""
    return line.rsplit("\r", 1)[-1].translate(_CONTROL)


@dataclass
class _Step:
    name: str
    started: float
    seconds: float | None = None       # set when it ended
    cached: bool = False
    failed: bool = False
    logs: list[str] | None = None
    partial: bytes = b""

    @property
    def running(self) -> bool:
        return self.seconds is None


class BuildTtyProgress:
    """``hoist build --progress tty``, BuildKit's folded display: a header with the total time,
    one line per step with its timer (``CACHED``, ``ERROR``), the running steps' last
    ``LOG_LINES`` output lines beneath them (folded away when the step ends), redrawn in place
    with ANSI escapes at most ten times a second by a ticker thread, cut to the terminal's width
    and height. ``close`` draws the last frame and gives the cursor back. Implements the
    builder's ``Progress`` protocol (start, output, done, error, close)."""

    def __init__(self, fd: int, clock: Callable[[], float] = time.monotonic) -> None:
        import threading

        self.fd = fd
        self.clock = clock
        self.began = clock()
        self.steps: dict[int, _Step] = {}
        self.lock = threading.Lock()
        self._drawn = 0
        self._dirty = False
        self._closed = False
        self._failed = False
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._ticker.start()

    # -- the Progress protocol ----------------------------------------------------------------------
    def start(self, name: str, kind: str = "step") -> int:
        with self.lock:
            step = len(self.steps) + 1
            self.steps[step] = _Step(name, self.clock(), logs=[])
            self._dirty = True
        return step

    def output(self, step: int, data: bytes) -> None:
        with self.lock:
            s = self.steps.get(step)
            if s is None or s.logs is None:
                return
            *lines, s.partial = (s.partial + data).split(b"\n")
            s.logs.extend(_clean(line.decode(errors="replace")) for line in lines)
            del s.logs[:-LOG_LINES]
            self._dirty = True

    def done(self, step: int, seconds: float | None) -> None:
        with self.lock:
            s = self.steps.get(step)
            if s is not None:
                s.seconds, s.cached, s.logs = seconds or 0.0, seconds is None, None
                self._dirty = True

    def error(self, step: int, message: str) -> None:
        with self.lock:
            s = self.steps.get(step)
            if s is not None:
                s.seconds, s.failed, s.logs = self.clock() - s.started, True, None
                self._failed = self._dirty = True

    def close(self) -> None:
        """The last frame (every step folded), then the cursor back."""
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        with self.lock:
            if self._closed:
                return
            self._closed = True
            if self.steps:
                self._draw(final=True)
            self._write("\x1b[?25h")

    # -- drawing ------------------------------------------------------------------------------------
    def _tick(self) -> None:
        while not self._stop.wait(REDRAW_SECONDS):
            with self.lock:
                if self.steps and (self._dirty or any(s.running for s in self.steps.values())):
                    self._draw(final=False)

    def _size(self) -> tuple[int, int]:
        try:
            columns, lines = os.get_terminal_size(self.fd)
        except OSError:
            columns = lines = 0
        # 0: a terminal that does not know its size (a pty nobody sized): 80x24, as a terminal.
        return (max(columns, 20) if columns else 80), (max(lines, 3) if lines else 24)

    def _frame(self, final: bool) -> list[str]:
        width, height = self._size()
        now = self.clock()
        done = sum(1 for s in self.steps.values() if not s.running)
        header = f"[+] Building {now - self.began:.1f}s ({done}/{len(self.steps)})"
        if final:
            header += " FINISHED" if not self._failed else ""
        body: list[str] = []
        for s in self.steps.values():
            label = ("CACHED " if s.cached else "ERROR " if s.failed else "") + s.name
            seconds = s.seconds if s.seconds is not None else now - s.started
            timer = f"{seconds:.1f}s"
            room = width - 1 - len(timer) - 4
            text = label if len(label) < room else label[:max(room - 4, 0)] + "... "
            body.append(f" => {text:<{room}}{timer}" if room > 0 else f" => {timer}")
            if s.logs and not final:
                body.extend((" => => # " + line)[:width - 1] for line in s.logs)
        # What fits: the newest lines, under the header.
        body = body[-(height - 2):] if len(body) > height - 2 else body
        return [header[:width - 1]] + body

    def _draw(self, final: bool) -> None:
        lines = self._frame(final)
        out = ["\x1b[?25l"]
        if self._drawn:
            out.append(f"\r\x1b[{self._drawn}A")
        out.extend(f"\x1b[2K{line}\n" for line in lines)
        if len(lines) < self._drawn:
            out.append("\x1b[J")
        self._write("".join(out))
        self._drawn = len(lines)
        self._dirty = False

    def _write(self, text: str) -> None:
        data = text.encode(errors="replace")
        while data:
            try:
                data = data[os.write(self.fd, data):]
            except InterruptedError:
                continue
            except OSError:
                return          # the terminal is gone: the build goes on without a display
