"""Service keys carried into the runtime: ``restart`` (docker's policy: a killed process comes
back), ``cap_add``/``cap_drop``, ``read_only`` and ``tmpfs``."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import Hoist
from tests.images import busybox_image
from tests.runtime.conftest import need_root_and_busybox

COMPOSE = """\
name: opts
services:
  svc:
    image: busybox:latest
    network_mode: none
    restart: always
    cap_drop: [NET_RAW]
    cap_add: [SYS_PTRACE]
    read_only: true
    tmpfs: [/scratch]
    command: ["sh", "-c", "touch /scratch/ok && grep CapEff /proc/self/status && exec sleep 300"]
"""


@pytest.fixture
def hoist(tmp_path: Path) -> Iterator[Hoist]:
    need_root_and_busybox()
    h = Hoist(tmp_path)
    busybox_image(h.layout())
    try:
        yield h
    finally:
        from runtime.lifecycle import Runtime

        runtime = Runtime(h.root)
        for c in runtime.containers.all():
            runtime.remove(c, force=True)


def test_restart_caps_read_only_and_tmpfs_reach_the_container(hoist: Hoist, tmp_path: Path) -> None:
    from runtime.containers import ContainerStore

    project = tmp_path / "opts"
    project.mkdir()
    (project / "compose.yaml").write_text(COMPOSE)
    res = hoist("compose", "-f", str(project / "compose.yaml"), "up", "-d", subprocess=True, timeout=120)
    assert "not supported" not in res.err, res.err
    container = ContainerStore(hoist.root / "containers").get("opts-svc-1")
    spec = container.spec
    assert spec.restart == {"Name": "always", "MaximumRetryCount": 0}
    assert spec.read_only
    assert "CAP_NET_RAW" not in spec.caps and "CAP_SYS_PTRACE" in spec.caps
    # the kernel's answer: the command ran on its tmpfs under the read-only root
    assert hoist("exec", "opts-svc-1", "ls", "/scratch/ok").out.strip() == "/scratch/ok"
    assert hoist("exec", "opts-svc-1", "touch", "/nope", ok=False).code != 0
    # restart: always — a killed main process comes back (RestartCount 1)
    pid = container.init_pid()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        status, state = container.status()
        if status == "running" and int(state.get("restart_count") or 0) >= 1 and container.init_pid() != pid:
            break
        assert time.monotonic() < deadline, (status, state)
        time.sleep(0.1)
    hoist("compose", "-f", str(project / "compose.yaml"), "down", subprocess=True, timeout=120)
