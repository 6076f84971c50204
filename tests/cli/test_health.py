"""Health checks end to end on real containers (busybox, root): ``run --health-*`` and the image's
HEALTHCHECK (also one ``hoist build`` wrote), probes run by each container's monitor inside the
container, ``State.Health`` in ``inspect`` (and ``-f``), ``ps`` STATUS and ``--filter health=``,
start period, timeout, ``--no-healthcheck``, ``restart``, bad flag values; and the status and
STATUS suffix against docker's for the same image and command."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import Hoist, one_line
from tests.images import busybox_image
from tests.peers import Dockerd

MS = 1_000_000
FAST = ["--health-interval", "200ms"]


@pytest.fixture
def h(containers: Hoist) -> Hoist:
    busybox_image(containers.layout())
    busybox_image(containers.layout(), "checked:1", config={"Healthcheck": {
        "Test": ["CMD-SHELL", "exit 1"], "Interval": 3600 * 1000 * MS, "Retries": 1}})
    return containers


def state(h: Hoist, name: str) -> dict[str, Any]:
    from runtime.containers import ContainerStore

    return ContainerStore(h.root / "containers").get(name).status()[1]


def wait_health(h: Hoist, name: str, pred: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        doc = state(h, name).get("health")
        if isinstance(doc, dict) and pred(doc):
            return doc
        assert time.monotonic() < deadline, f"{name}: never {what}; last Health {doc}"
        time.sleep(0.05)


def status_of(h: Hoist, name: str) -> str:
    return h("ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Status}}").out.strip()


def run_d(h: Hoist, name: str, *args: str) -> None:
    h("run", "-d", "--network", "none", "--name", name, *args)


def test_healthy_probe_runs_inside_as_the_container(h: Hoist) -> None:
    cmd = 'echo "$(id -u) $PWD $FOO $(hostname)"; test -e /etc/only-in-here'
    run_d(h, "hc-ok", "-u", "1000", "-w", "/tmp", "-e", "FOO=bar", "--hostname", "box", "--health-cmd", cmd,
          *FAST, "busybox", "sh", "-c", "touch /etc/only-in-here 2>/dev/null; sleep 60")
    # /etc is not writable for uid 1000: starting, failing, until the file exists.
    doc = wait_health(h, "hc-ok", lambda d: len(d["Log"]) >= 1, "probed")
    assert doc["Log"][0]["Output"] == "1000 /tmp bar box\n"
    assert doc["Log"][0]["ExitCode"] == 1
    h("exec", "-u", "0", "hc-ok", "touch", "/etc/only-in-here")
    doc = wait_health(h, "hc-ok", lambda d: d["Status"] == "healthy", "healthy")
    assert doc["FailingStreak"] == 0 and doc["Log"][-1]["ExitCode"] == 0
    assert status_of(h, "hc-ok").endswith(" (healthy)") and status_of(h, "hc-ok").startswith("Up ")
    assert h("inspect", "-f", "{{.State.Health.Status}}", "hc-ok").out == "healthy\n"
    info = json.loads(h("inspect", "hc-ok").out)[0]
    assert list(info["State"])[-1] == "Health"
    assert list(info["State"]["Health"]) == ["Status", "FailingStreak", "Log"]
    assert all(list(e) == ["Start", "End", "ExitCode", "Output"] for e in info["State"]["Health"]["Log"])
    assert info["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", cmd], "Interval": 200 * MS}
    assert list(info["Config"]).index("Healthcheck") == list(info["Config"]).index("Cmd") + 1
    assert h("inspect", "-f", "{{.Config.Healthcheck.Interval}}", "hc-ok").out == "200000000\n"
    assert h("ps", "--filter", "health=healthy", "--format", "{{.Names}}").out == "hc-ok\n"
    assert h("ps", "--filter", "health=unhealthy", "--format", "{{.Names}}").out == ""


def test_unhealthy_after_retries_is_not_restarted(h: Hoist) -> None:
    run_d(h, "hc-bad", "--health-cmd", "echo nope; exit 3", "--health-retries", "2", *FAST,
          "busybox", "sleep", "60")
    doc = wait_health(h, "hc-bad", lambda d: d["FailingStreak"] >= 1, "failing")
    assert doc["Status"] == ("unhealthy" if doc["FailingStreak"] >= 2 else "starting")
    doc = wait_health(h, "hc-bad", lambda d: d["Status"] == "unhealthy", "unhealthy")
    assert doc["FailingStreak"] >= 2 and doc["Log"][-1] == {**doc["Log"][-1], "ExitCode": 3, "Output": "nope\n"}
    assert status_of(h, "hc-bad").endswith(" (unhealthy)")
    assert h("ps", "--filter", "health=unhealthy", "--format", "{{.Names}}").out == "hc-bad\n"
    s = state(h, "hc-bad")
    assert s["status"] == "running" and not s.get("restart_count")
    wait_health(h, "hc-bad", lambda d: len(d["Log"]) == 5 and d["FailingStreak"] >= 6, "kept 5")


def test_start_period_failures_do_not_count_until_healthy(h: Hoist) -> None:
    run_d(h, "hc-slow", "--health-cmd", "test -e /tmp/ready", "--health-retries", "1",
          "--health-start-period", "60s", "--health-start-interval", "200ms", "--health-interval", "1h",
          "busybox", "sleep", "60")
    doc = wait_health(h, "hc-slow", lambda d: len(d["Log"]) >= 2, "probed twice")
    assert doc["Status"] == "starting" and doc["FailingStreak"] == 0
    assert status_of(h, "hc-slow").endswith(" (health: starting)")
    assert h("ps", "--filter", "health=starting", "--format", "{{.Names}}").out == "hc-slow\n"
    h("exec", "hc-slow", "touch", "/tmp/ready")
    wait_health(h, "hc-slow", lambda d: d["Status"] == "healthy", "healthy")


def test_timeout_kills_the_probe_and_its_children(h: Hoist) -> None:
    run_d(h, "hc-hang", "--init", "--health-cmd", "echo partial; sleep 30 & echo $! >> /tmp/sleepers; wait",
          "--health-timeout", "300ms", "--health-retries", "1", *FAST, "busybox", "sleep", "60")
    doc = wait_health(h, "hc-hang", lambda d: d["Status"] == "unhealthy", "unhealthy")
    entry = doc["Log"][0]
    assert entry["ExitCode"] == -1
    assert entry["Output"] == "Health check exceeded timeout (300ms): partial\n"
    wait_health(h, "hc-hang", lambda d: len(d["Log"]) >= 3, "timed out thrice")
    # Each timed-out probe's process group is gone, not only its shell: none of their sleeps is
    # left (the last one may belong to the probe under way).
    sleepers = h("exec", "hc-hang", "cat", "/tmp/sleepers").out.split()
    assert len(sleepers) >= 3
    alive = h("exec", "hc-hang", "sh", "-c", " ".join(f"test -d /proc/{p} && echo {p};" for p in sleepers[:-1]),
              ok=False).out.split()
    assert alive == [], (sleepers, alive)


def test_image_healthcheck_flags_override_field_by_field_and_no_healthcheck(h: Hoist) -> None:
    run_d(h, "hc-img", *FAST, "checked:1", "sleep", "60")   # the image's test, the flag's interval
    doc = wait_health(h, "hc-img", lambda d: d["Status"] == "unhealthy", "unhealthy")
    assert doc["FailingStreak"] == 1   # the image's Retries
    info = json.loads(h("inspect", "hc-img").out)[0]
    assert info["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "exit 1"], "Interval": 200 * MS, "Retries": 1}
    run_d(h, "hc-off", "--no-healthcheck", "checked:1", "sleep", "60")
    info = json.loads(h("inspect", "hc-off").out)[0]
    # NONE is a Test: the daemon's merge still takes the image's other fields
    assert "Health" not in info["State"] and info["Config"]["Healthcheck"] == {
        "Test": ["NONE"], "Interval": 3600 * 1000 * MS, "Retries": 1}
    assert status_of(h, "hc-off").startswith("Up ") and "(" not in status_of(h, "hc-off")
    assert h("ps", "--filter", "health=none", "--format", "{{.Names}}").out == "hc-off\n"
    assert h("inspect", "-f", "{{json .State.Health}}", "hc-off").out == "null\n"   # a nil *Health


def test_healthcheck_from_hoist_build(h: Hoist, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nHEALTHCHECK --interval=200ms --retries=1 CMD test -e /etc/passwd && echo fine\n")
    h("build", "-t", "built:1", str(ctx))
    (ctx / "Dockerfile").write_text("FROM built:1\nHEALTHCHECK NONE\n")
    h("build", "-t", "built:none", str(ctx))
    # CMD-SHELL runs under the image's SHELL, as the daemon's probe does
    (ctx / "Dockerfile").write_text('FROM busybox\nSHELL ["/bin/echo", "shell:"]\n'
                                    "HEALTHCHECK --interval=200ms CMD hello\n")
    h("build", "-t", "built:shell", str(ctx))
    run_d(h, "hc-built", "built:1", "sleep", "60")
    run_d(h, "hc-none", "built:none", "sleep", "60")
    run_d(h, "hc-shell", "built:shell", "sleep", "60")
    doc = wait_health(h, "hc-shell", lambda d: d["Status"] == "healthy", "healthy")
    assert doc["Log"][-1]["Output"] == "shell: hello\n"
    doc = wait_health(h, "hc-built", lambda d: d["Status"] == "healthy", "healthy")
    assert doc["Log"][-1]["Output"] == "fine\n"
    info = json.loads(h("inspect", "hc-built").out)[0]
    assert info["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "test -e /etc/passwd && echo fine"],
                                             "Interval": 200 * MS, "Retries": 1}
    info = json.loads(h("inspect", "hc-none").out)[0]
    assert "Health" not in info["State"] and info["Config"]["Healthcheck"] == {"Test": ["NONE"]}


def test_restart_resets_health_and_stop_stops_probing(h: Hoist) -> None:
    run_d(h, "hc-re", "--health-cmd", "test -e /tmp/ok", "--health-retries", "1", "--health-start-period", "1h",
          "--health-start-interval", "200ms", *FAST, "busybox", "sleep", "60")
    h("exec", "hc-re", "touch", "/tmp/ok")
    wait_health(h, "hc-re", lambda d: d["Status"] == "healthy", "healthy")
    h("exec", "hc-re", "rm", "/tmp/ok")
    before = wait_health(h, "hc-re", lambda d: d["Status"] == "unhealthy", "unhealthy (counted once healthy)")
    started = state(h, "hc-re")["started_at"]
    h("restart", "-t", "0", "hc-re")
    after = state(h, "hc-re")
    assert after["started_at"] != started and after["health"]["Status"] == "starting"
    assert after["health"]["FailingStreak"] == 0
    assert before["Log"][-1] in after["health"]["Log"]   # the log is kept
    doc = wait_health(h, "hc-re", lambda d: d["Log"][-1]["Start"] > before["Log"][-1]["Start"], "probed again")
    assert doc["Status"] == "starting" and doc["FailingStreak"] == 0   # in the new start period again
    h("stop", "-t", "0", "hc-re")
    stopped = state(h, "hc-re")
    assert stopped["status"] == "exited" and stopped["health"]["Status"] == "starting"   # kept, as docker
    assert status_of(h, "hc-re").startswith("Exited (137) ") and "health" not in status_of(h, "hc-re")
    time.sleep(0.8)   # four intervals: nothing probes a stopped container
    assert state(h, "hc-re")["health"] == stopped["health"]


@pytest.mark.parametrize(("flags", "words"), [
    (["--health-interval", "soon"], ['invalid argument "soon" for "--health-interval" flag']),
    (["--health-timeout=-1s"], ["--health-timeout cannot be negative"]),
    (["--health-retries", "many"], ['invalid argument "many" for "--health-retries" flag']),
    (["--health-retries", "-2"], ["--health-retries cannot be negative"]),
    (["--health-start-period", "500us"], ["StartPeriod in Healthcheck cannot be less than 1ms"]),
    (["--health-interval", "10ns", "--health-cmd", "true"], ["Interval in Healthcheck cannot be less than 1ms"]),
    (["--no-healthcheck", "--health-cmd", "true"], ["--no-healthcheck conflicts with --health-* options"]),
])
def test_bad_flag_values_are_one_line_125(h: Hoist, flags: list[str], words: list[str]) -> None:
    res = h("run", "-d", "--network", "none", *flags, "busybox", "true", ok=False)
    one_line(res, *words)
    assert res.code == 125
    assert h("ps", "-aq").out == ""   # nothing half made
    one_line(h("ps", "--filter", "health=fine", ok=False), "Unrecognised filter value for health: fine")


# -- against docker ---------------------------------------------------------------------------------

REF = "hoist-diff/health:1"


@pytest.fixture
def both(h: Hoist, dockerd: Dockerd, tmp_path: Path) -> Iterator[tuple[Hoist, Dockerd]]:
    busybox_image(h.layout(), REF)
    archive = tmp_path / "health.tar"
    h("save", "-o", str(archive), REF)
    dockerd("load", "-i", str(archive))
    yield h, dockerd
    dockerd("rm", "-f", "hd-good", "hd-bad", "hd-slow", "hd-plain", check=False)
    dockerd("rmi", "-f", REF, check=False)


def test_health_status_and_ps_suffix_match_docker(both: tuple[Hoist, Dockerd]) -> None:
    h, d = both
    cases = {"hd-good": ["--health-cmd", "true", *FAST],
             "hd-bad": ["--health-cmd", "exit 1", "--health-retries", "2", *FAST],
             "hd-slow": ["--health-cmd", "exit 1", "--health-interval", "1h"]}
    for name, flags in cases.items():
        h("run", "-d", "--network", "none", "--name", name, *flags, REF, "sleep", "60")
        d("run", "-d", "--network", "none", "--name", name, *flags, REF, "sleep", "60")
    want = {"hd-good": "healthy", "hd-bad": "unhealthy", "hd-slow": "starting"}

    def docker_status(name: str) -> str:
        return d("inspect", "-f", "{{.State.Health.Status}}", name).stdout.decode().strip()

    deadline = time.monotonic() + 30
    for name, status in want.items():
        wait_health(h, name, lambda doc, status=status: doc["Status"] == status, status)
        while docker_status(name) != status:
            assert time.monotonic() < deadline, (name, docker_status(name))
            time.sleep(0.1)
        ours = h("inspect", "-f", "{{.State.Health.Status}} {{.State.Health.FailingStreak}}", name).out.split()
        theirs = d("inspect", "-f", "{{.State.Health.Status}} {{.State.Health.FailingStreak}}",
                   name).stdout.decode().split()
        assert ours[0] == theirs[0] == status
        suffix = h("ps", "--filter", f"name=^{name}$", "--format", "{{.Status}}").out.strip().split(" ", 1)[1]
        docker_suffix = d("ps", "--filter", f"name=^{name}$", "--format", "{{.Status}}").stdout.decode().strip()
        assert suffix.split("(")[-1] == docker_suffix.split("(")[-1], (suffix, docker_suffix)
        assert json.loads(h("inspect", "-f", "{{json .Config.Healthcheck}}", name).out) == \
            json.loads(d("inspect", "-f", "{{json .Config.Healthcheck}}", name).stdout)
    h("run", "-d", "--network", "none", "--name", "hd-plain", REF, "sleep", "60")
    d("run", "-d", "--network", "none", "--name", "hd-plain", REF, "sleep", "60")
    fmt_plain = "{{json .State.Health}} {{json .Config.Healthcheck}}"
    assert h("inspect", "-f", fmt_plain, "hd-plain").out == d("inspect", "-f", fmt_plain, "hd-plain").stdout.decode() \
        == "null null\n"
    for flt in ("healthy", "unhealthy", "starting", "none"):
        fmt = ["--filter", f"health={flt}", "--filter", "name=hd-", "--format", "{{.Names}}"]
        assert sorted(h("ps", *fmt).out.split()) == sorted(d("ps", *fmt).stdout.decode().split()), flt


def test_restart_policy_run_starts_health_over(h: Hoist) -> None:
    """The monitor's own restarts (``--restart``) reset Health as a user's restart does."""
    script = "while test ! -e /tmp/die; do sleep 0.05; done; rm /tmp/die /tmp/ok; exit 1"
    run_d(h, "hc-loop", "--restart", "on-failure", "--health-cmd", "test -e /tmp/ok", "--health-retries", "1",
          "--health-start-period", "1h", "--health-start-interval", "200ms", "busybox", "sh", "-c", script)
    h("exec", "hc-loop", "touch", "/tmp/ok")
    wait_health(h, "hc-loop", lambda d: d["Status"] == "healthy", "healthy")
    h("exec", "hc-loop", "touch", "/tmp/die")
    deadline = time.monotonic() + 30
    while not (state(h, "hc-loop").get("restart_count") and state(h, "hc-loop")["status"] == "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    s = state(h, "hc-loop")
    assert s["health"]["Status"] == "starting" and s["health"]["FailingStreak"] == 0
    doc = wait_health(h, "hc-loop", lambda d: d["Log"][-1]["ExitCode"] == 1 and d["Log"][-1]["Start"] >
                      s["health"]["Log"][-1]["Start"], "probed in the new run")
    assert doc["Status"] == "starting"


def test_paused_container_is_not_probed(h: Hoist) -> None:
    run_d(h, "hc-pause", "--health-cmd", "true", *FAST, "busybox", "sleep", "60")
    wait_health(h, "hc-pause", lambda d: d["Status"] == "healthy", "healthy")
    h("pause", "hc-pause")
    assert status_of(h, "hc-pause").endswith(" (Paused)")
    time.sleep(0.3)   # a probe under way when the freeze came may still end
    frozen = state(h, "hc-pause")["health"]
    time.sleep(0.8)   # four intervals
    assert state(h, "hc-pause")["health"] == frozen
    h("unpause", "hc-pause")
    wait_health(h, "hc-pause", lambda d: d["Log"][-1]["Start"] > frozen["Log"][-1]["Start"], "probed again")


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (by /proc's parent links)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rfind(b")") + 2:].split()[1])
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        out.update(kids)
        todo.extend(kids)
    return out


def test_no_probe_outlives_a_stop(h: Hoist) -> None:
    run_d(h, "hc-long", "--health-cmd", "echo $$ > /tmp/probe; sleep 30", "--health-timeout", "1m", *FAST,
          "busybox", "sleep", "60")
    deadline = time.monotonic() + 30
    while h("exec", "hc-long", "cat", "/tmp/probe", ok=False).code != 0:   # a probe is under way
        assert time.monotonic() < deadline
        time.sleep(0.05)
    s = state(h, "hc-long")
    probers = {p for p in _descendants(int(s["monitor_pid"])) if p != s["pid"]
               and Path(f"/proc/{p}/comm").read_text().strip() == "hoist-health"}
    assert len(probers) >= 2   # the health process and the probe's helper
    h("stop", "-t", "0", "hc-long")
    assert not [p for p in probers if Path(f"/proc/{p}").exists()]
    assert state(h, "hc-long")["health"]["Log"] == []   # the probe under way was dropped


def test_a_probe_under_way_at_a_pause_is_dropped(h: Hoist) -> None:
    """docker stops probing a paused container and drops the probe under way: a frozen probe
    must not come back as a timeout once the container is thawed."""
    run_d(h, "hc-freeze", "--health-cmd", "touch /tmp/in; sleep 0.5; rm /tmp/in", "--health-timeout", "1s",
          *FAST, "busybox", "sleep", "60")
    marker = Path(f"/proc/{state(h, 'hc-freeze')['pid']}/root/tmp/in")
    deadline = time.monotonic() + 30
    while not marker.exists():   # a probe is under way
        assert time.monotonic() < deadline
        time.sleep(0.01)
    h("pause", "hc-freeze")
    time.sleep(1.3)   # past the frozen probe's timeout
    thawed = time.time()
    h("unpause", "hc-freeze")
    from runtime.health import go_time

    after = go_time(int(thawed * 1e9))
    doc = wait_health(h, "hc-freeze", lambda d: any(e["Start"] > after for e in d["Log"]), "probed after the thaw")
    assert all(e["ExitCode"] == 0 for e in doc["Log"]), doc["Log"]
    assert doc["Status"] == "healthy"
