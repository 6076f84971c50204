"""``hoist run`` end to end through the CLI, on the busybox test image."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.images import busybox_image
from tests.runtime.conftest import Hoist


def run(hoist: Hoist, *args: str):
    return hoist("run", "--rm", *args)


def test_pid1_is_the_command(hoist: Hoist) -> None:
    res = run(hoist, "busybox", "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().split("\n")[:2] == ["1", "sh -c echo $$; cat /proc/1/cmdline | tr '\\0' ' ' "]


def test_hostname_env_workdir_and_home(hoist: Hoist) -> None:
    out = hoist.ok("run", "--rm", "--hostname", "box1", "-e", "FOO=bar", "-w", "/srv/app", "busybox",
                   "sh", "-c", "hostname; cat /etc/hostname; echo $FOO $HOME $HOSTNAME; pwd; echo $PATH")
    lines = out.splitlines()
    assert lines[:4] == ["box1", "box1", "bar /root box1", "/srv/app"]
    assert lines[4] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_default_hostname_is_short_id(hoist: Hoist) -> None:
    out = hoist.ok("run", "-d", "busybox", "hostname")
    cid = out.strip()
    assert len(cid) == 64
    _wait_exited(hoist, cid)
    assert hoist.ok("logs", cid[:12]).strip() == cid[:12]


def test_env_file_and_image_env(hoist: Hoist, tmp_path: Path) -> None:
    busybox_image(hoist.root / "images", "envimg", config={"Env": ["A=image", "B=image"]})
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nB=file\nC=file\n")
    out = hoist.ok("run", "--rm", "--env-file", str(env_file), "-e", "C=flag", "envimg", "sh", "-c", "echo $A $B $C")
    assert out.strip() == "image file flag"


def test_user_by_name_and_number(hoist: Hoist) -> None:
    assert hoist.ok("run", "--rm", "-u", "app", "busybox", "id").strip() == \
        "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)"
    assert hoist.ok("run", "--rm", "-u", "1000:50", "busybox", "id").strip() == \
        "uid=1000(app) gid=50(staff) groups=50(staff)"
    assert hoist.ok("run", "--rm", "-u", "4242", "busybox", "sh", "-c", "id -u; id -g; echo $HOME").split() == \
        ["4242", "0", "/"]
    out = hoist.ok("run", "--rm", "-u", "app", "busybox", "sh", "-c", "grep Cap /proc/self/status")
    assert "CapEff:\t0000000000000000" in out


def test_image_user_that_does_not_exist(hoist: Hoist) -> None:
    busybox_image(hoist.root / "images", "baduser", config={"User": "ghost"})
    res = run(hoist, "baduser", "id")
    assert res.returncode == 125
    assert "unable to find user ghost" in res.stderr.decode()
    assert res.stderr.decode().count("\n") == 1


@pytest.mark.parametrize("cmd, code", [(["true"], 0), (["sh", "-c", "exit 3"], 3),
                                       (["/etc/passwd"], 126), (["nosuchcmd"], 127),
                                       (["/bin/nope"], 127), (["sh", "-c", "exit 200"], 200)])
def test_exit_codes(hoist: Hoist, cmd: list[str], code: int) -> None:
    res = run(hoist, "busybox", *cmd)
    assert res.returncode == code, res.stderr
    if code in (126, 127):
        assert "Traceback" not in res.stderr.decode() and res.stderr.decode().strip()


def test_killed_by_signal_reports_128_plus(hoist: Hoist) -> None:
    # PID 1 cannot be killed from inside its namespace; with --init the command is PID 2.
    assert run(hoist, "--init", "busybox", "sh", "-c", "kill -9 $$").returncode == 137


def test_entrypoint_and_cmd(hoist: Hoist) -> None:
    busybox_image(hoist.root / "images", "ep", config={"Entrypoint": ["echo", "from-ep"], "Cmd": ["default"]})
    assert hoist.ok("run", "--rm", "ep").strip() == "from-ep default"
    assert hoist.ok("run", "--rm", "ep", "given").strip() == "from-ep given"
    assert hoist.ok("run", "--rm", "--entrypoint", "hostname", "--hostname", "h", "ep").strip() == "h"


def test_missing_entrypoint_binary(hoist: Hoist) -> None:
    busybox_image(hoist.root / "images", "noep", config={"Entrypoint": ["/app/server"]})
    res = run(hoist, "noep")
    assert res.returncode == 127
    assert "/app/server" in res.stderr.decode()


def test_readonly_volume(hoist: Hoist, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("hello")
    res = run(hoist, "-v", f"{data}:/data:ro", "busybox", "sh", "-c",
              "cat /data/in.txt; echo; touch /data/new 2>/dev/null && echo WROTE; "
              "echo x > /data/in.txt || echo refused")
    assert res.stdout.decode().split() == ["hello", "refused"]
    assert sorted(p.name for p in data.iterdir()) == ["in.txt"]
    assert (data / "in.txt").read_text() == "hello"
    hoist.ok("run", "--rm", "-v", f"{data}:/data", "busybox", "touch", "/data/rw")
    assert (data / "rw").exists()


def test_volume_source_missing(hoist: Hoist, tmp_path: Path) -> None:
    # --mount type=bind refuses a missing source, as docker; -v creates it, as docker (issue 14).
    res = run(hoist, "--mount", f"type=bind,source={tmp_path}/absent,target=/data", "busybox", "true")
    assert res.returncode == 125
    assert "does not exist" in res.stderr.decode()
    assert not (tmp_path / "absent").exists()
    assert "Traceback" not in res.stderr.decode()
    assert run(hoist, "-v", f"{tmp_path}/absent:/data", "busybox", "true").returncode == 0
    assert (tmp_path / "absent").is_dir()


def test_unknown_image(hoist: Hoist) -> None:
    # --pull never: by default run would ask docker.io for it (tests/runtime/test_run_pull.py)
    res = run(hoist, "--pull", "never", "nosuchimage", "true")
    assert res.returncode == 125 and "no image" in res.stderr.decode()


def test_network_none_has_only_loopback(hoist: Hoist) -> None:
    out = hoist.ok("run", "--rm", "busybox", "sh", "-c", "ls /sys/class/net; cat /proc/net/dev | tail -n +3")
    names = out.split()
    assert names[0] == "lo" and "lo:" in names
    assert len([ln for ln in out.splitlines() if ":" in ln]) == 1
    assert "UP" in hoist.ok("run", "--rm", "busybox", "ip", "link", "show", "lo")


def test_mounts_proc_dev_sys(hoist: Hoist) -> None:
    out = hoist.ok("run", "--rm", "busybox", "sh", "-c",
                   "echo x > /sys/kernel/foo 2>/dev/null || echo sys-ro; ls /dev/pts/ptmx; "
                   "echo hi > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c; "
                   "touch /dev/shm/a && echo shm-ok")
    assert out.split() == ["sys-ro", "/dev/pts/ptmx", "null-ok", "4", "shm-ok"]


def test_killed_container_state(hoist: Hoist) -> None:
    cid = hoist.ok("run", "-d", "--name", "victim", "busybox", "sleep", "60").strip()
    assert "victim" in hoist.ok("ps")
    hoist.ok("kill", "victim")
    from runtime.lifecycle import Runtime
    rt = Runtime(hoist.root)
    container = rt.containers.get(cid)
    assert rt.wait_exit(container, 10)
    status, state = container.status()
    assert status == "exited" and state["exit_code"] == 137
    assert "victim" not in hoist.ok("ps")
    assert "Exited (137)" in hoist.ok("ps", "-a")


def test_detached_logs(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--name", "talker", "busybox", "sh", "-c", "echo out; echo err >&2; sleep 0.2; echo late")
    _wait_for_log(hoist, "talker", "out")
    res = hoist("logs", "-f", "talker", timeout=20)
    assert res.returncode == 0
    assert res.stdout.split() == [b"out", b"late"] and res.stderr.split() == [b"err"]  # each to its stream


def test_stop_uses_stopsignal(hoist: Hoist) -> None:
    busybox_image(hoist.root / "images", "usr1", config={"StopSignal": "SIGUSR1"})
    script = ("trap 'echo got-usr1; exit 0' USR1; trap 'echo got-term; exit 0' TERM; echo ready; "
              "while :; do sleep 0.05; done")
    hoist.ok("run", "-d", "--name", "svc", "usr1", "sh", "-c", script)
    _wait_for_log(hoist, "svc", "ready")
    started = time.monotonic()
    hoist.ok("stop", "-t", "5", "svc")
    assert time.monotonic() - started < 4
    assert "got-usr1" in hoist.ok("logs", "svc")
    assert "Exited (0)" in hoist.ok("ps", "-a")


def test_stop_kills_after_timeout(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--name", "stubborn", "busybox", "sleep", "60")
    hoist.ok("stop", "-t", "0.3", "stubborn")
    assert "Exited (137)" in hoist.ok("ps", "-a")


def test_exec_into_running_container(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--name", "host1", "--hostname", "inner", "busybox", "sh", "-c",
             "echo secret > /tmp/s; echo ready; sleep 60")
    _wait_for_log(hoist, "host1", "ready")
    out = hoist.ok("exec", "host1", "sh", "-c", "hostname; cat /tmp/s; ps -o pid,args | grep -c sleep; id -u")
    assert out.split()[:2] == ["inner", "secret"]
    assert out.split()[-1] == "0"
    assert hoist.ok("exec", "-u", "app", "host1", "id", "-un").strip() == "app"
    assert hoist("exec", "host1", "sh", "-c", "exit 5").returncode == 5
    assert hoist("exec", "host1", "nosuch").returncode == 127


def test_rm_cleanup_and_force(hoist: Hoist) -> None:
    hoist.ok("run", "--rm", "--name", "gone", "busybox", "true")
    assert list((hoist.root / "containers").iterdir()) == [hoist.root / "containers" / ".lock"]
    hoist.ok("run", "-d", "--name", "busy", "busybox", "sleep", "60")
    res = hoist("rm", "busy")
    assert res.returncode == 1 and "is running" in res.stderr.decode()
    hoist.ok("rm", "-f", "busy")
    assert "busy" not in hoist.ok("ps", "-a")


def test_detached_rm_removes_itself(hoist: Hoist) -> None:
    cid = hoist.ok("run", "-d", "--rm", "busybox", "true").strip()
    _wait_until(lambda: not (hoist.root / "containers" / cid).exists(), f"container {cid} was not removed")


def test_names_unique_and_upgrade_by_rename(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--name", "app", "busybox", "sleep", "60")
    res = hoist("run", "-d", "--name", "app", "busybox", "true")
    assert res.returncode == 125 and "already in use" in res.stderr.decode()
    busybox_image(hoist.root / "images", "busybox:v2", config={"Env": ["VERSION=2"]})
    hoist.ok("stop", "-t", "0.2", "app")
    hoist.ok("rename", "app", "app-old")
    hoist.ok("run", "-d", "--name", "app", "busybox:v2", "sh", "-c", "echo $VERSION; sleep 60")
    hoist.ok("rm", "app-old")
    _wait_for_log(hoist, "app", "2")
    assert "app-old" not in hoist.ok("ps", "-a")


def test_init_reaps_and_forwards(hoist: Hoist) -> None:
    hoist.ok("run", "-d", "--init", "--name", "withinit", "busybox", "sleep", "60")
    _wait_until(lambda: hoist("exec", "withinit", "test", "-e", "/proc/2/comm").returncode == 0,
                "the init's child never started")
    assert hoist.ok("exec", "withinit", "cat", "/proc/1/comm").strip() == "hoist-init"
    assert hoist.ok("exec", "withinit", "cat", "/proc/2/comm").strip() == "sleep"
    started = time.monotonic()
    hoist.ok("stop", "-t", "5", "withinit")
    assert time.monotonic() - started < 3
    assert "Exited (143)" in hoist.ok("ps", "-a")


def test_cgroup_limits(hoist: Hoist) -> None:
    res = run(hoist, "--pids-limit", "4", "busybox", "sh", "-c",
              "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait")
    assert "fork" in res.stderr.decode().lower()
    cid = hoist.ok("run", "-d", "--memory", "64m", "--cpus", "0.5", "busybox", "sleep", "60").strip()
    from runtime import cgroups
    spec = json.loads((hoist.root / "containers" / cid / "config.json").read_text())
    assert spec["cgroups"]
    if not cgroups.is_v2():
        mem = Path("/sys/fs/cgroup/memory/hoist") / cid / "memory.limit_in_bytes"
        assert mem.read_text().strip() == str(64 << 20)
        assert (Path("/sys/fs/cgroup/cpu/hoist") / cid / "cpu.cfs_quota_us").read_text().strip() == "50000"
    hoist.ok("rm", "-f", cid)
    assert not any(Path(p).exists() for p in spec["cgroups"])


def test_ps_prefix_lookup(hoist: Hoist) -> None:
    cid = hoist.ok("run", "-d", "busybox", "sleep", "60").strip()
    assert cid[:12] in hoist.ok("ps", "-q")
    hoist.ok("kill", cid[:6])
    res = hoist("kill", "zzzz")
    assert res.returncode == 1 and "no such container" in res.stderr.decode()


def test_upper_dir_records_changes(hoist: Hoist) -> None:
    from runtime.snapshots import walk_changes
    cid = hoist.ok("run", "-d", "busybox", "sh", "-c", "rm /etc/group; mkdir -p /opt/x; echo hi > /opt/x/f").strip()
    _wait_exited(hoist, cid)
    changes = {c.path: c.kind for c in walk_changes(hoist.root / "containers" / cid / "upper")}
    assert changes["etc/group"] == "deleted"
    assert changes["opt/x/f"] == "changed"


def _wait_until(condition: Callable[[], bool], failure: str, timeout: float = 10) -> None:
    """Poll ``condition`` until it holds; fail with ``failure`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(failure)
        time.sleep(0.02)


def _wait_for_log(hoist: Hoist, name: str, text: str, timeout: float = 10) -> None:
    _wait_until(lambda: text in hoist.ok("logs", name), f"{text!r} never appeared in the logs of {name}", timeout)


def _wait_exited(hoist: Hoist, ref: str, timeout: float = 10) -> None:
    """Until the container's monitor has recorded its exit."""
    from runtime.lifecycle import Runtime
    runtime = Runtime(hoist.root)
    assert runtime.wait_exit(runtime.containers.get(ref), timeout), f"container {ref} did not exit in {timeout}s"


def test_state_file_is_json(hoist: Hoist) -> None:
    cid = hoist.ok("run", "-d", "busybox", "true").strip()
    _wait_exited(hoist, cid)
    state = json.loads((hoist.root / "containers" / cid / "state.json").read_text())
    assert state["status"] == "exited" and state["exit_code"] == 0


def test_hardlink_to_a_file_of_a_lower_layer(hoist: Hoist) -> None:
    """A layer may hardlink a file that an earlier layer holds (docker and umoci link it): the
    file is copied up into the layer and linked, so both names show the lower layer's bytes."""
    from tests.images import Entry, layer_tar
    upper = layer_tar([Entry("etc/", "dir", mode=0o755),
                       Entry("etc/passwd.bak", "hardlink", link="etc/passwd"),
                       Entry("srv/", "dir", mode=0o755),
                       Entry("srv/group", "hardlink", link="etc/group")])
    busybox_image(hoist.root / "images", "linked", more_layers=[upper])
    out = hoist.ok("run", "--rm", "linked", "sh", "-c",
                   "cmp /etc/passwd /etc/passwd.bak && cmp /etc/group /srv/group && "
                   "stat -c %h /etc/passwd.bak /srv/group && head -1 /srv/group")
    assert out.split() == ["2", "2", "root:x:0:"], out


def test_hardlink_to_a_file_missing_below_is_refused(hoist: Hoist) -> None:
    from tests.images import Entry, layer_tar
    upper = layer_tar([Entry("etc/", "dir", mode=0o755), Entry("etc/x", "hardlink", link="etc/nope")])
    busybox_image(hoist.root / "images", "badlink", more_layers=[upper])
    res = hoist("run", "--rm", "badlink", "true")
    err = res.stderr.decode()
    assert res.returncode == 125 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
