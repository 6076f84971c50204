"""runtime.health's state machine driven by real probe processes (run on the host here: the
in-container exec is not wired into the monitor yet)."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runtime import health
from runtime.health import SECOND, HealthConfig, HealthConfigError, Prober

MS = SECOND // 1000


def host_probe(argv: list[str], timeout: float) -> health.ProbeResult:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return -1, health.timeout_output(timeout)
    return proc.returncode, out


class Recorder:
    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, doc: dict[str, Any]) -> None:
        with self.lock:
            self.docs.append(doc)

    def wait_for(self, pred: Any, deadline: float = 30.0) -> dict[str, Any]:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with self.lock:
                for doc in self.docs:
                    if pred(doc):
                        return doc
            time.sleep(0.02)
        raise AssertionError(f"no health doc matched; last: {self.docs[-1:]}")


def run(config: HealthConfig, pred: Any) -> dict[str, Any]:
    rec = Recorder()
    prober = Prober(config, host_probe, rec)
    prober.start()
    try:
        assert rec.docs[0] == {"Status": "starting", "FailingStreak": 0, "Log": []}
        return rec.wait_for(pred)
    finally:
        prober.stop()


def test_passing_probe_makes_healthy() -> None:
    doc = run(HealthConfig(["CMD-SHELL", "echo ok"], interval=20 * MS), lambda d: d["Log"])
    assert doc["Status"] == "healthy" and doc["FailingStreak"] == 0
    entry = doc["Log"][0]
    assert entry["ExitCode"] == 0 and entry["Output"] == "ok\n"
    assert entry["Start"] <= entry["End"]


def test_unhealthy_after_retries_failures() -> None:
    cfg = HealthConfig(["CMD", "false"], interval=20 * MS, retries=2)
    doc = run(cfg, lambda d: d["FailingStreak"] == 1)
    assert doc["Status"] == "starting"
    doc = run(cfg, lambda d: d["FailingStreak"] == 2)
    assert doc["Status"] == "unhealthy"


def test_timeout_kills_probe(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    cfg = HealthConfig(["CMD-SHELL", f"sleep 5; touch {marker}"], interval=20 * MS,
                       timeout=100 * MS, retries=1)
    doc = run(cfg, lambda d: d["Status"] == "unhealthy")
    assert doc["Log"][-1]["ExitCode"] == -1
    assert "exceeded timeout" in doc["Log"][-1]["Output"]
    time.sleep(6)
    assert not marker.exists()


def test_start_period_failures_do_not_count(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    cfg = HealthConfig(["CMD-SHELL", f"test -e {flag}"], interval=20 * MS, retries=1,
                       start_period=3600 * SECOND, start_interval=20 * MS)
    rec = Recorder()
    prober = Prober(cfg, host_probe, rec)
    prober.start()
    try:
        doc = rec.wait_for(lambda d: len(d["Log"]) >= 3)
        assert doc["Status"] == "starting" and doc["FailingStreak"] == 0
        flag.touch()
        rec.wait_for(lambda d: d["Status"] == "healthy")
        flag.unlink()
        doc = rec.wait_for(lambda d: d["Status"] == "unhealthy")   # counts once healthy
        assert doc["FailingStreak"] == 1
    finally:
        prober.stop()


def test_log_keeps_five_and_truncates_output() -> None:
    cfg = HealthConfig(["CMD-SHELL", "head -c 10000 /dev/zero | tr '\\0' x"], interval=10 * MS)
    doc = run(cfg, lambda d: len(d["Log"]) == 5 and d is not None)
    assert all(len(e["Output"]) == 4096 for e in doc["Log"])
    h: dict[str, Any] = doc
    for _ in range(3):
        h = health.fold(h, cfg, 0, 0, "s", "e", 0, b"x")
    assert len(h["Log"]) == 5 and h["Log"][-1]["Output"] == "x"


def test_from_docker() -> None:
    assert HealthConfig.from_docker(None) is None
    assert HealthConfig.from_docker({"Test": ["NONE"]}) is None
    cfg = HealthConfig.from_docker({"Test": ["CMD-SHELL", "curl -f x || exit 1"],
                                    "Interval": 5 * SECOND, "Retries": 4})
    assert cfg is not None and cfg.argv() == ["/bin/sh", "-c", "curl -f x || exit 1"]
    assert cfg.to_docker() == {"Test": ["CMD-SHELL", "curl -f x || exit 1"],
                               "Interval": 5 * SECOND, "Retries": 4}
    cmd = HealthConfig.from_docker({"Test": ["CMD", "/bin/check", "-q"]})
    assert cmd is not None and cmd.argv() == ["/bin/check", "-q"]
    with pytest.raises(HealthConfigError):
        HealthConfig.from_docker({"Test": ["BOGUS", "x"]})
    with pytest.raises(HealthConfigError):
        HealthConfig.from_docker({"Test": ["CMD", "x"], "Interval": -1})
