"""runtime.health's parts on their own: the state machine and schedule driven by real probe
processes on the host, the CLI flags, the merge over the image's HEALTHCHECK and the daemon's
checks (docker's messages), Go's duration and time printing. Probes inside real containers, through
the monitor, are tests/cli/test_health.py."""
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
        return -1, health.timeout_output(int(timeout * SECOND)).encode()
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
    cfg = HealthConfig(["CMD-SHELL", f"sleep 1; touch {marker}"], interval=20 * MS,
                       timeout=100 * MS, retries=1)
    doc = run(cfg, lambda d: d["Status"] == "unhealthy")
    assert doc["Log"][-1]["ExitCode"] == -1
    assert "exceeded timeout" in doc["Log"][-1]["Output"]
    time.sleep(1.5)
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
    assert all(len(e["Output"]) == 4096 + 3 and e["Output"].endswith("x...") for e in doc["Log"])
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
    assert HealthConfig.from_docker({"Test": ["BOGUS", "x"]}) is None   # moby: a warning, no probe
    assert HealthConfig.from_docker({"Interval": SECOND}) is None          # no Test: nothing to run
    assert cmd.argv(["/bin/bash", "-ec"]) == ["/bin/check", "-q"]
    shell = HealthConfig.from_docker({"Test": ["CMD-SHELL", "a", "b"]})
    assert shell is not None and shell.argv(["/bin/bash", "-ec"]) == ["/bin/bash", "-ec", "a", "b"]
    with pytest.raises(HealthConfigError):
        HealthConfig.from_docker({"Test": ["CMD", "x"], "Interval": -1})


def test_timeout_message_is_dockers() -> None:
    assert health.timeout_output(100 * MS) == "Health check exceeded timeout (100ms)"
    assert health.timeout_output(90 * SECOND, "partial\n") == "Health check exceeded timeout (1m30s): partial\n"


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0s"), (1, "1ns"), (1100, "1.1\u00b5s"), (2_200_000, "2.2ms"), (100 * MS, "100ms"),
    (SECOND, "1s"), (1_500_000_000, "1.5s"), (90 * SECOND, "1m30s"), (3600 * SECOND, "1h0m0s"),
    (3_723_000_000_001, "1h2m3.000000001s"), (-5 * SECOND, "-5s"),
])
def test_format_duration_is_go_duration_string(ns: int, text: str) -> None:
    from storage.duration import format_duration, parse_duration

    assert format_duration(ns) == text
    assert parse_duration(text) == ns


def test_go_time_is_rfc3339_nano() -> None:
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)",
                        health.go_time()), health.go_time()
    assert health.go_time(1_700_000_000_120_000_000).startswith(
        time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(1_700_000_000)) + ".12")


def test_flags_as_the_docker_cli_parses_them() -> None:
    assert health.from_flags() is None
    assert health.from_flags(cmd="curl -f x") == {"Test": ["CMD-SHELL", "curl -f x"]}
    assert health.from_flags(interval="1.5s", retries="4", timeout="200ms", start_period="1m",
                             start_interval="0.5s") == {
        "Interval": 1_500_000_000, "Timeout": 200 * MS, "StartPeriod": 60 * SECOND,
        "StartInterval": 500 * MS, "Retries": 4}
    assert health.from_flags(no_healthcheck=True) == {"Test": ["NONE"]}
    for kwargs, message in [
        ({"no_healthcheck": True, "cmd": "x"}, "--no-healthcheck conflicts with --health-* options"),
        ({"no_healthcheck": True, "interval": "1s"}, "--no-healthcheck conflicts with --health-* options"),
        ({"interval": "-1s"}, "--health-interval cannot be negative"),
        ({"timeout": "-1s"}, "--health-timeout cannot be negative"),
        ({"retries": "-1"}, "--health-retries cannot be negative"),
        ({"start_period": "-1s"}, "--health-start-period cannot be negative"),
        ({"start_interval": "-2ms"}, "--health-start-interval cannot be negative"),
        ({"interval": "soon"}, 'invalid argument "soon" for "--health-interval" flag: '
                               "time: invalid duration 'soon'"),
        ({"timeout": "5"}, 'invalid argument "5" for "--health-timeout" flag: '
                           "time: missing unit in duration '5'"),
        ({"retries": "x"}, 'invalid argument "x" for "--health-retries" flag: '
                           'strconv.ParseInt: parsing "x": invalid syntax'),
        ({"retries": " 3"}, 'invalid argument " 3" for "--health-retries" flag'),
    ]:
        with pytest.raises(HealthConfigError) as e:
            health.from_flags(**kwargs)
        assert str(e.value).startswith(message), (kwargs, str(e.value))


def test_merge_over_the_image_field_by_field_and_checks() -> None:
    image = {"Test": ["CMD-SHELL", "pg_isready"], "Interval": 5 * SECOND, "Timeout": 2 * SECOND,
             "Retries": 7, "StartPeriod": 10 * SECOND}
    assert health.merge(None, image) == image
    assert health.merge(None, None) is None
    assert health.merge({"Interval": SECOND}, None) == {"Interval": SECOND}   # no Test: no probe
    assert health.merge({"Interval": SECOND, "Retries": 2}, image) == {**image, "Interval": SECOND, "Retries": 2}
    assert health.merge({"Test": ["CMD", "true"]}, image) == {**image, "Test": ["CMD", "true"]}
    assert health.merge({"Test": ["NONE"]}, image) == {**image, "Test": ["NONE"]}
    assert HealthConfig.from_docker(health.merge({"Test": ["NONE"]}, image)) is None
    health.validate({"Test": ["CMD", "x"], "Interval": MS, "Timeout": MS})
    for doc, message in [
        ({"Interval": MS - 1}, "Interval in Healthcheck cannot be less than 1ms"),
        ({"Timeout": 1}, "Timeout in Healthcheck cannot be less than 1ms"),
        ({"StartPeriod": 999}, "StartPeriod in Healthcheck cannot be less than 1ms"),
        ({"StartInterval": 5}, "StartInterval in Healthcheck cannot be less than 1ms"),
        ({"Retries": -1}, "Retries in Healthcheck cannot be negative"),
        ({"Interval": -5}, "Interval in Healthcheck cannot be less than 1ms"),
    ]:
        with pytest.raises(HealthConfigError, match=message):
            health.validate(doc)


def test_schedule_is_mobys() -> None:
    """The start interval while starting inside the start period, else the interval; defaults
    30s and 5s."""
    def interval(cfg: HealthConfig, status: str, age: float) -> float:
        prober = Prober(cfg, host_probe, lambda d: None, started_at=time.time() - age,
                        health={"Status": status, "FailingStreak": 0, "Log": []})
        return prober.interval()

    cfg = HealthConfig(["CMD", "x"], start_period=10 * SECOND)
    assert interval(cfg, "starting", 0) == 5.0
    assert interval(cfg, "healthy", 0) == 30.0
    assert interval(cfg, "starting", 11) == 30.0
    cfg = HealthConfig(["CMD", "x"], interval=SECOND, start_interval=100 * MS, start_period=10 * SECOND)
    assert interval(cfg, "starting", 1) == 0.1 and interval(cfg, "unhealthy", 1) == 1.0
    assert interval(HealthConfig(["CMD", "x"], start_interval=100 * MS), "starting", 0) == 30.0
