"""``run -a STREAM``, ``--sig-proxy`` (run, attach) and ``start -a``'s proxy, with real containers:
only the attached streams are shown while the log keeps them all; the signals hoist gets reach
the container's PID 1 (its trap writes what it got), or, with ``--sig-proxy=false``, end hoist
(SIGTERM) or are ignored by it (SIGUSR1) as they do docker's client, the container living on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import REPO_ROOT, Hoist, one_line
from tests.images import busybox_image
from tests.peers import Dockerd

# PID 1 traps TERM (exit 7) and USR1, says so on stdout, and says "ready" once the traps are set.
TRAPS = ('trap "echo got-TERM; exit 7" TERM; trap "echo got-USR1" USR1; echo ready; '
         'while :; do sleep 0.05; done')


@pytest.fixture
def h(containers: Hoist) -> Iterator[Hoist]:
    busybox_image(containers.layout())
    yield containers


def _spawn(h: Hoist, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "hoist.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=h.env, cwd=REPO_ROOT)


def _ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == b"ready\n", (line, proc.stderr.read() if proc.stderr else b"")


def _names(h: Hoist) -> list[str]:
    return h("ps", "-a", "--format", "{{.Names}}").out.split()


def test_attached_streams(h: Hoist) -> None:
    cmd = ("busybox", "sh", "-c", "echo to-out; echo to-err >&2; exit 3")
    res = h("run", "--name", "o", "-a", "stdout", *cmd, ok=False)
    assert (res.code, res.out, res.err) == (3, "to-out\n", "")
    res = h("run", "--name", "e", "-a", "STDERR", *cmd, ok=False)          # case-insensitive, as docker
    assert (res.code, res.out, res.err) == (3, "", "to-err\n")
    res = h("run", "-a", "Stdout", "-a", "stderr", "--rm", *cmd, ok=False)
    assert (res.code, res.out, res.err) == (3, "to-out\n", "to-err\n")
    for name in ("o", "e"):                                                # the log has both streams
        logs = h("logs", name)
        assert (logs.out, logs.err) == ("to-out\n", "to-err\n")
    assert sorted(_names(h)) == ["e", "o"]                                 # --rm removed its own
    res = h("run", "--log-driver", "none", "-a", "stderr", "--rm", *cmd, ok=False)   # no log: direct
    assert (res.code, res.out, res.err) == (3, "", "to-err\n")
    # A restart policy: the first run's attached stream, its code; the restarts go on behind.
    res = h("run", "--name", "r", "--restart", "on-failure:1", "-a", "stdout", *cmd, ok=False)
    assert (res.code, res.out, res.err) == (3, "to-out\n", "")
    # Neither output attached: the id is printed, the container reads the caller's stdin (-i).
    res = h("run", "-a", "stdin", "-i", "busybox", "cat", stdin="fed through\n")
    cid = res.out.strip()
    assert len(cid) == 64, res
    assert h("wait", cid).out == "0\n"
    assert h("logs", cid).out == "fed through\n"


def test_bad_attach_options(h: Hoist) -> None:
    res = h("run", "-a", "stdinfo", "busybox", "true", ok=False)
    one_line(res, 'invalid argument "stdinfo" for "-a, --attach" flag: valid streams are STDIN, STDOUT and STDERR')
    assert res.code == 125
    res = h("run", "-d", "-a", "stdout", "busybox", "true", ok=False)
    one_line(res, "Conflicting options: -a and -d")
    assert res.code == 1
    res = h("run", "--sig-proxy=maybe", "busybox", "true", ok=False)       # pflag takes a value only after =
    assert res.code == 2 and "--sig-proxy" in res.err and "Traceback" not in res.err
    assert _names(h) == []                                                 # nothing was created


@pytest.mark.parametrize("attach", [(), ("-a", "stdout")], ids=["direct", "logged"])
def test_signals_reach_the_container(h: Hoist, attach: tuple[str, ...], tmp_path: Path) -> None:
    # USR1's trap also leaves a file in a bind mount: TERM is sent once USR1 was handled.
    traps = TRAPS.replace('echo got-USR1"', 'echo got-USR1; touch /v/usr1"')
    proc = _spawn(h, "run", "--name", "sig", "-v", f"{tmp_path}:/v", *attach, "busybox", "sh", "-c", traps)
    _ready(proc)
    os.kill(proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not (tmp_path / "usr1").exists():
        assert time.monotonic() < deadline, "the container never got SIGUSR1"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (7, b"got-USR1\ngot-TERM\n", b"")


def test_sig_proxy_false(h: Hoist) -> None:
    proc = _spawn(h, "run", "--name", "np", "--sig-proxy=false", "busybox", "sh", "-c", TRAPS)
    _ready(proc)
    os.kill(proc.pid, signal.SIGUSR1)            # ignored by hoist, as by docker's client
    time.sleep(0.3)
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGTERM)            # ends hoist, not the container
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGTERM
    assert h("inspect", "--format", "{{.State.Status}}", "np").out == "running\n"
    assert h("logs", "np").out == "ready\n"      # the container never got either signal
    h("kill", "np")
    # What hoist ignores meanwhile is not ignored in the container (an ignored signal stays
    # ignored through exec).
    plain = h("run", "--rm", "busybox", "grep", "SigIgn", "/proc/self/status").out
    assert plain == h("run", "--rm", "--sig-proxy=false", "busybox", "grep", "SigIgn", "/proc/self/status").out
    assert plain == h("run", "--rm", "-a", "stdout", "busybox", "grep", "SigIgn", "/proc/self/status").out


def _attached(proc: subprocess.Popen[bytes]) -> None:
    """Once attach shows a tick it follows the output, its signal handling in place."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == b"tick\n", (line, proc.stderr.read() if proc.stderr else b"")


def test_start_and_attach_proxy(h: Hoist) -> None:
    ticking = TRAPS.replace("do sleep", "do echo tick; sleep")
    h("run", "-d", "--name", "bg", "busybox", "sh", "-c", ticking)
    # attach without a TTY: the output from now on; SIGTERM to hoist reaches PID 1.
    proc = _spawn(h, "attach", "bg")
    _attached(proc)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 7 and out.endswith(b"got-TERM\n") and b"ready" not in out
    # start -a: the container's output again, the signal proxied again (docker: always without -t).
    proc = _spawn(h, "start", "-a", "bg")
    _ready(proc)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 7 and out.endswith(b"got-TERM\n")
    # attach --sig-proxy=false: SIGTERM ends only hoist.
    h("start", "bg")
    proc = _spawn(h, "attach", "--sig-proxy=false", "bg")
    _attached(proc)
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGTERM
    assert h("inspect", "--format", "{{.State.Status}}", "bg").out == "running\n"
    h("kill", "bg")


def test_attach_refusals(h: Hoist) -> None:
    one_line(h("attach", "nosuch", ok=False), "nosuch")
    h("run", "--name", "done", "busybox", "true")
    one_line(h("attach", "done", ok=False), "is not running")
    # A container that writes to the terminal of the `hoist run` that started it has no log.
    proc = _spawn(h, "run", "--name", "fg", "busybox", "sh", "-c", TRAPS)
    _ready(proc)
    one_line(h("attach", "fg", ok=False), "keeps no log to attach to")
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 7


def _both_signalled(argv: list[str], env: dict[str, str], sig: int) -> tuple[int, bytes]:
    """Run a CLI (hoist's or docker's), SIGTERM it once PID 1 said ready: (its exit, its output)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env, cwd=REPO_ROOT)
    _ready(proc)
    os.kill(proc.pid, sig)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


def test_same_as_docker(h: Hoist, dockerd: Dockerd, tmp_path: Path) -> None:
    """The same flags to hoist and to the session's private dockerd, the same outcome."""
    archive = tmp_path / "box.tar"
    h("save", "-o", str(archive), "busybox")
    dockerd("load", "-i", str(archive))
    docker_env = dict(os.environ, DOCKER_HOST=f"unix://{dockerd.socket}",
                      DOCKER_CONFIG=str(dockerd.base / "client-config"))
    cmd = ["busybox", "sh", "-c", "echo to-out; echo to-err >&2; exit 3"]
    try:
        for flags in (["-a", "stdout"], ["-a", "STDERR"], ["-a", "stdout", "-a", "Stderr"]):
            ours = h("run", "--rm", *flags, *cmd, ok=False)
            theirs = dockerd("run", "--rm", *flags, *cmd, check=False)
            assert (ours.code, ours.out, ours.err) == (theirs.returncode, theirs.stdout.decode(),
                                                       theirs.stderr.decode()), flags
        for flags, words in ((["-a", "stdinfo"], 'valid streams are STDIN, STDOUT and STDERR'),
                             (["-d", "-a", "stdout"], "Conflicting options: -a and -d")):
            ours = h("run", *flags, "busybox", "true", ok=False)
            theirs = dockerd("run", *flags, "busybox", "true", check=False)
            assert ours.code == theirs.returncode and words in ours.err and words in theirs.stderr.decode()
        for proxy, sig in (([], signal.SIGTERM), (["--sig-proxy=false"], signal.SIGTERM),
                           (["--sig-proxy=false"], signal.SIGINT)):
            name = f"sp{len(proxy)}{sig}"
            ours_code, ours_out = _both_signalled(
                [sys.executable, "-m", "hoist.cli", "run", "--name", name, *proxy, "busybox", "sh", "-c", TRAPS],
                h.env, sig)
            theirs_code, theirs_out = _both_signalled(
                [dockerd.docker, "run", "--name", name, *proxy, "busybox", "sh", "-c", TRAPS], docker_env, sig)
            assert (ours_code, ours_out) == (theirs_code, theirs_out), (proxy, sig)
            ours_state = h("inspect", "--format", "{{.State.Status}}", name).out
            theirs_state = dockerd("inspect", "--format", "{{.State.Status}}", name).stdout.decode()
            assert ours_state == theirs_state, (proxy, sig)
            h("rm", "-f", name)
            dockerd("rm", "-f", name)
    finally:
        dockerd("rmi", "-f", "busybox", check=False)
