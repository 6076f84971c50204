"""TTYs under a real pty: ``run -it``, ``run -t``, ``exec -it``, ``attach`` and docker's detach
keys. The test is the terminal: it holds the master of a pty whose slave is the hoist CLI's
controlling terminal, types into it, resizes it and reads what comes back."""

from __future__ import annotations

import fcntl
import os
import re
import select
import shlex
import struct
import sys
import termios
import time

import pytest

from tests.runtime.conftest import REPO, Hoist

HOIST = f"{shlex.quote(sys.executable)} -m hoist.cli"


class Terminal:
    """A command on a new pty (its controlling terminal), 33 rows by 111 columns."""

    def __init__(self, hoist: Hoist, script: str, rows: int = 33, cols: int = 111) -> None:
        env = dict(hoist.env(), TERM="xterm")
        pid, fd = os.forkpty()
        if pid == 0:
            try:
                os.chdir(REPO)
                os.execve("/bin/sh", ["/bin/sh", "-c", script], env)
            finally:
                os._exit(127)
        self.pid, self.fd, self.out = pid, fd, b""
        self.resize(rows, cols)
        self.status: int | None = None

    def resize(self, rows: int, cols: int) -> None:
        # the kernel sends SIGWINCH to the terminal's foreground process group: the CLI
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def _read(self, timeout: float) -> bool:
        if not select.select([self.fd], [], [], timeout)[0]:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:   # EIO: every process on the terminal is gone
            return False
        self.out += data
        return bool(data)

    def expect(self, pattern: str, timeout: float = 30.0, since: int = 0) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern.encode())
        while True:
            m = regex.search(self.out, since)
            if m:
                return m
            assert time.monotonic() < deadline, f"no {pattern!r} in {self.out!r}"
            if not self._read(0.1):
                m = regex.search(self.out, since)
                assert m, f"no {pattern!r} before the end: {self.out!r}"
                return m

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.1):
            assert time.monotonic() < deadline, f"still running: {self.out!r}"
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    def read_for(self, timeout: float) -> None:
        self._read(timeout)

    def text(self) -> str:
        return self.out.decode(errors="replace")


def test_run_it_gets_a_pty_of_its_own_devpts_and_the_terminal_is_restored(hoist: Hoist) -> None:
    term = Terminal(hoist, f"stty -g; {HOIST} run -it --rm busybox sh -c 'tty; stty size; test -t 0 && echo STDIN-TTY'; "
                           f"echo rc=$?; stty -g")
    assert term.wait() == 0
    text = term.text()
    assert re.search(r"^/dev/pts/\d+\r$", text, re.M), text
    assert "33 111" in text and "STDIN-TTY" in text and "rc=0" in text
    before, after = (line for line in text.splitlines() if re.fullmatch(r"[0-9a-f:]+", line.strip()))
    assert before == after                                   # raw mode undone


def test_terminal_is_restored_when_the_command_cannot_start(hoist: Hoist) -> None:
    term = Terminal(hoist, f"stty -g; {HOIST} run -it --rm busybox no-such-command; echo rc=$?; stty -g")
    assert term.wait() == 0
    text = term.text()
    assert "rc=127" in text and "executable file not found" in text
    before, after = (line for line in text.splitlines() if re.fullmatch(r"[0-9a-f:]+", line.strip()))
    assert before == after


def test_resize_reaches_the_container(hoist: Hoist) -> None:
    term = Terminal(hoist, f"{HOIST} run -it --rm busybox sh")
    term.expect(r"/ # ")
    term.write(b"stty size\r")
    term.expect(r"\r\n33 111\r\n")
    mark = len(term.out)
    term.resize(50, 132)
    # the resize and the typing travel apart (SIGWINCH, stdin): ask until the new size shows
    deadline = time.monotonic() + 30
    while not re.search(rb"\r\n50 132\r\n", term.out[mark:]):
        assert time.monotonic() < deadline, term.text()
        term.write(b"stty size\r")
        term.read_for(0.2)
    term.write(b"exit 3\r")
    assert term.wait() == 3


def test_run_t_without_i_has_a_tty_but_no_input(hoist: Hoist) -> None:
    res = hoist("run", "-t", "--rm", "busybox", "sh", "-c", "tty; test -t 1 && echo OUT-TTY")
    assert res.returncode == 0
    assert re.search(rb"^/dev/pts/\d+\r\nOUT-TTY\r\n$", res.stdout), res.stdout
    # as docker's: run --rm returns once the container is gone (looked at at once, not by ps)
    containers = hoist.root / "containers"
    assert not containers.is_dir() or not [p for p in containers.iterdir() if not p.name.startswith(".")]


def test_exec_it(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--name", "box", "busybox", "sleep", "600")
    term = Terminal(hoist, f"stty -g; {HOIST} exec -it box sh -c 'tty; stty size; exit 9'; echo rc=$?; stty -g",
                    rows=40, cols=100)
    assert term.wait() == 0
    text = term.text()
    assert re.search(r"^/dev/pts/\d+\r$", text, re.M) and "40 100" in text and "rc=9" in text, text
    before, after = (line for line in text.splitlines() if re.fullmatch(r"[0-9a-f:]+", line.strip()))
    assert before == after
    # and an interactive shell, resized while it runs
    term = Terminal(hoist, f"{HOIST} exec -it box sh")
    term.expect(r"/ # ")
    term.write(b"stty size\r")
    term.expect(r"\r\n33 111\r\n")
    term.resize(20, 70)
    deadline = time.monotonic() + 30
    while b"20 70" not in term.out:
        assert time.monotonic() < deadline, term.text()
        term.write(b"stty size\r")
        term.read_for(0.2)
    term.write(b"exit\r")
    assert term.wait() == 0


def test_detach_and_attach_round_trip(hoist: Hoist) -> None:
    hoist.ok("run", "-dit", "--name", "shell", "busybox", "sh")
    term = Terminal(hoist, f"{HOIST} attach shell")
    term.write(b"echo one-$((1+1))\r")
    term.expect(r"one-2")
    term.write(b"\x10\x11")                                   # ctrl-p ctrl-q
    assert term.wait() == 1
    assert "read escape sequence" in term.text()
    assert hoist.ok("inspect", "-f", "{{.State.Status}} {{.Config.Tty}} {{.Config.OpenStdin}}",
                    "shell").strip() == "running true true"
    # a ctrl-p that is not followed by ctrl-q is passed on; then the shell ends, and attach with it
    term = Terminal(hoist, f"{HOIST} attach shell")
    term.write(b"echo again\r")
    term.expect(r"again\r\n")
    term.write(b"\x10x")
    term.write(b"\x15exit 5\r")                               # ctrl-u clears the line first
    assert term.wait() == 5
    assert hoist.ok("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "shell").strip() == "exited 5"
    assert "one-2" in hoist.ok("logs", "shell")               # the console is logged too


def test_start_ai_attaches_a_tty_container(hoist: Hoist) -> None:
    hoist.ok("run", "-dit", "--name", "again", "busybox", "sh")
    hoist.ok("stop", "-t", "1", "again")
    term = Terminal(hoist, f"{HOIST} start -ai again")
    term.expect(r"/ # ")
    term.write(b"tty; exit 4\r")
    term.expect(r"/dev/pts/\d+")
    assert term.wait() == 4


def test_attach_needs_a_running_container(hoist: Hoist) -> None:
    # (attach to one without a TTY follows its output: tests/cli/test_run_attach.py)
    hoist.ok("run", "-d", "--name", "plain", "busybox", "sleep", "600")
    hoist.ok("stop", "-t", "0", "plain")
    res = hoist("attach", "plain")
    assert res.returncode == 1 and "is not running" in res.stderr.decode()
    res = hoist("attach", "nosuch")
    assert res.returncode == 1 and "no such container" in res.stderr.decode()


@pytest.mark.parametrize("keys", [b"\x10\x11"])
def test_detach_scanner(keys: bytes) -> None:
    from runtime.tty import Detached, DetachScanner

    s = DetachScanner(keys)
    assert s.feed(b"ab\x10") == b"ab"          # held: it may begin the sequence
    assert s.feed(b"c") == b"\x10c"            # it did not
    assert s.feed(b"\x10\x10") == b"\x10"      # a second ctrl-p restarts the sequence
    with pytest.raises(Detached):
        s.feed(b"\x11")
    s = DetachScanner(keys)
    with pytest.raises(Detached):
        s.feed(b"x\x10\x11y")


def test_detach_keys_option(hoist: Hoist) -> None:
    from runtime.tty import parse_detach_keys

    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,d") == b"\x01d" and parse_detach_keys("ctrl-@,ctrl-_") == b"\x00\x1f"
    for bad in ("ctrl-1", "ab", "ctrl-a,,x"):
        with pytest.raises(ValueError, match="Invalid detach keys"):
            parse_detach_keys(bad)
    hoist.ok("run", "-dit", "--name", "keys", "busybox", "sh")
    term = Terminal(hoist, f"{HOIST} attach --detach-keys ctrl-a,d keys")
    term.write(b"echo x\x10\x11y\r")                 # the default keys are just input now
    term.expect(r"x\x10\x11y|xy")
    term.write(b"\x01d")
    assert term.wait() == 1 and "read escape sequence" in term.text()
    res = hoist("attach", "--detach-keys", "ctrl-1", "keys")
    assert res.returncode == 1 and "Unknown sequence: 'ctrl-1'" in res.stderr.decode()
    res = hoist("run", "--rm", "-it", "--detach-keys", "zz", "busybox", "true")
    assert res.returncode == 125 and "Invalid detach keys" in res.stderr.decode()
