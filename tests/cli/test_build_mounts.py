"""``RUN --mount`` types and their lifetimes, through real ``hoist build`` processes FROM a
busybox-static base: tmpfs, cache (keying, uid/gid/mode, ``from``, the three sharing modes
across two concurrent builds), ssh (an agent socket and key files, through OpenSSH's agent),
and the folders a SIGKILLed build leaves behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from builder.cachemounts import CacheMounts
from runtime.containers import process_start_time
from tests.cli.helpers import REPO_ROOT, Hoist
from tests.peers import need_tool

WAIT = 60      # seconds a handshake may take before the test gives up (never asserted on)


def _ctx(tmp_path: Path, dockerfile: str, name: str = "ctx", files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / name
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for rel, text in (files or {}).items():
        (ctx / rel).write_text(text)
    return ctx


def _start(h: Hoist, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hoist.cli", "build", "--progress", "plain", *args],
                            env=h.env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(what: str, check: Callable[[], object], proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the build ended while waiting for {what}:\n{proc.communicate()[1]}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def _lines_until(proc: subprocess.Popen[str], text: str) -> list[str]:
    """stderr lines of ``proc`` up to (and with) the first holding ``text``."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            return seen
    pytest.fail(f"{text!r} never came; stderr was:\n{''.join(seen)}")


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err
    return out, err


def _instance(h: Hoist, cache_id: str, n: int = 0, origin: str = "") -> Path:
    return CacheMounts(h.root / "cache" / "cachemounts").key_dir(cache_id, origin) / str(n)


# -- tmpfs ------------------------------------------------------------------------------------------

def test_tmpfs_is_fresh_bounded_and_never_in_the_layer(h: Hoist, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, """\
FROM busybox
RUN --mount=type=tmpfs,target=/scratch,size=1m \\
    grep ' /scratch ' /proc/mounts > /seen; ls -A /scratch >> /seen; echo x > /scratch/f; \\
    dd if=/dev/zero of=/scratch/big bs=1024 count=2048 2>/dev/null || echo full >> /seen
RUN --mount=type=tmpfs,target=/scratch ls -A /scratch >> /seen; echo second >> /seen
""")
    h("build", "-t", "tm:1", str(ctx))
    seen = h("run", "--rm", "tm:1", "cat", "/seen").out.splitlines()
    fields = seen[0].split()
    assert fields[:3] == ["tmpfs", "/scratch", "tmpfs"]
    options = fields[3].split(",")
    assert "nosuid" in options and "nodev" in options and "size=1024k" in options
    assert seen[1:] == ["full", "second"]           # empty each time, bounded by size=1m
    assert h("run", "--rm", "tm:1", "ls", "-A", "/").out.split().count("scratch") == 0


def test_tmpfs_bad_and_oversized_sizes(h: Hoist, tmp_path: Path) -> None:
    bad = _ctx(tmp_path, "FROM busybox\nRUN --mount=type=tmpfs,target=/t,size=lots true\n", name="bad")
    r = h("build", str(bad), ok=False)
    assert r.code == 1 and "Dockerfile:2: invalid value for size: lots" in r.err
    big = _ctx(tmp_path, "FROM busybox\nRUN --mount=type=tmpfs,target=/t,size=2m true\n", name="big")
    h.env["HOIST_BUILD_TMPFS_MAX"] = "1m"
    r = h("build", "-t", "big:1", str(big), ok=False)
    assert r.code == 1 and "size 2m is over the bound of 1048576 bytes (HOIST_BUILD_TMPFS_MAX)" in r.err
    assert "big" not in h("images").out
    h.env["HOIST_BUILD_TMPFS_MAX"] = "lots"
    r = h("build", str(big), ok=False)
    assert r.code != 0 and "invalid HOIST_BUILD_TMPFS_MAX 'lots' (use e.g. 512m or 2g)" in r.err
    h.env["HOIST_BUILD_TMPFS_MAX"] = "1m"
    # Without a size the bound is the size.
    ctx = _ctx(tmp_path, "FROM busybox\nRUN --mount=type=tmpfs,target=/t grep ' /t ' /proc/mounts > /m\n")
    h("build", "-t", "dflt:1", str(ctx))
    assert "size=1024k" in h("run", "--rm", "dflt:1", "cat", "/m").out


def test_mount_targets_stay_inside_the_step_root(h: Hoist, tmp_path: Path) -> None:
    """A target with ``..`` is cleaned inside the root; a symlink in the image resolves inside it:
    neither reaches the host path it names."""
    outside = tmp_path / "outside"
    outside.mkdir()
    ctx = _ctx(tmp_path, f"""\
FROM busybox
RUN mkdir -p {outside} && ln -s {outside} /esc && ln -s ../../../../../../{outside} /esc2
RUN --mount=type=tmpfs,target=/esc/t --mount=type=cache,target=/esc2/c,id=esc \\
    --mount=type=cache,target=../../../../{outside}/dots,id=dots \\
    --mount=type=cache,target=/byid,id=../../../../../..{outside} \\
    echo t > /esc/t/f && echo c > /esc2/c/f && echo d > {outside}/dots/f && echo i > /byid/f && \\
    grep -c ' {outside}/' /proc/mounts > /count
""")
    h("build", "-t", "esc:1", str(ctx))
    assert list(outside.iterdir()) == []              # the host's directory saw nothing
    assert h("run", "--rm", "esc:1", "cat", "/count").out.strip() == "3"
    assert (_instance(h, f"../../../../../..{outside}") / "f").read_text() == "i\n"     # an id is only a name
    assert (_instance(h, "esc") / "f").read_text() == "c\n"
    assert (_instance(h, "dots") / "f").read_text() == "d\n"
    r = h("build", str(_ctx(tmp_path, "FROM busybox\nRUN --mount=type=tmpfs,target=/proc/x true\n", name="p")),
          ok=False)
    assert r.code == 1 and "mounting into /proc is not allowed" in r.err


# -- cache ------------------------------------------------------------------------------------------

def test_cache_keyed_by_id_and_origin_with_owner_and_mode(h: Hoist, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, """\
FROM busybox AS seed
RUN mkdir -p /seed/sub && echo seeded > /seed/sub/s
FROM busybox
RUN --mount=type=cache,target=/a,id=shared-id echo one > /a/f
RUN --mount=type=cache,target=/b,id=shared-id cat /b/f > /out
RUN --mount=type=cache,target=/p,id=shared-id,uid=1000,gid=50,mode=0770 \\
    stat -c '%u %g %a' /p >> /out; ls /p | wc -l >> /out
RUN --mount=type=cache,target=/s,from=seed,source=/seed cat /s/sub/s >> /out
RUN --mount=type=cache,target=/var/cache/x echo by-target > /var/cache/x/t
RUN --mount=type=cache,target=/l1,id=twice,sharing=locked --mount=type=cache,target=/l2,id=twice,sharing=locked \
    echo same > /l1/f && cat /l2/f >> /out
""")
    h("build", "-t", "ck:1", str(ctx))
    assert h("run", "--rm", "ck:1", "cat", "/out").out.split("\n") == ["one", "1000 50 770", "0", "seeded", "same", ""]
    assert (_instance(h, "/var/cache/x") / "t").read_text() == "by-target\n"    # id defaults to the target
    assert (_instance(h, "shared-id") / "f").read_text() == "one\n"
    assert not h("run", "--rm", "ck:1", "ls", "/a", "/b", "/p", "/s", ok=False).out.strip()  # none in the image


def _gate(name: str, body: str, sharing: str) -> str:
    """A RUN that marks it has entered its cache mount, waits for the test's go, then writes."""
    return f"""\
FROM busybox
RUN --mount=type=cache,id=gate,target=/c,sharing={sharing} \\
    touch /c/{name}-in; while [ ! -e /c/go-{name} ]; do sleep 0.05; done; {body}
"""


@pytest.fixture
def release(h: Hoist) -> Iterator[list[Path]]:
    """Files created at teardown, so that a failing test does not leave a step waiting."""
    files: list[Path] = []
    yield files
    for path in files:
        if path.parent.is_dir():
            path.touch()


def test_locked_cache_has_one_user_at_a_time_across_builds(h: Hoist, tmp_path: Path, release: list[Path]) -> None:
    one = _start(h, "-t", "l:1", str(_ctx(tmp_path, _gate("A", "echo A >> /c/log", "locked"), name="a")))
    instance = _instance(h, "gate")
    release.append(instance / "go-A")
    _wait_for("build A inside its locked cache", lambda: (instance / "A-in").exists(), one)
    two = _start(h, "-t", "l:2", str(_ctx(tmp_path, "FROM busybox\nRUN --mount=type=cache,id=gate,target=/c,"
                                                "sharing=locked echo B >> /c/log; ls /c > /c/B-saw\n", name="b")))
    _lines_until(two, "waiting for the locked cache mount 'gate'")
    assert not (instance / "B-saw").exists()         # B waits while A holds the lock...
    (instance / "go-A").touch()
    _finish(one)
    _finish(two)                                     # ...and then runs, in the same instance
    assert (instance / "log").read_text() == "A\nB\n"
    assert not instance.with_name("1").exists()


def test_shared_cache_is_used_concurrently(h: Hoist, tmp_path: Path, release: list[Path]) -> None:
    one = _start(h, "-t", "s:1", str(_ctx(tmp_path, _gate("A", "echo A >> /c/log", "shared"), name="a")))
    instance = _instance(h, "gate")
    release.append(instance / "go-A")
    _wait_for("build A inside its shared cache", lambda: (instance / "A-in").exists(), one)
    two = _start(h, "-t", "s:2", str(_ctx(tmp_path, "FROM busybox\nRUN --mount=type=cache,id=gate,target=/c "
                                                "echo B >> /c/log\n", name="b")))
    _finish(two)                                     # B ran to the end while A still holds the cache
    assert (instance / "log").read_text() == "B\n"
    (instance / "go-A").touch()
    _finish(one)
    assert (instance / "log").read_text() == "B\nA\n"


def test_private_cache_gives_a_concurrent_user_a_fresh_instance(h: Hoist, tmp_path: Path,
                                                                release: list[Path]) -> None:
    one = _start(h, "-t", "p:1", str(_ctx(tmp_path, _gate("A", "echo A >> /c/log", "private"), name="a")))
    first = _instance(h, "gate")
    release.append(first / "go-A")
    _wait_for("build A inside its private cache", lambda: (first / "A-in").exists(), one)
    private_b = "FROM busybox\nRUN --mount=type=cache,id=gate,target=/c,sharing=private ls -A /c > /B && mv /B /c/B-saw\n"
    _finish(_start(h, "-t", "p:2", str(_ctx(tmp_path, private_b, name="b"))))
    second = _instance(h, "gate", 1)
    assert (second / "B-saw").read_text() == ""      # a new, empty instance: A's was in use
    (first / "go-A").touch()
    _finish(one)
    # Free again: the next private user takes an existing instance, no third one is made.
    _finish(_start(h, "-t", "p:3", str(_ctx(tmp_path, private_b.replace("B-saw", "C-saw"), name="c"))))
    assert not _instance(h, "gate", 2).exists()
    assert (first / "C-saw").exists() or (second / "C-saw").exists()


# -- ssh --------------------------------------------------------------------------------------------

@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real OpenSSH agent holding a fresh ed25519 key: (its socket, the key file)."""
    for tool in ("ssh-agent", "ssh-add", "ssh-keygen"):
        need_tool(tool, "openssh-client")
    sock = tmp_path / "agent.sock"
    key = tmp_path / "id_test"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hoist-test-key", "-f", str(key)],
                   check=True)
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        _wait_for("ssh-agent", sock.exists)
        subprocess.run(["ssh-add", "-q", str(key)], env=dict(os.environ, SSH_AUTH_SOCK=str(sock)), check=True)
        yield str(sock), key
    finally:
        proc.kill()
        proc.wait()


def _listed_through_relay(h: Hoist) -> str:
    """``ssh-add -l`` through each relay socket the running build made (the very socket the step
    has bound at its target)."""
    socks: list[Path] = []
    _wait_for("the relay socket", lambda: socks.extend((h.root / "build" / "scratch").glob("*/relay.sock"))
              or socks)
    # Relative to its folder: the absolute path is longer than a socket address may be.
    return "".join(subprocess.run(["ssh-add", "-l"], env=dict(os.environ, SSH_AUTH_SOCK=s.name), cwd=s.parent,
                                  capture_output=True, text=True, timeout=30).stdout for s in socks)


SSH_STEP = """\
FROM busybox
RUN --mount=type=cache,id=gate,target=/c --mount=type=ssh{opts} \\
    stat -c '%F %a %u' "$SSH_AUTH_SOCK" > /c/seen; echo "$SSH_AUTH_SOCK" >> /c/seen; \\
    touch /c/in; while [ ! -e /c/go ]; do sleep 0.05; done
"""


@pytest.mark.parametrize("how", ["socket", "keys"])
def test_ssh_agent_forwarded_into_the_step(h: Hoist, tmp_path: Path, agent: tuple[str, Path], how: str,
                                           release: list[Path]) -> None:
    sock, key = agent
    flag = "default" if how == "socket" else f"default={key}"
    h.env["SSH_AUTH_SOCK"] = sock
    opts = "" if how == "socket" else ",uid=1000,mode=0660"
    proc = _start(h, "-t", f"ssh:{how}", "--ssh", flag, str(_ctx(tmp_path, SSH_STEP.format(opts=opts))))
    gate = _instance(h, "gate")
    release.append(gate / "go")
    _wait_for("the ssh step", lambda: (gate / "in").exists(), proc)
    assert "hoist-test-key" in _listed_through_relay(h)
    (gate / "go").touch()
    _finish(proc)
    kind, mode, uid = (gate / "seen").read_text().splitlines()[0].rsplit(" ", 2)
    assert kind == "socket" and (mode, uid) == (("600", "0") if how == "socket" else ("660", "1000"))
    assert (gate / "seen").read_text().splitlines()[1] == "/run/buildkit/ssh_agent.0"
    assert "run" not in h("run", "--rm", f"ssh:{how}", "ls", "/").out.split()    # nothing in the layer
    # Neither the socket's path nor the agent is in the key: another agent, the same step.
    h.env["SSH_AUTH_SOCK"] = "/nonexistent"
    again = _start(h, "-t", f"ssh2:{how}", "--ssh", f"default={sock}", str(_ctx(tmp_path, SSH_STEP.format(opts=opts))))
    assert "CACHED" in _finish(again)[1]


def test_ssh_required_without_ssh_fails_clearly(h: Hoist, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nRUN --mount=type=ssh,required=true echo ran-$((6*7))-ran\n")
    r = h("build", "-t", "req:1", str(ctx), ok=False)
    assert r.code == 1 and 'Dockerfile:2: no SSH key "default" forwarded from the client' in r.err
    assert "ran-42-ran" not in r.err and "req" not in h("images").out        # nothing ran, nothing tagged
    # Optional (the default): the step runs without the mount; SSH_AUTH_SOCK is named anyway.
    ctx = _ctx(tmp_path, "FROM busybox\nRUN --mount=type=ssh,id=other echo \"$SSH_AUTH_SOCK\" > /s; "
               "[ -e /run/buildkit/ssh_agent.0 ] || echo absent >> /s\n", name="opt")
    h("build", "-t", "opt:1", str(ctx))
    assert h("run", "--rm", "opt:1", "cat", "/s").out == "/run/buildkit/ssh_agent.0\nabsent\n"
    h.env.pop("SSH_AUTH_SOCK", None)
    r = h("build", "--ssh", "default", str(ctx), ok=False)
    assert r.code != 0 and "invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set" in r.err
    r = h("build", "--ssh", f"k={tmp_path / 'missing'}", str(ctx), ok=False)
    assert r.code != 0 and "no such file or socket" in r.err


def test_ssh_key_with_a_passphrase_is_refused(h: Hoist, tmp_path: Path) -> None:
    need_tool("ssh-keygen", "openssh-client")
    key = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(key)], check=True)
    ctx = _ctx(tmp_path, "FROM busybox\nRUN --mount=type=ssh,id=git echo ran-$((6*7))-ran\n")
    r = h("build", "-t", "pp:1", "--ssh", f"git={key}", str(ctx), ok=False)
    assert r.code == 1 and f"Dockerfile:2: --ssh: cannot load key {key}" in r.err
    assert "ran-42-ran" not in r.err and "pp" not in h("images").out
    assert not [p for p in (h.root / "build" / "scratch").iterdir()]        # nothing left behind


# -- what a killed build leaves ---------------------------------------------------------------------

def _step_processes(steps: Path) -> list[tuple[int, int | None]]:
    """(pid, start time) of every monitor and PID 1 the step folders under ``steps`` record."""
    found = []
    for state in steps.glob("*/state.json"):
        doc = json.loads(state.read_text())
        for pid_key in ("monitor_pid", "pid"):
            if doc.get(pid_key):
                found.append((int(doc[pid_key]), process_start_time(int(doc[pid_key]))))
    return found


def _alive(processes: list[tuple[int, int | None]]) -> bool:
    return any(start is not None and process_start_time(pid) == start for pid, start in processes)


@pytest.fixture
def builds() -> Iterator[list[subprocess.Popen[str]]]:
    """Builds a test started: killed at teardown if it failed half-way."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sigkilled_build_folders_removed_by_the_next_build_not_a_running_ones(
        h: Hoist, tmp_path: Path, release: list[Path], builds: list[subprocess.Popen[str]]) -> None:
    steps, scratch = h.root / "build" / "steps", h.root / "build" / "scratch"

    def folders() -> set[Path]:
        return {p for d in (steps, scratch) if d.is_dir() for p in d.iterdir() if not p.name.startswith(".")}

    killed = _start(h, "-t", "k:1", str(_ctx(tmp_path, "FROM busybox\nRUN --mount=type=bind,target=/src,rw "
                                                     "echo started-$((1+1)); sleep 600\n", name="k", files={"a": "a"})))
    builds.append(killed)
    _lines_until(killed, " started-2")          # its output, not its title
    left = folders()
    assert {p.parent for p in left} == {steps, scratch}          # its overlay dirs and its rw-bind copy
    # The monitor records both pids once the container runs (it may print before that).
    _wait_for("the step's recorded pids", lambda: len(_step_processes(steps)) == 2, killed)
    step = _step_processes(steps)
    assert _alive(step)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    _wait_for("the killed build's step to die with it", lambda: not _alive(step))
    assert folders() == left                                      # nothing removed them yet

    running = _start(h, "-t", "r:1", str(_ctx(tmp_path, _gate("R", "true", "shared"), name="r")))
    builds.append(running)
    gate = _instance(h, "gate")
    release.append(gate / "go-R")
    _wait_for("the running build's step", lambda: (gate / "R-in").exists(), running)
    theirs = folders() - left
    assert theirs

    h("build", "-t", "n:1", str(_ctx(tmp_path, "FROM busybox\nRUN echo next\n", name="n")))
    assert folders() == theirs                     # the dead build's are gone, the live one's kept
    (gate / "go-R").touch()
    _finish(running)
    assert folders() == set()
    assert [p.name for p in (h.root / "build" / "owners").iterdir()] == []
