"""The per-container monitor and the container's first process.

``python -m runtime.init CONTAINER_DIR [READY_FD]`` is started fresh for every container (never
forked from a possibly threaded caller). It is the *monitor*: it unshares a PID namespace, forks
the container init (PID 1 inside), forwards signals to it, records the exit code in the state
file and removes the container when asked (``--rm``). The child unshares mount, UTS, IPC and
(unless ``--network host``) network namespaces, builds the root (overlay, /proc, /dev, /sys,
/etc files, volumes), pivots into it, becomes the user with docker's capabilities and
no_new_privs, and execs the command, so PID 1 is the command itself (or, with ``--init``, a
small reaper that forwards signals to it).

The child reports a failure before exec on a pipe that closes on exec: the monitor reads
nothing when the command started, or ``{"code": N, "message": ...}`` when it did not (125 for
a hoist error, 126 when the command cannot be invoked, 127 when it is not found, as docker).
Every module it needs is imported up front: after pivot_root the host's Python is gone.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runtime import caps, cgroups, linux, logfile, mounts, restart, seccomp, users, volumes
from runtime.containers import Container, boot_id, process_start_time
from runtime.errors import RuntimeFailure
from runtime.linux import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY
from runtime.snapshots import RootfsPlan
from runtime.spec import ContainerSpec, exit_code_of

if TYPE_CHECKING:
    from runtime import health, tty

FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM)


_RLIMITS = {"as": resource.RLIMIT_AS, "core": resource.RLIMIT_CORE, "cpu": resource.RLIMIT_CPU,
            "data": resource.RLIMIT_DATA, "fsize": resource.RLIMIT_FSIZE,
            "locks": getattr(resource, "RLIMIT_LOCKS", 10),
            "memlock": resource.RLIMIT_MEMLOCK, "msgqueue": resource.RLIMIT_MSGQUEUE,
            "nice": resource.RLIMIT_NICE, "nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC,
            "rss": resource.RLIMIT_RSS, "rtprio": resource.RLIMIT_RTPRIO, "rttime": resource.RLIMIT_RTTIME,
            "sigpending": resource.RLIMIT_SIGPENDING, "stack": resource.RLIMIT_STACK}


class StartFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# -- the container side (PID 1) -----------------------------------------------------------------

def _setup_root(spec: ContainerSpec, cdir: Path, cgroup_fd: int | None = None) -> str:
    root = str(cdir / "rootfs")
    plan = RootfsPlan.from_json(spec.rootfs)
    mounts.make_private()
    if plan.kind == "overlay":
        mounts.mount_overlay(root, plan.cwd, plan.options)
    else:
        mounts.mount_rootfs_copy(root, plan.copy)
    mounts.check_special_dirs(root)
    mounts.mount_proc(root)
    mounts.mount_dev(root)
    _dev_options(root, spec)
    # The cgroup view comes last: it needs the cgroup namespace, which needs this process in its
    # cgroups, which the monitor is seeing to meanwhile (``_await_cgroups``).
    view = mounts.mount_sys(root, spec.network != "host", with_cgroups=False)
    if not spec.privileged:  # --privileged: /proc unmasked, as docker
        mounts.mask_paths(root)
    for vol in spec.volumes:
        if vol.populate:  # a new volume gets what the image has there (docker's copy), before
            volumes.populate(root, vol.target, vol.source)  # the /etc files' mount points exist
    for name in ("hosts", "hostname", "resolv.conf"):
        mounts.bind_into(root, str(cdir / name), f"/etc/{name}", MS_NODEV | MS_NOSUID | MS_NOEXEC)
    for vol in spec.volumes:
        flags = MS_NODEV | MS_NOSUID | (MS_RDONLY if vol.readonly else 0) | (MS_NOEXEC if vol.noexec else 0)
        if vol.tmpfs is not None:
            mounts.tmpfs_into(root, vol.target, flags, vol.tmpfs)
        else:
            mounts.bind_into(root, vol.source, vol.target, flags)
    if cgroup_fd is not None:
        # Before the cgroup namespace: its root is the cgroup this process is in, and that must
        # be the container's own.
        _await_cgroups(cgroup_fd)
    if view is not None:
        mounts.mount_cgroups(view)
    if spec.read_only:
        volumes.make_root_readonly(root)
    return root


def _permitted(last_cap: int) -> set[int]:
    """The capabilities in this process's bounding set (what root here can hold), asked with
    prctl: the exec helper has no /proc/self in the container's /proc."""
    return {cap for cap in range(last_cap + 1) if linux.prctl(_PR_CAPBSET_READ, cap) == 1}


_PR_CAPBSET_READ = 23


def _dev_options(root: str, spec: ContainerSpec) -> None:
    """--shm-size (a remount of /dev/shm) and --device (each host node bound on its target: a
    bind keeps the node usable on the nodev /dev, and the device cgroup allows it)."""
    if spec.shm_size:
        linux.mount(None, os.path.join(root, "dev/shm"), None,
                    linux.MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={spec.shm_size}")
    for dev in spec.devices:
        mounts.bind_into(root, dev["host"], dev["target"], MS_NOSUID | MS_NOEXEC)


def become_user(spec_user: str, env: list[str], cwd: str, last_cap: int,
                monitor_fd: int | None = None, spec: ContainerSpec | None = None) -> tuple[list[str], users.ExecUser]:
    """Inside the container's root: resolve the user in its /etc files, add HOME, create and
    enter the workdir, keep docker's capabilities only, set no_new_privs, switch ids.
    ``monitor_fd`` (PID 1 only) is the read end of a pipe whose write end only the monitor
    holds: changing ids clears PDEATHSIG, so it is set again and the pipe tells whether the
    monitor died in between. Raises StartFailure (125) when the user or the workdir is unusable."""
    try:
        user = users.resolve_user(spec_user)
    except users.UserNotFound as e:
        raise StartFailure(125, str(e)) from None
    if not any(item.startswith("HOME=") for item in env):
        env = env + [f"HOME={user.home}"]
    _ensure_workdir(cwd, user)
    keep = set(linux.DEFAULT_CAPS.values())
    no_new_privs = True
    if spec is not None:  # the container's own capabilities and no_new_privs (runtime/caps.py)
        if spec.caps is not None:  # never more than this process holds (--privileged: all of those)
            keep = caps.numbers(spec.caps, last_cap) & _permitted(last_cap)
        no_new_privs = spec.no_new_privs
        if not no_new_privs:
            # As runc does without no_new_privs: load the filter while CAP_SYS_ADMIN allows it;
            # what follows (capset, setresuid, prctl, chdir) is allowed by docker's profile.
            seccomp.apply(spec.seccomp)
    linux.drop_bounding_set(keep, last_cap)
    if no_new_privs:
        linux.set_no_new_privs()
    os.setgroups(list(user.groups))
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    if user.uid == 0:
        linux.capset(keep, keep, set())
    if monitor_fd is not None:
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        if select.select([monitor_fd], [], [], 0)[0]:
            os._exit(137)  # the monitor is gone (EOF): nobody would ever reap or stop us
    # A uid change resets dumpable to fs.suid_dumpable; the next execve sets it for the command.
    linux.set_dumpable(False)
    try:
        os.chdir(cwd)
    except OSError as e:
        raise StartFailure(125, f"cannot enter working directory {cwd}: {e.strerror}") from None
    return env, user


def _ensure_workdir(cwd: str, user: users.ExecUser) -> None:
    if os.path.isdir(cwd):
        return
    try:
        os.makedirs(cwd, 0o755)
        os.chown(cwd, user.uid, user.gid)
    except OSError as e:
        raise StartFailure(125, f"cannot create working directory {cwd}: {e.strerror}") from None


def _env_path(env: list[str]) -> str:
    for item in env:
        if item.startswith("PATH="):
            return item[5:]
    return ""


def exec_command(argv: list[str], env: list[str]) -> None:
    """execve with docker's PATH search and exit codes; raises StartFailure if nothing ran."""
    envmap = dict(item.partition("=")[::2] for item in env)
    name = argv[0]
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in _env_path(env).split(":")]
    denied: OSError | None = None
    for path in candidates:
        try:
            os.execve(path, argv, envmap)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR):
                denied = e
            elif e.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise StartFailure(126, f"exec {name}: {e.strerror}") from None
    if denied is not None:
        raise StartFailure(126, f'exec: "{name}": {(denied.strerror or str(denied)).lower()}')
    if "/" in name:
        raise StartFailure(127, f'exec: "{name}": stat {name}: no such file or directory')
    raise StartFailure(127, f'exec: "{name}": executable file not found in $PATH')


def _report(fd: int, code: int, message: str) -> None:
    try:
        os.write(fd, json.dumps({"code": code, "message": message}).encode())
    except OSError:
        pass


def container_main(spec: ContainerSpec, cdir: Path, report_fd: int, monitor_fd: int,
                   cgroup_fd: int | None = None, netns_fd: int | None = None,
                   console_fd: int | None = None, console_size: tuple[int, int] | None = None) -> None:
    """PID 1 of the container. Never returns.

    ``cgroup_fd`` is the read end of a pipe on which the monitor answers once it has moved this
    process into the container's cgroups (``b"ok"``, or why it could not): the move waits for an
    RCU grace period in the kernel (7-20 ms here), so the monitor makes it while this process
    builds the root; the answer is awaited before the cgroup namespace is made (and so before
    anything of the image runs). Without it (``None``)
    the process joins its cgroups itself. ``netns_fd``: the network namespace the monitor
    made and wired (``runtime.network.attach``), joined instead of a new empty one.
    ``console_fd`` (``-t``): the socket on which the master of the pty this process opens in
    the container's devpts goes to the monitor."""
    code = 125
    try:
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        # Only the report pipe and the monitor's liveness pipe (both close-on-exec) survive;
        # anything the caller left open would be a way out (runc CVE-2024-21626).
        linux.close_fds_above_2(keep=tuple(fd for fd in (report_fd, monitor_fd, cgroup_fd, netns_fd,
                                                         console_fd)
                                           if fd is not None))
        linux.set_dumpable(False)
        # Its own session and process group: kill(0) or kill(-1) inside reaches only the container.
        os.setsid()
        linux.join_new_session_keyring()
        flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
        if netns_fd is not None:
            linux.setns(netns_fd, linux.CLONE_NEWNET)
            os.close(netns_fd)
        elif spec.network != "host":
            flags |= linux.CLONE_NEWNET
        linux.unshare(flags)
        if cgroup_fd is None:
            cgroups.join(spec.cgroups)
        last_cap = linux.cap_last_cap()
        root = _setup_root(spec, cdir, cgroup_fd)
        linux.sethostname(spec.hostname)
        for name, (soft, hard) in spec.ulimits.items():   # --ulimit, while still privileged
            resource.setrlimit(_RLIMITS[name], (resource.RLIM_INFINITY if soft < 0 else soft,
                                                resource.RLIM_INFINITY if hard < 0 else hard))
        if spec.network != "host":
            linux.loopback_up()
        # The pty code is needed after the pivot, when the host's Python files are out of reach.
        console_tty = _tty_module() if console_fd is not None else None
        mounts.pivot(root)
        # Python ignores SIGPIPE and SIGXFSZ; an ignored signal would stay ignored across exec.
        for sig in FORWARDED + (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        if console_tty is not None and console_fd is not None:
            console_tty.setup_console(console_fd, console_size)
        if spec.init:
            _reaper(spec, report_fd, monitor_fd, last_cap)
        env, _ = become_user(spec.user, spec.env, spec.cwd, last_cap, monitor_fd, spec)
        seccomp.apply(spec.seccomp)
        exec_command(spec.argv, env)
    except StartFailure as e:
        code = e.code
        _report(report_fd, e.code, e.message)
    except OSError as e:
        _report(report_fd, 125, f"container setup failed: {e.strerror or e}"
                + (f" ({e.filename})" if e.filename else ""))
    except BaseException as e:
        _report(report_fd, 125, f"container setup failed: {type(e).__name__}: {e}")
    os._exit(code)


def _await_cgroups(fd: int) -> None:
    """Block until the monitor has placed this process in its cgroups (device rules and limits
    apply from here on); raises StartFailure with the monitor's reason if it could not."""
    answer = _read_all(fd)
    if answer != b"ok":
        raise StartFailure(125, answer.decode(errors="replace")
                           or "the monitor exited before placing the container in its cgroups")


def _place_in_cgroups(paths: list[str], pid: int, fd: int) -> None:
    """The monitor's half of ``_await_cgroups``."""
    try:
        cgroups.join(paths, pid)
        answer = b"ok"
    except Exception as e:  # SetupError, or OSError: reported by the container as its failure
        answer = (str(e) or type(e).__name__).encode()[:4000]
    try:
        os.write(fd, answer)
    except OSError:
        pass
    os.close(fd)


def _reaper(spec: ContainerSpec, report_fd: int, monitor_fd: int, last_cap: int) -> None:
    """``--init``: PID 1 stays this (host) Python, so it is what docker's tini is: the
    container's user, capabilities and no_new_privs, non-dumpable (its /proc/1/exe, environ and
    mem cannot be opened from inside), and with the caller's command line and environment
    erased from its memory. It forks the command, forwards signals, reaps every zombie and
    exits as the command did. Raises StartFailure when the user or workdir is unusable."""
    linux.set_process_name("hoist-init")
    linux.erase_command_line("hoist-init")
    env, _ = become_user(spec.user, spec.env, spec.cwd, last_cap, monitor_fd, spec)
    seccomp.apply(spec.seccomp)   # the reaper and, inherited, the command
    child = os.fork()
    if child == 0:
        try:
            exec_command(spec.argv, env)
        except StartFailure as e:
            _report(report_fd, e.code, e.message)
            os._exit(e.code)
        except BaseException as e:
            _report(report_fd, 125, f"container setup failed: {e}")
            os._exit(125)
    os.close(report_fd)
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: _kill_quiet(child, s))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os._exit(exit_code_of(status))


def _kill_quiet(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# -- the monitor ----------------------------------------------------------------------------------

def _read_all(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 65536):
        out += chunk
    os.close(fd)
    return out


def monitor_main(cdir: Path, ready_fd: int | None, container: Container | None = None,
                 attach_first: bool = False) -> int:
    """Run the container, and run it again as its restart policy says (``runtime.restart``).

    ``container``: the caller's object when the monitor is forked (its spec is already read).
    ``attach_first`` (``run -it``): with a TTY, wait for the caller's attach client before the
    command starts. Each run has its own PID namespace (the previous one ended with its PID 1)
    on the same root, upper dir and cgroups."""
    container = container if container is not None else Container(cdir)
    spec = container.spec
    spec.seccomp = seccomp.complete(spec.seccomp, cdir.parent.parent / "cache" / "seccomp")
    linux.set_process_name("hoist-monitor")
    if spec.caller_pid:
        # A build step: gone with its build (PID 1 dies with the monitor in turn).
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != spec.caller_pid:
            os._exit(137)
    if ready_fd is not None:
        os.set_inheritable(ready_fd, False)
    # A monitor forked from the CLI has the caller's descriptors; a -d container's monitor lives
    # as long as the container, and nothing of the caller's may outlive the command line.
    linux.close_fds_above_2(keep=(ready_fd,) if ready_fd is not None else ())
    linux.join_new_session_keyring()
    # Before the PID namespace: making a network namespace forks, and the first child after
    # unshare(CLONE_NEWPID) would be (and end) that namespace's PID 1. The network lives as
    # long as the monitor: every run of a restarting container joins the same namespace.
    net = _attach_network(container, ready_fd)
    if net is False:
        return 125
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    manager = restart.RestartManager(restart.RestartPolicy.from_json(spec.restart),
                                     int(container.state().get("restart_count") or 0))
    # A container started detached (``start_detached``: it waits on ready_fd) has its stdout and
    # stderr go through a pump into its json-file log, every run of it; one run in the foreground
    # writes to the caller's terminal or pipe as it is.
    log_config = logfile.LogConfig.from_json(spec.log) if ready_fd is not None else None
    console = _tty_module().ConsoleServer(cdir) if spec.tty else None
    if console is not None and attach_first:
        console.await_first_client(30.0)
    child = [0]   # the running PID 1 (0: none)

    def forward(sig: int, _frame: object) -> None:
        if child[0] > 0:
            _kill_quiet(child[0], sig)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    container.update_state(monitor_pid=os.getpid(), monitor_start=process_start_time(os.getpid()),
                           monitor_boot=boot_id())
    code, first, started = 0, True, 0.0
    decision: list[Any] = [False, 0.0]   # (restart, after what delay), as the last exit decided

    def decide(code: int, error: tuple[int, str] | None, state: dict[str, Any]) -> dict[str, Any]:
        """Whether the run that just ended runs again, decided under the state's lock in the same
        write as its exit: the state never says "exited" between two runs, and a user's stop
        (manually_stopped, set under that lock) is either seen here or sees "restarting"."""
        decision[:] = [False, 0.0]
        if error and first:
            return {}   # a command that cannot start is an error of `run`/`start`, not a crash
        manager.policy = _current_policy(cdir, manager.policy)   # `hoist update --restart`
        decision[:] = manager.should_restart(code, bool(state.get("manually_stopped")), time.monotonic() - started)
        return {"status": "restarting", "restart_count": manager.restart_count} if decision[0] else {}

    try:
        while True:
            started = time.monotonic()
            code, _ = _run_once(container, spec, cdir, own_pidns, first, ready_fd, console, child, decide,
                                net, log_config)
            first, ready_fd = False, None
            again, delay = decision
            if not again:
                break
            if not _await_restart(container, delay):
                container.update_state(status="exited")
                break
    finally:
        if console is not None:
            console.close()
        if net:
            # Teardown runs nft: its children must go to the monitor's own PID namespace again.
            linux.setns(own_pidns, linux.CLONE_NEWPID)
            net.close()
    cgroups.remove(spec.cgroups)
    if spec.remove:
        container.destroy()
        volumes.forget_container(cdir.parent.parent, spec.volumes)  # --rm: its anonymous volumes too
    return code


def _current_policy(cdir: Path, previous: restart.RestartPolicy) -> restart.RestartPolicy:
    try:
        return restart.RestartPolicy.from_json(Container(cdir).spec.restart)
    except (OSError, ValueError, TypeError, RuntimeFailure):   # unreadable: keep the last one
        return previous


def _await_restart(container: Container, delay: float) -> bool:
    """Sleep ``delay`` unless the user stops the container meanwhile (``Runtime.stop`` sets
    manually_stopped, then signals the monitor). False when it was stopped. The signals are
    blocked and waited for, so one that lands at any moment only ends the sleep early."""
    deadline = time.monotonic() + delay
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        while True:
            if container.state().get("manually_stopped"):
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            signal.sigtimedwait(FORWARDED, remaining)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)


def _run_once(container: Container, spec: ContainerSpec, cdir: Path, own_pidns: int, first: bool,
              ready_fd: int | None, console: tty.ConsoleServer | None,
              child: list[int], decide: Callable[[int, tuple[int, str] | None, dict[str, Any]], dict[str, Any]],
              net: Any = None,
              log_config: logfile.LogConfig | None = None) -> tuple[int, tuple[int, str] | None]:
    """One run of the command, from the fork of PID 1 to its exit: (exit code, start failure).
    The exit is written with what ``decide`` (the restart policy) adds to it, in one write."""
    if not first:
        # The last PID namespace died with its PID 1; back to the monitor's own, to make a new one.
        linux.setns(own_pidns, linux.CLONE_NEWPID)
    # Each run's log pump is forked before the PID namespace (a process forked after it would be
    # the namespace's PID 1) and waited for after the run, so every record of a run is written
    # before the state says it exited.
    logs = logfile.LogPump(cdir, log_config) if log_config is not None else None
    if logs is not None:
        logs.start()
    # The run's health checks: a process of the monitor's PID namespace too (runtime/health.py).
    check = _healthcheck(spec)
    prober = _health_module().HealthMonitor.spawn(container, spec, check) if check is not None else None
    linux.unshare(linux.CLONE_NEWPID)
    report_r, report_w = os.pipe()
    # The monitor holds alive_w until the run ends; PID 1 sees EOF on alive_r once it is gone.
    alive_r, alive_w = os.pipe()
    cgroup_r, cgroup_w = os.pipe()
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if console is not None else None
    pid = os.fork()
    if pid == 0:
        os.close(report_r)
        os.close(alive_w)
        os.close(cgroup_w)
        if ready_fd is not None:
            os.close(ready_fd)
        if logs is not None:
            logs.child_side()
        console_fd = None
        if pair is not None and console is not None:
            pair[0].close()
            console_fd = pair[1].detach()
        container_main(spec, cdir, report_w, alive_r, cgroup_r, net.netns_fd if net else None, console_fd,
                       console.size if console is not None else None)
    os.close(report_w)
    os.close(alive_r)
    os.close(cgroup_r)
    if pair is not None:
        pair[1].close()
    log_out = logs.stdout_fd() if logs is not None and console is not None else 1
    if logs is not None and console is None:
        logs.parent_side()
    child[0] = pid
    _place_in_cgroups(spec.cgroups, pid, cgroup_w)
    container.update_state(pid=pid)   # (the container cannot have started before the answer above)
    failure = _read_all(report_r)
    error = _parse_failure(failure)
    master = _tty_module().receive_master(pair[0]) if pair is not None and not error else None
    if pair is not None:
        pair[0].close()
    if not error:
        started_at = time.time()
        # Health starts over with each run (its log kept), in the same write as "running".
        container.modify_state(lambda state: {
            "status": "running", "started_at": started_at, "paused": False,
            **({"health": _health_module().reset(state.get("health"))} if prober is not None else {})})
        if prober is not None:
            prober.started(pid, started_at)
    if ready_fd is not None:
        os.write(ready_fd, failure or b"ok")
        os.close(ready_fd)
    if master is not None and console is not None:
        pidfd = os.pidfd_open(pid)
        try:
            console.relay(master, pidfd, log_out, spec.interactive)
        finally:
            os.close(pidfd)
            os.close(master)
    status = _wait(pid)
    child[0] = 0
    if prober is not None:
        prober.stop()   # no probe outlives the run, and nothing writes Health after the exit
    os.close(alive_w)
    if logs is not None:
        if console is not None:
            logs.parent_side()   # the relay wrote the console's output into the pump
        logs.finish()  # every record is written before the state says exited
    code = error[0] if error else exit_code_of(status)
    ended = {"status": "exited", "exit_code": code, "finished_at": time.time(), "pid": 0,
             "error": error[1] if error else ""}
    container.modify_state(lambda state: {**ended, **decide(code, error, state)})
    if console is not None:
        console.finish_run(code)
    if error and ready_fd is None and first:
        print(f"hoist run: {error[1]}", file=sys.stderr, flush=True)
    return code, error


def _healthcheck(spec: ContainerSpec) -> health.HealthConfig | None:
    """The probe the container's Config.Healthcheck asks for (None: none, NONE, or unusable)."""
    if not (spec.config or {}).get("Healthcheck"):
        return None                 # without one, the health code is not even imported
    health = _health_module()
    try:
        return health.HealthConfig.from_docker((spec.config or {}).get("Healthcheck"))
    except health.HealthConfigError:
        return None


def _tty_module() -> Any:
    """``runtime.tty``, imported only by a container with a TTY (start-up: bench/run_bench.py)."""
    from runtime import tty

    return tty


def _health_module() -> Any:
    """``runtime.health``, imported only for a container with a health check."""
    from runtime import health

    return health


def _attach_network(container: Container, ready_fd: int | None):  # -> Attachment | None | False
    """The container's network (``runtime.network.attach``), before PID 1 exists. On failure
    (a port already allocated, a refused namespace...) nothing is left set up: the failure is
    reported as a start failure (125) and False returned."""
    spec = container.spec
    if spec.network in ("none", "host"):
        return None
    from runtime.network import attach

    try:
        return attach.attach(container.path.parent.parent, spec, container.path)
    except Exception as e:  # NetworkError, or OSError/netlink from the kernel: one line each
        message = str(e) or type(e).__name__
    container.update_state(status="exited", exit_code=125, finished_at=time.time(), pid=0, error=message)
    if ready_fd is not None:
        os.write(ready_fd, json.dumps({"code": 125, "message": message}).encode())
        os.close(ready_fd)
    else:
        print(f"hoist run: {message}", file=sys.stderr, flush=True)
    cgroups.remove(spec.cgroups)
    if spec.remove:
        container.destroy()
    return False


def _parse_failure(raw: bytes) -> tuple[int, str] | None:
    if not raw:
        return None
    try:
        doc = json.loads(raw)
        return int(doc["code"]), str(doc["message"])
    except (ValueError, KeyError, TypeError):
        return 125, raw.decode(errors="replace")


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except ChildProcessError:
            return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    attach_first = "--attach-first" in argv
    argv = [a for a in argv if a != "--attach-first"]
    ready_fd = int(argv[1]) if len(argv) > 1 else None
    return monitor_main(Path(argv[0]), ready_fd, attach_first=attach_first)


def warm_main(ctrl: int) -> int:
    """A monitor started before its container (``lifecycle.WarmMonitor``): the container's path
    comes on ``ctrl``; end of file without one means it is not needed."""
    with os.fdopen(ctrl, "rb") as f:
        path = f.read()
    if not path:
        return 0
    return main([os.fsdecode(path)])


if __name__ == "__main__":
    sys.exit(main())
