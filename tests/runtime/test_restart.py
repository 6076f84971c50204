"""Restart policies (runtime/restart.py and the monitor's loop), docker's semantics: the
decision table and back-off schedule on their own, then real containers that crash, are
killed, are stopped by the user and live through a simulated reboot."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path

import pytest

from runtime.errors import SetupError
from runtime.restart import MAX_DELAY, RestartManager, RestartPolicy, restart_at_boot
from tests.runtime.conftest import Hoist

# -- the policy and the manager, without containers -------------------------------------------

@pytest.mark.parametrize(("text", "name", "count"), [
    ("no", "no", 0), ("always", "always", 0), ("unless-stopped", "unless-stopped", 0),
    ("on-failure", "on-failure", 0), ("on-failure:5", "on-failure", 5), ("on-failure:0", "on-failure", 0),
])
def test_policy_parse(text: str, name: str, count: int) -> None:
    policy = RestartPolicy.parse(text)
    assert (policy.name, policy.maximum_retry_count) == (name, count)
    assert policy.to_json() == {"Name": name, "MaximumRetryCount": count}


@pytest.mark.parametrize(("text", "message"), [
    ("on-failure:x", "maximum retry count must be an integer"),
    ("on-failure:-1", "maximum retry count cannot be negative"),
    ("always:3", "maximum retry count can only be used with 'on-failure'"),
    ("unless-stopped:-2", "can only be used with 'on-failure' and cannot be negative"),
    (":3", "no policy provided before colon"),
    ("sometimes", "unknown policy 'sometimes'"),
    ("", "unknown policy ''"),
])
def test_policy_bad_input(text: str, message: str) -> None:
    with pytest.raises(SetupError, match=message):
        RestartPolicy.parse(text)


def test_backoff_doubles_from_100ms_caps_at_a_minute_and_resets_after_10s_up() -> None:
    manager = RestartManager(RestartPolicy("always"))
    delays = [manager.should_restart(1, False, 0.5)[1] for _ in range(12)]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert delays[-1] == MAX_DELAY and all(a <= b for a, b in itertools.pairwise(delays))
    assert manager.restart_count == 12
    assert manager.should_restart(1, False, 10.0) == (True, 0.1)   # a run that stayed up 10 s
    assert manager.should_restart(0, False, 0.1) == (True, 0.2)


def test_decisions() -> None:
    on_failure = RestartManager(RestartPolicy("on-failure", 2))
    assert on_failure.should_restart(0, False, 1)[0] is False          # success is not a failure
    assert on_failure.should_restart(1, False, 1)[0] is True
    assert on_failure.should_restart(137, False, 1)[0] is True
    assert on_failure.should_restart(1, False, 1)[0] is False          # two retries used
    assert on_failure.restart_count == 2
    for name in ("always", "unless-stopped", "on-failure"):
        assert RestartManager(RestartPolicy(name)).should_restart(1, True, 1) == (False, 0.0)  # stop
    assert RestartManager(RestartPolicy("no")).should_restart(1, False, 1)[0] is False


def test_what_comes_back_at_boot() -> None:
    always, unless = RestartPolicy("always"), RestartPolicy("unless-stopped")
    assert restart_at_boot(always, {"manually_stopped": True}, 0)
    assert restart_at_boot(unless, {}, 255)
    assert not restart_at_boot(unless, {"manually_stopped": True}, 0)
    assert restart_at_boot(RestartPolicy("on-failure", 3), {"restart_count": 2}, 255)
    assert not restart_at_boot(RestartPolicy("on-failure", 3), {"restart_count": 3}, 255)
    assert not restart_at_boot(RestartPolicy("on-failure"), {}, 0)
    assert not restart_at_boot(RestartPolicy("no"), {}, 255)


# -- real containers --------------------------------------------------------------------------

def _container(hoist: Hoist, name: str):
    from runtime.lifecycle import Runtime
    rt = Runtime(hoist.root)
    return rt, rt.containers.get(name)


def _until(predicate, what: str, timeout: float = 60.0):
    """Poll for a state change (a bound against hangs, not an assertion on time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _inspect(hoist: Hoist, name: str, fmt: str) -> str:
    return hoist.ok("inspect", "-f", fmt, name).strip()


def test_kill_9_of_the_command_restarts_an_always_container(hoist: Hoist, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    hoist.ok("run", "-d", "--name", "svc", "--restart=always", "-v", f"{data}:/data", "busybox",
             "sh", "-c", "echo started >> /data/runs; exec sleep 600")
    rt, c = _container(hoist, "svc")
    first = _until(lambda: c.init_pid(), "the first run")
    os.kill(first, signal.SIGKILL)
    second = _until(lambda: c.init_pid() not in (0, first) and c.init_pid(), "the restart")
    assert second != first
    assert _inspect(hoist, "svc", "{{.RestartCount}} {{.State.Status}} {{.State.Running}}") == "1 running true"
    _until(lambda: (data / "runs").read_text().count("started") == 2, "the second run's mark")
    # the same container: its upper dir (a file the first run made) survives the restart
    hoist.ok("exec", "svc", "sh", "-c", "test -f /data/runs")
    hoist.ok("stop", "-t", "5", "svc")
    status, state = c.status()
    assert status == "exited" and state["manually_stopped"] is True
    assert not c.monitor_alive()                  # nothing is left that could restart it
    assert _inspect(hoist, "svc", "{{.RestartCount}}") == "1"


def test_on_failure_2_stops_after_two_restarts(hoist: Hoist, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    hoist.ok("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "-v", f"{data}:/data", "busybox",
             "sh", "-c", "echo run >> /data/runs; exit 3")
    rt, c = _container(hoist, "flaky")
    assert rt.wait_exit(c, 60)
    status, state = c.status()
    assert status == "exited" and state["exit_code"] == 3 and state["restart_count"] == 2
    assert (data / "runs").read_text().split() == ["run"] * 3
    assert _inspect(hoist, "flaky", "{{.RestartCount}} {{.State.ExitCode}} {{.HostConfig.RestartPolicy.Name}}:"
                                    "{{.HostConfig.RestartPolicy.MaximumRetryCount}}") == "2 3 on-failure:2"


def test_on_failure_does_not_restart_a_success(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--name", "fine", "--restart", "on-failure", "busybox", "true")
    rt, c = _container(hoist, "fine")
    assert rt.wait_exit(c, 60)
    assert c.status()[1].get("restart_count", 0) == 0
    assert _inspect(hoist, "fine", "{{.RestartCount}} {{.State.ExitCode}}") == "0 0"


def test_crash_loop_is_backed_off_not_spun(hoist: Hoist, tmp_path: Path) -> None:
    """Each start is recorded by the container itself (/proc/uptime, 10 ms resolution): the gaps
    are at least docker's back-off, 100 ms doubling (a spinning monitor would make them ~0)."""
    data = tmp_path / "data"
    data.mkdir()
    hoist.ok("run", "-d", "--name", "crashy", "--restart", "always", "-v", f"{data}:/data", "busybox",
             "sh", "-c", "cut -d' ' -f1 /proc/uptime >> /data/starts; exit 1")
    rt, c = _container(hoist, "crashy")
    starts_file = data / "starts"
    _until(lambda: starts_file.exists() and len(starts_file.read_text().split()) >= 6, "six starts")
    hoist.ok("stop", "crashy")
    starts = [float(x) for x in starts_file.read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    for i, gap in enumerate(gaps[:5]):
        assert gap >= 0.1 * 2 ** i - 0.011, (i, gaps)
    state = c.status()[1]
    # docker counts a restart when it is decided: the stop may land in the back-off (or before
    # the next run writes its mark), which counts one the file does not show
    assert len(starts) - 1 <= state["restart_count"] <= len(starts)
    assert not c.monitor_alive()


def _states(c, until):
    """Every state.json the container shows, read as fast as it can be, until ``until(state)``."""
    path = c.path / "state.json"
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            state = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            continue
        seen.append(state)
        if until(state):
            return seen
    raise AssertionError(f"timed out; last state {seen[-1] if seen else None}")


def test_a_crash_loop_never_shows_exited_between_two_runs(hoist: Hoist) -> None:
    """The monitor writes a run's exit and its restart decision in one write: a reader (``stop``,
    ``start``, ``rm``, ``ps``) never sees "exited" between two runs. (With two writes a stop
    that read "exited" there did nothing and left the loop going, the CI flake of
    test_crash_loop_is_backed_off_not_spun; a start spawned a second monitor.)"""
    hoist.ok("run", "-d", "--name", "loop", "--restart", "always", "busybox", "sh", "-c", "exit 1")
    rt, c = _container(hoist, "loop")
    seen = _states(c, lambda state: (state.get("restart_count") or 0) >= 5)
    assert "restarting" in {s.get("status") for s in seen}     # the loop was watched going round
    assert [s for s in seen if s.get("status") == "exited"] == []
    hoist.ok("stop", "loop")
    assert not c.monitor_alive() and c.status()[0] == "exited"


def test_start_and_rm_wait_for_a_monitor_that_is_still_finishing(hoist: Hoist) -> None:
    """After its last exit is written a monitor still removes the cgroups (and the network): a
    ``start`` then waits for it rather than running a second monitor beside it (whose cgroups the
    first would remove), and so does ``rm``. That moment lasts about a millisecond, too short to
    catch reliably, so the state is made to name a live process of this test as its monitor."""
    import subprocess

    from runtime.containers import boot_id, process_start_time

    hoist.ok("run", "-d", "--name", "fin", "--network", "none", "busybox", "true")
    rt, c = _container(hoist, "fin")
    assert rt.wait_exit(c, 30)
    for verb in ("start", "rm"):
        finishing = subprocess.Popen(["sleep", "1"])
        c.update_state(monitor_pid=finishing.pid, monitor_start=process_start_time(finishing.pid),
                       monitor_boot=boot_id())
        assert c.status()[0] == "exited" and c.monitor_alive()
        res = hoist(verb, "fin", subprocess=True)
        assert res.returncode == 0, res
        assert finishing.poll() is not None      # it returned only once that "monitor" had ended
        if verb == "start":
            assert rt.wait_exit(c, 30) and c.state()["monitor_pid"] != finishing.pid
    assert hoist.ok("ps", "-a", "-q") == ""


def test_stop_during_the_back_off_ends_it(hoist: Hoist) -> None:
    # on-failure without a limit and a command that fails at once: most of the time is back-off
    hoist.ok("run", "-d", "--name", "loop", "--restart", "on-failure", "busybox", "false")
    rt, c = _container(hoist, "loop")
    _until(lambda: c.status()[1].get("restart_count", 0) >= 4, "four restarts")
    hoist.ok("stop", "loop")
    assert not c.monitor_alive()
    status, state = c.status()
    assert status == "exited" and state["exit_code"] == 1


def test_foreground_run_returns_the_first_exit_and_restarts_go_on(hoist: Hoist) -> None:
    res = hoist("run", "--name", "fg", "--restart", "on-failure:1", "busybox", "sh", "-c", "echo hi; exit 4")
    assert res.returncode == 4 and res.stdout.decode().startswith("hi")
    rt, c = _container(hoist, "fg")
    assert rt.wait_exit(c, 60)
    assert c.status()[1]["restart_count"] == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--restart", "on-failure:x"], "maximum retry count must be an integer"),
    (["--restart", "always:2"], "maximum retry count can only be used with 'on-failure'"),
    (["--restart", "bogus"], "unknown policy 'bogus'"),
    (["--restart", "always", "--rm"], "Conflicting options: --restart and --rm"),
])
def test_run_bad_restart_input(hoist: Hoist, args: list[str], message: str) -> None:
    res = hoist("run", "-d", "--name", "bad", *args, "busybox", "true")
    err = res.stderr.decode()
    assert res.returncode == 125 and message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert hoist.ok("ps", "-a", "-q") == ""       # nothing half made


def _reboot(hoist: Hoist) -> None:
    """What a host reboot leaves: every monitor (and so every container process) gone, their
    cgroups gone (cgroupfs is in memory), and the state written in the previous boot."""
    from runtime import cgroups
    from runtime.lifecycle import Runtime

    rt = Runtime(hoist.root)
    for c in rt.containers.all():
        state = c.state()
        if c.monitor_alive(state):
            os.kill(int(state["monitor_pid"]), signal.SIGKILL)   # only this test's monitors, by pid
            pid = int(state.get("pid") or 0)
            _until(lambda c=c, pid=pid: not c.monitor_alive() and (not pid or not Path(f"/proc/{pid}").exists()),
                   "the container to die with its monitor")
        cgroups.remove(c.spec.cgroups)
        path = c.path / "state.json"
        doc = json.loads(path.read_text())
        if "monitor_boot" in doc:
            doc["monitor_boot"] = "00000000-0000-0000-0000-000000000000"   # the boot that ended
        path.write_text(json.dumps(doc))


def test_reboot_brings_back_what_the_policies_say(hoist: Hoist) -> None:
    for name, policy in (("a-always", "always"), ("b-unless", "unless-stopped"), ("c-unless-stopped", "unless-stopped"),
                         ("d-always-stopped", "always"), ("e-no", "no"), ("f-onfailure", "on-failure")):
        hoist.ok("run", "-d", "--name", name, "--restart", policy, "busybox", "sleep", "600")
    hoist.ok("stop", "-t", "1", "c-unless-stopped", "d-always-stopped")
    _reboot(hoist)
    for name in ("a-always", "b-unless", "e-no", "f-onfailure"):
        assert _inspect(hoist, name, "{{.State.Status}} {{.State.ExitCode}}") == "exited 255"
    out = hoist.ok("start", "--all-restartable")
    assert sorted(out.split()) == ["a-always", "b-unless", "d-always-stopped", "f-onfailure"]
    for name in ("a-always", "b-unless", "d-always-stopped", "f-onfailure"):
        assert _inspect(hoist, name, "{{.State.Status}}") == "running"
    for name in ("c-unless-stopped", "e-no"):
        assert _inspect(hoist, name, "{{.State.Status}}") == "exited"
    # unless-stopped after stop stays stopped across a second reboot too; the running ones come back
    hoist.ok("stop", "-t", "1", "b-unless")
    _reboot(hoist)
    out = hoist.ok("start", "--all-restartable")
    assert sorted(out.split()) == ["a-always", "d-always-stopped", "f-onfailure"]
    # and a second call finds them running: nothing to do
    assert hoist.ok("start", "--all-restartable") == ""


def test_systemd_unit_runs_the_boot_command() -> None:
    unit = (Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "hoist-restart.service").read_text()
    lines = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert lines["ExecStart"].split()[-2:] == ["start", "--all-restartable"]
    assert lines["Type"] == "oneshot" and lines["WantedBy"] == "default.target"


def test_hoist_kill_is_a_users_stop_but_another_signal_is_not(hoist: Hoist, tmp_path: Path) -> None:
    """docker's kill: SIGKILL (or the stop signal) ends the restart policy's hold; a signal the
    command dies of otherwise is a failure like any other."""
    data = tmp_path / "data"
    data.mkdir()
    hoist.ok("run", "-d", "--name", "k", "--restart", "always", "-v", f"{data}:/data", "busybox",
             "sh", "-c", "echo x >> /data/runs; trap 'exit 9' HUP; while :; do sleep 0.05; done")
    rt, c = _container(hoist, "k")
    _until(lambda: (data / "runs").exists(), "the first run")
    hoist.ok("kill", "-s", "HUP", "k")                 # the command exits 9 on it: restarted
    _until(lambda: c.status()[1].get("restart_count") == 1 and c.init_pid(), "the restart after HUP")
    hoist.ok("kill", "k")                              # SIGKILL: the user's stop
    assert rt.wait_exit(c, 30)
    status, state = c.status()
    assert status == "exited" and state["exit_code"] == 137 and state["manually_stopped"] is True
    assert state["restart_count"] == 1
