"""``hoist build --progress``: BuildKit's folded tty display, under a real pseudo-terminal
(each step a line with its timer, the running step's last lines beneath it and folded away
when it ends, redrawn at most ten times a second, and a clean last frame); ``auto`` picks it
on a terminal and the plain lines elsewhere."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path


from builder.cachemounts import CacheMounts
from tests.cli.helpers import REPO_ROOT, Hoist

COLUMNS, ROWS = 100, 40


def _ctx(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def build_on_pty(h: Hoist, *args: str, seen: Callable[[str], None] | None = None) -> tuple[int, str, str, float]:
    """``hoist build ARGS`` with stderr on a pty of COLUMNS x ROWS: (exit code, stdout, what the
    terminal received, seconds it ran). ``seen`` gets what the terminal received so far, after
    each read."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "hoist.cli", "build", *args], env=dict(h.env, TERM="xterm"),
                            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    received = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:         # EIO: every writer of the terminal is gone
            break
        if not chunk:
            break
        received += chunk
        if seen is not None:
            seen(received.decode(errors="replace"))
    os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    code = proc.wait(timeout=60)
    return code, out, received.decode(errors="replace"), time.monotonic() - began


_ESCAPE = re.compile(r"\x1b\[(\??)(\d*)([A-Za-z])")


def screen(data: str) -> list[str]:
    """What a terminal shows after ``data``: the escapes the display uses (cursor up, erase
    line, erase below, cursor show/hide), carriage return and newline; anything else is text."""
    lines, row, col = [""], 0, 0
    pos = 0
    while pos < len(data):
        m = _ESCAPE.match(data, pos)
        if m:
            private, number, op = m.groups()
            n = int(number or 1)
            if private:
                pass                                   # ?25l / ?25h
            elif op == "A":
                row = max(row - n, 0)
            elif op == "K":
                lines[row] = ""
            elif op == "J":
                del lines[row + 1:]
                lines[row] = lines[row][:col]
            else:
                raise AssertionError(f"unexpected escape {m.group(0)!r}")
            pos = m.end()
            continue
        ch = data[pos]
        pos += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append("")
        else:
            assert ch == "\t" or ch >= " ", f"control character {ch!r} reached the terminal"
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1:]
            col += 1
    return [line.rstrip() for line in lines if line.strip()]


STEPS = """\
FROM busybox
RUN --mount=type=cache,id=gate,target=/g for i in 1 2 3 4 5 6 7 8 9; do echo "line-$i"; done; \\
    printf '\\033]0;title\\007\\033[31mred\\n'; seq 1 3000; echo waiting-for-go; \\
    while [ ! -e /g/go ]; do sleep 0.05; done
RUN echo second
"""


def _release_when_shown(gate: Path) -> Callable[[str], None]:
    """Lets the step end once the display has shown its last line (beneath the running step)."""
    def seen(received: str) -> None:
        if " => => # waiting-for-go" in received and gate.parent.is_dir():
            gate.touch()
    return seen


def test_tty_display_folds_step_output_and_ends_clean(h: Hoist, tmp_path: Path) -> None:
    gate = CacheMounts(h.root / "cache" / "cachemounts").key_dir("gate", "") / "0" / "go"
    code, out, term, seconds = build_on_pty(h, "--progress", "tty", "-t", "p:1", str(_ctx(tmp_path, STEPS)),
                                            seen=_release_when_shown(gate))
    assert code == 0, term
    assert out.startswith("sha256:")
    shown = term[term.index(" => => # waiting-for-go") - 400:]
    # The running step's last lines, beneath it: 3000 lines of output, the last six shown.
    assert [f" => => # {n}" in shown for n in (2997, 2998, 2999, 3000)] == [True] * 4
    assert "\x1b]0;title" not in term and "\x1b[31m" not in term        # a step's escapes never reach it
    final = screen(term)
    assert final[0].startswith("[+] Building ") and final[0].endswith("(3/3) FINISHED")
    assert re.fullmatch(r" => \[1/3\] FROM docker\.io/library/busybox:latest@sha256:\w+\.\.\. +\d+\.\d+s", final[1])
    assert re.fullmatch(r" => \[2/3\] RUN for i in .*\.\.\. +\d+\.\d+s", final[2])
    assert re.fullmatch(r" => \[3/3\] RUN echo second +\d+\.\d+s", final[3])
    assert all(len(line) < COLUMNS for line in final)
    assert final[4:] == [f"writing image {out.strip()} done", "naming to docker.io/library/p:1 done"]
    assert not [line for line in final if "=> =>" in line]          # every step's output folded away
    # At most ten frames a second (3000 lines of output did not make 3000 frames), and the last.
    assert term.count("[+] Building") <= seconds * 10 + 2

    again = screen(build_on_pty(h, "--progress", "tty", "-t", "p:1", str(_ctx(tmp_path, STEPS)))[2])
    assert again[2].startswith(" => CACHED [2/3] RUN for i in") and again[3].startswith(" => CACHED [3/3]")
    # Nothing changed since: the build memo answers (its file is left as it was), on the same display.
    memos = sorted((h.root / "cache" / "build" / "memo").glob("*.json"))
    recorded = [m.read_bytes() for m in memos]
    memo = screen(build_on_pty(h, "--progress", "tty", "-t", "p:1", str(tmp_path / "ctx"))[2])
    assert sorted((h.root / "cache" / "build" / "memo").glob("*.json")) == memos
    assert [m.read_bytes() for m in memos] == recorded and len(memos) == 1

    def timeless(lines: list[str]) -> list[str]:
        return [re.sub(r"\d+\.\ds", "", line) for line in lines]

    assert timeless(memo) == timeless(again)


def test_tty_display_of_a_failing_step(h: Hoist, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nRUN echo before-the-end; exit 3\n")
    code, _, term, _ = build_on_pty(h, "--progress", "tty", str(ctx))
    final = screen(term)
    assert code == 1
    assert final[0].startswith("[+] Building ") and "FINISHED" not in final[0]
    assert final[2].startswith(" => ERROR [2/2] RUN echo before-the-end; exit 3")
    assert final[3:] == ["  > before-the-end",
                         f'{ctx}/Dockerfile:2: process "/bin/sh -c echo before-the-end; exit 3" '
                         "did not complete successfully: exit code: 3"]


def test_auto_is_tty_on_a_terminal_and_plain_elsewhere(h: Hoist, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nRUN echo hello\n")
    _, _, term, _ = build_on_pty(h, "--no-cache", str(ctx))                 # --progress auto
    assert screen(term)[0].endswith("(2/2) FINISHED") and "#1 " not in term
    piped = h("build", "--no-cache", str(ctx))
    assert "[+] Building" not in piped.err and "\x1b[" not in piped.err
    assert re.search(r"^#2 \[2/2\] RUN echo hello$", piped.err, re.M)
    assert re.search(r"^#2 \d+\.\d+ hello$", piped.err, re.M) and re.search(r"^#2 DONE \d+\.\d+s$", piped.err, re.M)
    dumb = dict(h.env)
    h.env["TERM"] = "dumb"
    try:
        master, slave = pty.openpty()
        proc = subprocess.run([sys.executable, "-m", "hoist.cli", "build", "--no-cache", str(ctx)], env=h.env,
                              cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                              timeout=120)
        os.close(slave)
        received = b""
        while select.select([master], [], [], 0)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            received += chunk
        os.close(master)
        assert proc.returncode == 0 and b"#2 DONE" in received and b"\x1b[" not in received
    finally:
        h.env = dumb
