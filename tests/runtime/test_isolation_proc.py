"""Process isolation, attacked from inside: inherited descriptors, the exec helper, the session
keyring, the --init reaper, user ids, and a container's lifecycle against its monitor.

Each test runs the attack under hoist and asserts it fails; where docker is here (the session's
private dockerd) the same probe runs under ``docker run --network none`` and both columns are
printed (``pytest -rP`` or ``-s`` shows them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.images import busybox_image
from tests.peers import Dockerd, absent, need_tool
from tests.runtime.conftest import Hoist

PROBE_SRC = Path(__file__).with_name("probe.c")
DOCKER_REF = "hoist-isolation/busybox:1"
# Docker's default capability set as /proc/PID/status prints it (moby/oci/caps/defaults.go).
DOCKER_CAPS = "00000000a80425fb"


# -- helpers --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the static C probe, bind-mounted read-only at /probe."""
    gcc = need_tool("gcc")
    out = tmp_path_factory.mktemp("probe")
    res = subprocess.run([gcc, "-static", "-O2", "-o", str(out / "probe"), str(PROBE_SRC)],
                         capture_output=True)
    if res.returncode != 0:
        if b"cannot find -lc" in res.stderr:
            absent("static libc missing (apt-get install libc6-dev)")
        raise AssertionError(res.stderr.decode())
    return out


@pytest.fixture(scope="module")
def docker_image(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Dockerd | None]:
    """The busybox test image loaded into the session's dockerd, or None without docker (the
    docker column is a comparison; the hoist assertions never depend on it)."""
    if shutil.which("dockerd") is None and not os.access("/usr/sbin/dockerd", os.X_OK):
        if os.environ.get("CI"):
            absent("dockerd not found (apt-get install docker.io)")
        yield None
        return
    engine: Dockerd = request.getfixturevalue("dockerd")
    base = tmp_path_factory.mktemp("docker-image")
    busybox_image(base / "images", DOCKER_REF)
    env = dict(os.environ, HOIST_ROOT=str(base), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    subprocess.run([sys.executable, "-m", "hoist.cli", "save", "-o", str(base / "img.tar"), DOCKER_REF],
                   check=True, env=env, capture_output=True)
    engine("load", "-i", str(base / "img.tar"))
    yield engine
    engine("rmi", "-f", DOCKER_REF, check=False)


def docker_run(docker: Dockerd | None, *args: str, probe: Path | None = None) -> str:
    if docker is None:
        return "(no docker)"
    vol = ["-v", f"{probe}:/probe:ro"] if probe else []
    res = docker("run", "--rm", "--network", "none", *vol, *args, check=False, timeout=120)
    return _text(res)


def _text(res: subprocess.CompletedProcess) -> str:
    return f"[{res.returncode}] {res.stdout.decode(errors='replace')}{res.stderr.decode(errors='replace')}".strip()


def columns(title: str, hoist_out: str, docker_out: str) -> None:
    print(f"\n== {title}\n-- hoist:\n{hoist_out}\n-- docker:\n{docker_out}")


FINDINGS = ("CMDLINE", "ENVIRON", "EXE", "EXEWRITE", "EXEWRITE-BUSY", "FOUND")


def findings(output: str) -> list[str]:
    """The probe's reports of a successful attack."""
    return [ln for ln in output.splitlines() if ln.split(" ")[0] in FINDINGS]


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    """Wait for an event (not a timing assertion: the bound only stops a hung test)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def state_of(hoist: Hoist, cid: str) -> dict:
    return json.loads((hoist.root / "containers" / cid / "state.json").read_text())


# -- 1. inherited descriptors ----------------------------------------------------------------------

ATTACK_FD = ("ls /proc/self/fd | tr '\\n' ' '; echo; echo x > /proc/self/fd/7/planted; "
             "ls /proc/self/fd/7/../.. | head -3")


def _with_fd7(hostdir: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``( exec 7</host/dir; ARGV )``: the caller leaves a host directory open as descriptor 7."""
    return subprocess.run(["sh", "-c", 'exec 7<"$0"; exec "$@"', str(hostdir), *argv],
                          capture_output=True, env=env, timeout=120)


def _hoist_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hoist.cli", *args]


def test_inherited_descriptor_does_not_reach_the_container(hoist: Hoist, tmp_path: Path,
                                                          docker_image: Dockerd | None) -> None:
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    res = _with_fd7(hostdir, _hoist_argv("run", "--rm", "busybox", "sh", "-c", ATTACK_FD), hoist.env())
    docker = "(no docker)"
    if docker_image is not None:
        docker = _text(_with_fd7(hostdir, [docker_image.docker, "run", "--rm", "--network", "none",
                                           DOCKER_REF, "sh", "-c", ATTACK_FD],
                                 dict(os.environ, DOCKER_HOST=f"unix://{docker_image.socket}")))
    columns("fd 7 of the caller, from inside", _text(res), docker)
    assert not (hostdir / "planted").exists()
    # ls itself holds one directory descriptor (3) while it lists.
    assert res.stdout.decode().splitlines()[0].split() == ["0", "1", "2", "3"]


def test_detached_monitor_and_container_keep_no_caller_descriptor(hoist: Hoist, tmp_path: Path) -> None:
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    res = _with_fd7(hostdir, _hoist_argv("run", "-d", "busybox", "sleep", "1000"), hoist.env())
    assert res.returncode == 0, res.stderr
    cid = res.stdout.decode().strip()
    state = state_of(hoist, cid)
    for pid in (state["monitor_pid"], state["pid"]):
        targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert str(hostdir) not in targets, (pid, targets)
    exec_res = _with_fd7(hostdir, _hoist_argv("exec", cid, "sh", "-c", ATTACK_FD), hoist.env())
    print(_text(exec_res))
    assert not (hostdir / "planted").exists()
    assert exec_res.stdout.decode().splitlines()[0].split() == ["0", "1", "2", "3"]


# -- 2. the exec helper -----------------------------------------------------------------------------

def _scan_with_execs(start, exec_once, stop: Path, collect) -> str:
    start()
    for i in range(25):
        exec_once(i)
    stop.touch()
    return collect()


def test_exec_helper_is_unreachable_from_inside(hoist: Hoist, tmp_path: Path, probe_dir: Path,
                                                docker_image: Dockerd | None) -> None:
    """A probe scans /proc in a tight loop while ``hoist exec`` runs again and again with a
    marker in the caller's environment and command line (``-e NAME`` of an unset variable
    passes nothing on); it must never read the marker in any environ or cmdline, nor reach a
    host binary through /proc/PID/exe."""
    marker = "HOISTPROBEMARKER"
    shared = tmp_path / "shared"
    shared.mkdir()
    scan = ["/probe/probe", "scan", marker, "/shared/stop"]
    vols = ["-v", f"{probe_dir}:/probe:ro", "-v", f"{shared}:/shared"]
    env = dict(hoist.env(), HOIST_TEST_SECRET=marker)
    cid = hoist.ok("run", "-d", *vols, "busybox", *scan).strip()

    def exec_once(i: int) -> None:
        res = subprocess.run(_hoist_argv("exec", "-e", f"{marker}_UNSET", cid, "true"), env=env,
                             capture_output=True, timeout=60)
        assert res.returncode == 0, res.stderr

    def hoist_logs() -> str:
        wait_for(lambda: "done" in hoist.ok("logs", cid), "the probe to finish")
        return hoist.ok("logs", cid)

    out = _scan_with_execs(lambda: None, exec_once, shared / "stop", hoist_logs)
    docker_out = "(no docker)"
    if docker_image is not None:
        (shared / "stop").unlink()
        dcid = docker_image("run", "-d", "--network", "none", *vols, DOCKER_REF, *scan).stdout.decode().strip()
        denv = {"HOIST_TEST_SECRET": marker}
        docker_out = _scan_with_execs(
            lambda: None,
            lambda i: docker_image("exec", "-e", f"X={marker}", dcid, "true", marker, env=denv),
            shared / "stop",
            lambda: (docker_image("wait", dcid), _text(docker_image("logs", dcid)))[1])
        docker_image("rm", "-f", dcid, check=False)
    columns("/proc/*/{environ,exe,cmdline} of exec helpers", out, docker_out)
    assert "done" in out
    assert findings(out) == []


def test_exec_helper_has_no_caller_environment(hoist: Hoist) -> None:
    """What the exec'd process itself sees: only the container's environment."""
    cid = hoist.ok("run", "-d", "busybox", "sleep", "1000").strip()
    script = "env; cat /proc/self/status | grep -E 'NoNewPrivs|CapEff'"
    res = subprocess.run(_hoist_argv("exec", cid, "sh", "-c", script),
                         env=dict(hoist.env(), HOIST_TEST_SECRET="leaked"), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode()
    # no_new_privs off: docker's default (issue 14); --security-opt no-new-privileges sets it
    assert "leaked" not in out and "NoNewPrivs:\t0" in out and f"CapEff:\t{DOCKER_CAPS}" in out


# -- 3. the session keyring -------------------------------------------------------------------------

KEYRING_WRAPPER = textwrap.dedent("""
    import ctypes, json, subprocess, sys
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_keyctl, SYS_add_key = {"x86_64": (250, 248), "aarch64": (219, 217)}[__import__("platform").machine()]
    assert libc.syscall(SYS_keyctl, 1, b"hoist-test-session") > 0           # JOIN_SESSION_KEYRING
    assert libc.syscall(SYS_add_key, b"user", b"caller-secret", b"s3cret", 6, -3) > 0
    res = subprocess.run(sys.argv[1:], capture_output=True)
    planted = libc.syscall(SYS_keyctl, 10, -3, b"user", b"from-container", 0)  # SEARCH
    print(json.dumps({"rc": res.returncode, "out": res.stdout.decode() + res.stderr.decode(),
                      "planted": planted > 0}))
""")


def _in_keyring_session(argv: list[str], env: dict[str, str]) -> dict:
    res = subprocess.run([sys.executable, "-c", KEYRING_WRAPPER, *argv], capture_output=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_container_gets_a_fresh_session_keyring(hoist: Hoist, probe_dir: Path,
                                                docker_image: Dockerd | None) -> None:
    probe = ["/probe/probe", "keyring", "caller-secret"]
    run = _in_keyring_session(_hoist_argv("run", "--rm", "-v", f"{probe_dir}:/probe:ro", "busybox", *probe),
                              hoist.env())
    cid = hoist.ok("run", "-d", "-v", f"{probe_dir}:/probe:ro", "busybox", "sleep", "1000").strip()
    exe = _in_keyring_session(_hoist_argv("exec", cid, *probe), hoist.env())
    docker = docker_run(docker_image, DOCKER_REF, *probe, probe=probe_dir)
    columns("the caller's session keyring, from inside", f"run: {run}\nexec: {exe}", docker)
    for result in (run, exe):
        assert result["rc"] == 0 and "done" in result["out"], result
        assert "FOUND" not in result["out"], result
        assert not result["planted"], result


# -- 4. the --init reaper ---------------------------------------------------------------------------

INIT_PROBE = ("tr '\\0' ' ' < /proc/1/cmdline; echo; grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs)' /proc/1/status; "
              "head -c4 /proc/1/environ; head -c4 /proc/1/exe")


@pytest.mark.parametrize("user", ["", "1000"])
def test_init_reaper_runs_as_the_container(hoist: Hoist, user: str, docker_image: Dockerd | None) -> None:
    uflag = ["-u", user] if user else []
    res = hoist("run", "--rm", "--init", *uflag, "-e", "SECRET=hunter2", "busybox", "sh", "-c", INIT_PROBE)
    docker = docker_run(docker_image, "--init", *uflag, "-e", "SECRET=hunter2", DOCKER_REF, "sh", "-c", INIT_PROBE)
    columns(f"--init PID 1 (user {user or 'root'})", _text(res), docker)
    out, err = res.stdout.decode(), res.stderr.decode()
    cmdline = out.splitlines()[0].strip()
    assert cmdline == "hoist-init"
    assert "NoNewPrivs:\t0" in out  # docker's default, as tini under docker has it
    caps = DOCKER_CAPS if not user else "0000000000000000"
    assert f"CapEff:\t{caps}" in out and f"CapBnd:\t{DOCKER_CAPS}" in out
    assert f"Uid:\t{user or 0}\t" in out
    assert "/proc/1/environ: Permission denied" in err and "/proc/1/exe: Permission denied" in err
    assert "hunter2" not in out


# -- 5. user ids ------------------------------------------------------------------------------------

@pytest.mark.parametrize("user", ["4294967295", "99999999999", "1000:4294967295", "0:99999999999999999999",
                                  "9" * 5000])
def test_user_id_out_of_range_is_refused(hoist: Hoist, user: str, docker_image: Dockerd | None) -> None:
    res = hoist("run", "--rm", "-u", user, "busybox", "id")
    docker = docker_run(docker_image, "-u", user, DOCKER_REF, "id")
    columns(f"-u {user[:30]}", _text(res), docker)
    err = res.stderr.decode()
    assert res.returncode == 125 and "out of range" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_image_user_out_of_range_is_refused(hoist: Hoist) -> None:
    busybox_image(hoist.root / "images", "baduid", config={"User": "4294967295"})
    res = hoist("run", "--rm", "baduid", "id")
    assert res.returncode == 125 and "out of range" in res.stderr.decode(), res.stderr
    assert not list((hoist.root / "containers").glob("?" * 64))


def test_exec_user_out_of_range_is_refused(hoist: Hoist) -> None:
    cid = hoist.ok("run", "-d", "busybox", "sleep", "1000").strip()
    res = hoist("exec", "-u", "4294967295", cid, "id")
    assert res.returncode != 0 and "out of range" in res.stderr.decode(), res.stderr
    assert "uid=0" not in res.stdout.decode()


def test_largest_valid_id_is_used_as_given(hoist: Hoist) -> None:
    assert hoist.ok("run", "--rm", "-u", "4294967294:4294967294", "busybox", "sh", "-c", "id -u; id -g").split() == \
        ["4294967294", "4294967294"]


# -- 6. lifecycle against the monitor -------------------------------------------------------------

@pytest.mark.parametrize("init", [False, True])
def test_non_root_container_dies_with_its_monitor(hoist: Hoist, init: bool) -> None:
    cid = hoist.ok("run", "-d", "-u", "1000", *(["--init"] if init else []), "busybox", "sleep", "1000").strip()
    state = state_of(hoist, cid)
    monitor, pid1 = state["monitor_pid"], state["pid"]
    assert alive(pid1)
    os.kill(monitor, signal.SIGKILL)
    wait_for(lambda: not alive(pid1), "the container's PID 1 to die with its monitor")


def test_kill_0_inside_does_not_reach_the_monitor(hoist: Hoist, docker_image: Dockerd | None) -> None:
    script = "kill -9 0; echo survived"
    res = hoist("run", "--rm", "busybox", "sh", "-c", script)
    docker = docker_run(docker_image, DOCKER_REF, "sh", "-c", script)
    columns("kill -9 0 inside", _text(res), docker)
    assert res.returncode == 0 and res.stdout.decode().strip() == "survived", _text(res)
    cid = hoist.ok("run", "-d", "busybox", "sh", "-c", "kill -9 0; sleep 1000").strip()
    # The exec'd process too: in the caller's process group it would kill the caller (run in a
    # session of its own here, so that an unfixed hoist cannot take pytest with it).
    res = subprocess.run(_hoist_argv("exec", cid, "sh", "-c", "kill -9 0; echo still"), env=hoist.env(),
                         capture_output=True, timeout=60, start_new_session=True)
    assert res.returncode == 137, _text(res)  # the exec'd shell killed itself, nothing else
    state = state_of(hoist, cid)
    assert state["status"] == "running" and alive(state["monitor_pid"]) and alive(state["pid"])


def test_many_concurrent_run_rm(hoist: Hoist) -> None:
    """Each run's name check lists containers while others are being removed."""
    def one(_: int) -> subprocess.CompletedProcess:
        return hoist("run", "--rm", "busybox", "true", timeout=300)

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(one, range(80)))
    failed = [_text(r) for r in results if r.returncode != 0]
    assert failed == []
    assert not list((hoist.root / "containers").glob("?" * 64))


def test_listing_skips_a_container_being_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race itself, made certain: a container removed by another process just before its
    config is read (whatever was checked before) is skipped, not an error."""
    from runtime.containers import Container, ContainerStore
    from runtime.spec import ContainerSpec

    store = ContainerStore(tmp_path / "containers")
    for i in range(3):
        store.reserve(ContainerSpec(id=f"{i:064x}", name=f"c{i}", image="i", image_id="d", argv=["true"], env=[]))
    doomed = store.root / f"{1:064x}"
    real_read_text = Path.read_text

    def removed_just_before(path: Path, *args, **kwargs) -> str:
        if path == doomed / "config.json":
            Container(doomed).destroy()
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", removed_just_before)
    names = [c.name for c in store.all()]
    monkeypatch.undo()
    assert sorted(names) == ["c0", "c2"]
    store.reserve(ContainerSpec(id=f"{9:064x}", name="c1", image="i", image_id="d", argv=["true"], env=[]))


# -- 7. --env-file ----------------------------------------------------------------------------------

def test_env_file_with_invalid_utf8(hoist: Hoist, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_bytes(b"A=ok\nB=\xff\xfe\n")
    res = hoist("run", "--rm", "--env-file", str(env_file), "busybox", "true")
    err = res.stderr.decode()
    assert res.returncode == 125 and "not valid UTF-8" in err and str(env_file) in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_nothing_runs_when_the_monitor_cannot_place_it_in_its_cgroups(hoist: Hoist) -> None:
    """The monitor moves PID 1 into the container's cgroups while PID 1 builds the root; if the
    move fails, the command must not run (its device rules and limits would not hold)."""
    from runtime import cgroups
    from runtime.lifecycle import RunOptions, Runtime

    container = Runtime(hoist.root).create(RunOptions(image="busybox", args=["echo", "it ran"], remove=True))
    config = container.path / "config.json"
    doc = json.loads(config.read_text())
    real = list(doc["cgroups"])
    assert real, "every container gets at least its device cgroup"
    doc["cgroups"] = [str(Path(real[0]).parent / "not-a-cgroup-of-hoist")]
    config.write_text(json.dumps(doc))
    try:
        res = subprocess.run([sys.executable, "-m", "runtime.init", str(container.path)], env=hoist.env(),
                             capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        cgroups.remove(real)
    assert res.returncode == 125, res
    assert b"it ran" not in res.stdout
    assert b"cgroup.procs" in res.stderr, res.stderr
    assert not container.path.exists()
