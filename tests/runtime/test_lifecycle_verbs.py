"""``start``, ``restart``, ``wait``, ``pause``/``unpause``, ``update`` and container ``inspect``
through the CLI, and the upgrade-and-rollback users script with them (issue 13)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from runtime import cgroups
from tests.images import busybox_image
from tests.runtime.conftest import Hoist


def _until(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _container(hoist: Hoist, name: str):
    from runtime.lifecycle import Runtime
    rt = Runtime(hoist.root)
    return rt, rt.containers.get(name)


def _fmt(hoist: Hoist, name: str, fmt: str) -> str:
    return hoist.ok("inspect", "-f", fmt, name).strip()


def _one_line_error(res, code: int = 1) -> str:
    err = res.stderr.decode()
    assert res.returncode == code, (res.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_start_runs_the_same_container_again(hoist: Hoist) -> None:
    hoist.ok("run", "--name", "job", "busybox", "sh", "-c", "echo run >> /runs; wc -l < /runs")
    res = hoist("start", "-a", "job")
    assert res.returncode == 0 and res.stdout.decode().split() == ["2"]     # its upper dir kept /runs
    res = hoist("start", "job")
    assert res.returncode == 0 and res.stdout.decode() == "job\n"
    rt, c = _container(hoist, "job")
    assert rt.wait_exit(c, 30)
    assert hoist.ok("start", "-a", "job").split() == ["4"]


def test_start_a_returns_the_exit_code_and_bad_input(hoist: Hoist) -> None:
    assert hoist("run", "--name", "five", "busybox", "sh", "-c", "exit 5").returncode == 5
    assert hoist("start", "-a", "five").returncode == 5
    hoist.ok("run", "-d", "--name", "up", "busybox", "sleep", "600")
    assert "already running" in _one_line_error(hoist("start", "up"))
    assert "no such container" in _one_line_error(hoist("start", "nosuch"))
    assert "cannot start and attach multiple" in _one_line_error(hoist("start", "-a", "five", "up"))
    assert "takes no container names" in _one_line_error(hoist("start", "--all-restartable", "up"))


def test_restart_gives_a_new_process_in_the_same_container(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--name", "svc", "busybox", "sh", "-c", "echo x >> /runs; exec sleep 600")
    rt, c = _container(hoist, "svc")
    first = _until(c.init_pid, "the first run")
    assert hoist.ok("restart", "-t", "1", "svc") == "svc\n"
    second = _until(c.init_pid, "the second run")
    assert second != first
    assert hoist.ok("exec", "svc", "wc", "-l", "/runs").split()[0] == "2"
    assert _fmt(hoist, "svc", "{{.RestartCount}} {{.State.Status}}") == "0 running"   # docker: not counted
    assert hoist.ok("restart", "-t", "0", "svc") == "svc\n"


def test_wait_prints_the_exit_code(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--name", "w", "busybox", "sh", "-c", "sleep 0.3; exit 7")
    assert hoist.ok("wait", "w") == "7\n"
    assert hoist.ok("wait", "w") == "7\n"                     # an exited one answers at once
    res = hoist("wait", "w", "nosuch")
    assert res.returncode == 1 and res.stdout.decode() == "7\n" and "no such container" in res.stderr.decode()


def test_pause_and_unpause(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--name", "p", "busybox", "sleep", "600")
    rt, c = _container(hoist, "p")
    _until(c.init_pid, "the run")
    assert hoist.ok("pause", "p") == "p\n"
    assert _fmt(hoist, "p", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}") == "paused true true"
    freezer = [p for p in c.spec.cgroups if "freezer" in p or cgroups.is_v2()]
    assert freezer
    if not cgroups.is_v2():
        assert (Path(freezer[0]) / "freezer.state").read_text().strip() == "FROZEN"
        pid = c.init_pid()
        assert str(pid) in (Path(freezer[0]) / "cgroup.procs").read_text().split()
    assert "is paused" in _one_line_error(hoist("exec", "p", "true"))
    assert "already paused" in _one_line_error(hoist("pause", "p"))
    assert hoist.ok("unpause", "p") == "p\n"
    assert _fmt(hoist, "p", "{{.State.Status}} {{.State.Paused}}") == "running false"
    hoist.ok("exec", "p", "true")
    assert "not paused" in _one_line_error(hoist("unpause", "p"))
    hoist.ok("pause", "p")
    hoist.ok("stop", "-t", "1", "p")                          # a paused container still stops
    assert _fmt(hoist, "p", "{{.State.Status}} {{.State.Paused}}") == "exited false"
    assert "not running" in _one_line_error(hoist("pause", "p"))


@pytest.mark.skipif(cgroups.is_v2(), reason="checks the v1 files")
def test_update_limits_of_a_running_container(hoist: Hoist) -> None:
    cid = hoist.ok("run", "-d", "--name", "u", "--memory", "64m", "busybox", "sleep", "600").strip()
    rt, c = _container(hoist, "u")
    _until(c.init_pid, "the run")
    assert hoist.ok("update", "--memory", "96m", "--cpus", "0.25", "--pids-limit", "20", "u") == "u\n"
    root = Path("/sys/fs/cgroup")
    assert (root / "memory/hoist" / cid / "memory.limit_in_bytes").read_text().strip() == str(96 << 20)
    # no cpu or pids cgroup before: made now, with the container's processes moved in
    assert (root / "cpu/hoist" / cid / "cpu.cfs_quota_us").read_text().strip() == "25000"
    assert (root / "pids/hoist" / cid / "pids.max").read_text().strip() == "20"
    assert str(c.init_pid()) in (root / "pids/hoist" / cid / "cgroup.procs").read_text().split()
    assert _fmt(hoist, "u", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}") == \
        f"{96 << 20} 250000000 20"
    hoist.ok("stop", "-t", "0", "u")
    hoist.ok("start", "u")                                    # the next start keeps the new limits
    assert (root / "cpu/hoist" / cid / "cpu.cfs_quota_us").read_text().strip() == "25000"
    hoist.ok("rm", "-f", "u")
    assert not (root / "pids/hoist" / cid).exists()


def test_update_restart_policy_applies_to_the_next_exit(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--name", "later", "busybox", "sleep", "600")
    rt, c = _container(hoist, "later")
    first = _until(c.init_pid, "the run")
    hoist.ok("update", "--restart", "always", "later")
    assert _fmt(hoist, "later", "{{.HostConfig.RestartPolicy.Name}}") == "always"
    os.kill(first, signal.SIGKILL)
    _until(lambda: c.init_pid() not in (0, first), "the restart the new policy asks for")
    assert _fmt(hoist, "later", "{{.RestartCount}}") == "1"


def test_update_bad_input(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--rm", "--name", "auto", "busybox", "sleep", "600")
    assert "one or more flags" in _one_line_error(hoist("update", "auto"))
    assert "must be an integer" in _one_line_error(hoist("update", "--restart", "on-failure:x", "auto"))
    assert "invalid size" in _one_line_error(hoist("update", "--memory", "lots", "auto"))
    assert "AutoRemove" in _one_line_error(hoist("update", "--restart", "always", "auto"))
    assert "no such container" in _one_line_error(hoist("update", "--cpus", "1", "nosuch"))
    assert _fmt(hoist, "auto", "{{.HostConfig.RestartPolicy.Name}}") == "no"   # nothing changed


def test_inspect_a_container(hoist: Hoist, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    busybox_image(hoist.root / "images", "web:1", config={"Labels": {"b": "2", "a": "1"},
                                                         "ExposedPorts": {"80/tcp": {}}, "Entrypoint": ["sh", "-c"],
                                                         "Cmd": ["sleep 600"]})
    cid = hoist.ok("run", "-d", "--name", "web", "--restart", "unless-stopped", "-e", "MODE=prod",
                   "-v", f"{data}:/data:ro", "-w", "/tmp", "--memory", "32m", "--cpus", "1.5", "web:1").strip()
    docs = json.loads(hoist.ok("inspect", "web"))
    assert len(docs) == 1
    doc = docs[0]
    assert doc["Id"] == cid and doc["Name"] == "/web" and doc["Path"] == "sh" and doc["Args"] == ["-c", "sleep 600"]
    state = doc["State"]
    assert state["Status"] == "running" and state["Running"] is True and state["Pid"] > 0
    assert state["StartedAt"].endswith("Z") and state["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert doc["Image"].startswith("sha256:") and doc["RestartCount"] == 0
    cfg = doc["Config"]
    assert cfg["Image"] == "docker.io/library/web:1" and "MODE=prod" in cfg["Env"] and cfg["WorkingDir"] == "/tmp"
    assert cfg["Entrypoint"] == ["sh", "-c"] and cfg["Cmd"] == ["sleep 600"]
    assert cfg["Labels"] == {"a": "1", "b": "2"} and cfg["ExposedPorts"] == {"80/tcp": {}}
    host = doc["HostConfig"]
    assert host["Binds"] == [f"{data}:/data:ro"] and host["NetworkMode"] == "none"
    assert host["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert host["Memory"] == 32 << 20 and host["NanoCpus"] == 1_500_000_000
    assert doc["Mounts"] == [{"Type": "bind", "Source": str(data), "Destination": "/data", "Mode": "ro",
                              "RW": False, "Propagation": "rprivate"}]
    # the templates people type
    assert _fmt(hoist, "web", "{{.State.Status}}") == "running"
    assert json.loads(_fmt(hoist, "web", "{{json .Mounts}}"))[0]["Destination"] == "/data"
    assert _fmt(hoist, "web", "{{range .Config.Env}}{{if eq . \"MODE=prod\"}}{{.}}{{end}}{{end}}") == "MODE=prod"
    assert _fmt(hoist, "web", "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}") == "a=1 b=2"
    assert _fmt(hoist, "web", "{{index .Config.Labels \"b\"}} {{.Name}} {{.NoSuchField}}") == "2 /web <no value>"
    assert _fmt(hoist, "web", "{{.HostConfig.RestartPolicy}}") == "{unless-stopped 0}"
    out = hoist.ok("inspect", "-f", "{{.Name}}", "web", "busybox")
    assert out.splitlines()[0] == "/web" and out.splitlines()[1] == "<no value>"  # an image has no Name


def test_inspect_lookup_order_and_bad_input(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--name", "busybox", "busybox", "sleep", "600")   # a container named as an image
    assert _fmt(hoist, "busybox", "{{.Name}}") == "/busybox"               # docker: the container first
    assert hoist.ok("inspect", "--type", "image", "-f", "{{.Os}}", "busybox").strip() == "linux"
    assert _fmt(hoist, "busybox", "{{.State.Running}}") == "true"
    res = hoist("inspect", "busybox", "nothere")
    assert res.returncode == 1 and "No such object: nothere" in res.stderr.decode()
    assert len(json.loads(res.stdout)) == 1
    assert "No such container: nothere" in _one_line_error(hoist("inspect", "--type", "container", "nothere"))
    err = _one_line_error(hoist("inspect", "-f", "{{.State.Status", "busybox"))
    assert "template parsing error" in err and "unclosed action" in err
    err = _one_line_error(hoist("inspect", "-f", "{{.State.Status.X}}", "busybox"))
    assert "can't evaluate field X in type" in err


def test_upgrade_and_rollback_as_the_users_script_it(hoist: Hoist, tmp_path: Path) -> None:
    """Their notes: run 1.0 with a volume; stop, rename, run 1.1 with the same volume (the data
    survives); roll back: stop, rename back, start 1.0, which serves again."""
    busybox_image(hoist.root / "images", "app:1.0", config={"Env": ["VERSION=1.0"]})
    busybox_image(hoist.root / "images", "app:1.1", config={"Env": ["VERSION=1.1"]})
    data = tmp_path / "data"
    data.mkdir()
    serve = "echo $VERSION >> /data/versions; echo serving $VERSION; exec sleep 600"
    hoist.ok("run", "-d", "--name", "app", "--restart", "always", "-v", f"{data}:/data", "app:1.0", "sh", "-c", serve)
    _until(lambda: (data / "versions").exists(), "1.0 to start")
    hoist.ok("stop", "-t", "1", "app")
    hoist.ok("rename", "app", "app-1.0")
    hoist.ok("run", "-d", "--name", "app", "--restart", "always", "-v", f"{data}:/data", "app:1.1", "sh", "-c", serve)
    _until(lambda: (data / "versions").read_text().split() == ["1.0", "1.1"], "1.1 to start on 1.0's data")
    hoist.ok("stop", "-t", "1", "app")
    hoist.ok("rename", "app", "app-1.1")
    hoist.ok("rename", "app-1.0", "app")
    assert hoist.ok("start", "app") == "app\n"
    _until(lambda: (data / "versions").read_text().split() == ["1.0", "1.1", "1.0"], "1.0 to serve again")
    assert _fmt(hoist, "app", "{{.Config.Image}} {{.State.Status}}") == "docker.io/library/app:1.0 running"
    assert "serving 1.0" in hoist.ok("logs", "app")


def test_freeze_on_cgroup_v2(tmp_path: Path) -> None:
    """The v2 half of pause (``cgroup.freeze``, ``cgroup.events``), on the host's cgroup2 mount
    (the unified one of a hybrid host, where the freezer needs no controller)."""
    import subprocess
    import uuid

    from runtime.errors import SetupError

    unified = next((Path(line.split()[4]) for line in Path("/proc/self/mountinfo").read_text().splitlines()
                    if " - cgroup2 " in line), None)
    if unified is None or not (unified / "cgroup.procs").exists():
        pytest.skip("no cgroup2 mount on this host")
    group = unified / f"hoist-test-{uuid.uuid4().hex[:12]}"
    group.mkdir()
    proc = subprocess.Popen(["sleep", "600"])
    try:
        (group / "cgroup.procs").write_text(str(proc.pid))
        cgroups.freeze([str(group)], True)
        assert "frozen 1" in (group / "cgroup.events").read_text().splitlines()
        cgroups.freeze([str(group)], False)
        assert "frozen 0" in (group / "cgroup.events").read_text().splitlines()
        with pytest.raises(SetupError, match="no freezer cgroup"):
            cgroups.freeze([str(tmp_path)], True)
    finally:
        proc.kill()
        proc.wait()
        _until(lambda: not (group / "cgroup.procs").read_text().strip(), "the cgroup to empty")
        group.rmdir()
