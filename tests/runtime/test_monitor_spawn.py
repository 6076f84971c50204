"""How a multi-threaded caller (the builder) starts container monitors: re-executed Python, or a
monitor started ahead (``WarmMonitor``), and that the caller, not subprocess, reaps them."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from runtime.lifecycle import RunOptions, Runtime, WarmMonitor
from tests.runtime.conftest import Hoist

T = TypeVar("T")


def _in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` from a second thread: the caller has threads, so monitors are not forked (and a
    monitor's parent-death signal follows that thread, which lives until ``fn`` returns)."""
    box: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if errors:
        raise errors[0]
    return box[0]


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb", buffering=0) as f:
        return f.read()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return False


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _create(hoist: Hoist, *argv: str):
    return Runtime(hoist.root).create(RunOptions(image="busybox", args=list(argv)))


def test_exited_monitor_is_the_callers_to_reap(hoist: Hoist) -> None:
    """A monitor started by re-executing Python must not be reaped by the next Popen anywhere in
    the process (subprocess polls the Popen objects it was left): waitpid must still see it."""
    runtime = Runtime(hoist.root)
    container = _create(hoist, "sh", "-c", "exit 7")

    def start_then_popen() -> int:
        r, w = os.pipe()
        pid = runtime.start_captured(container, w)
        os.close(w)
        _read_all(r)
        deadline = time.monotonic() + 10
        while not _zombie(pid):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        subprocess.run(["true"], check=True)     # polls what subprocess keeps: not this monitor
        return runtime.wait(pid)

    assert _in_thread(start_then_popen) == 7


def test_warm_monitor_runs_its_container(hoist: Hoist) -> None:
    runtime = Runtime(hoist.root)
    container = _create(hoist, "sh", "-c", "echo out; echo err >&2; exit 3")
    before = _open_fds()

    def run() -> tuple[int, bytes]:
        warm = WarmMonitor()
        time.sleep(0.2)          # it waits for its container, whenever that comes
        pid = warm.start(container)
        assert pid == warm.pid
        output = _read_all(warm.output)
        warm.discard()           # after start: nothing (the caller owns the output and the pid)
        return runtime.wait(pid), output

    code, output = _in_thread(run)
    assert code == 3
    assert sorted(output.split()) == [b"err", b"out"]
    status, state = container.status()
    assert status == "exited" and state["exit_code"] == 3
    assert _open_fds() == before


def test_unused_warm_monitor_is_discarded(hoist: Hoist) -> None:
    before = _open_fds()

    def discard() -> int:
        warm = WarmMonitor()
        warm.discard()
        warm.discard()           # twice: harmless
        return warm.pid

    pid = _in_thread(discard)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)      # already reaped: no zombie, no orphan
    assert _open_fds() == before


def test_dead_warm_monitor_is_not_used(hoist: Hoist) -> None:
    """A warm monitor that died before its container came: start says so (None) and closes its
    pipes; the container is untouched, to be started another way."""
    container = _create(hoist, "true")
    before = _open_fds()

    def start_dead() -> int | None:
        warm = WarmMonitor()
        os.kill(warm.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not _zombie(warm.pid):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return warm.start(container)

    assert _in_thread(start_dead) is None
    assert _open_fds() == before
    assert container.status()[0] == "created"
