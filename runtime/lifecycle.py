"""Create, start, stop, kill, remove and exec into containers.

The CLI verbs are thin wrappers over ``Runtime``. Starting always goes through a fresh monitor
process (``runtime.init``): in the foreground the caller waits for it and forwards signals; with
``detach`` it outlives the caller and writes the exit code into the state when the container ends.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket

from runtime import cgroups, linux, seccomp, users
from runtime.containers import Container, ContainerStore, process_start_time
from runtime.errors import ContainerNotFound, ContainerRunning, RuntimeFailure, SetupError
from runtime.image import Image, load_image
from runtime.restart import RestartPolicy
from runtime.snapshots import SnapshotStore, plan_rootfs
from runtime.spec import (
    ContainerSpec,
    Limits,
    Volume,
    build_env,
    command_line,
    exit_code_of,
    parse_device,
    parse_env_args,
    parse_labels,
    parse_signal,
    parse_size,
    parse_ulimits,
    read_env_file,
    working_dir,
)
from runtime.unsynced import recover as recover_unsynced
from storage.fsutil import file_lock

if TYPE_CHECKING:
    from runtime.unpack import Limits as UnpackLimits

_PKG_PARENT = str(Path(__file__).resolve().parent.parent)
_MONITOR = ("import sys; sys.path.insert(0, sys.argv[1]); from runtime.init import main; "
            "sys.exit(main(sys.argv[2:]))")
# A warm monitor (WarmMonitor): runtime.init imported, then the container's path from the
# control pipe (none, at end of file: it was not needed).
_WARM_MONITOR = ("import sys; sys.path.insert(0, sys.argv[1]); from runtime.init import warm_main; "
                 "sys.exit(warm_main(int(sys.argv[2])))")
_PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
# docker's --sig-proxy (cli ForwardAllSignals): every signal the client gets goes to the container
# but SIGCHLD, SIGPIPE and SIGURG; SIGKILL and SIGSTOP cannot be caught, and the hardware faults
# (SIGSEGV, SIGBUS, SIGFPE, SIGILL) stay the interpreter's own: a real one would loop forever.
_NOT_PROXIED = frozenset({signal.SIGCHLD, signal.SIGPIPE, signal.SIGURG, signal.SIGKILL, signal.SIGSTOP,
                          signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL})
_AS_OUTPUT = -1   # the monitor's stderr: what its stdout is (None: the caller's own)
_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\n"
          "ff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


class StartFailed(RuntimeFailure):
    """The command did not start; ``exit_code`` is 125, 126 or 127 as docker reports it."""

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunOptions:
    image: str
    args: list[str] = field(default_factory=list)
    name: str | None = None
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    entrypoint: str | None = None
    network: str = "none"
    hostname: str | None = None
    init: bool = False
    limits: Limits = field(default_factory=Limits)
    remove: bool = False
    detach: bool = False
    interactive: bool = False
    seccomp: str = seccomp.DEFAULT          # or seccomp.UNCONFINED, or a profile file
    log_driver: str | None = None           # json-file (default) or none
    log_opts: list[str] = field(default_factory=list)   # max-size=SIZE, max-file=N
    # --label K=V items, or a mapping (hoist compose gives its labels so)
    labels: list[str] | dict[str, str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)     # --mount type=...,target=...
    tmpfs: list[str] = field(default_factory=list)      # --tmpfs /path[:opts]
    volumes_from: list[str] = field(default_factory=list)
    read_only: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    no_new_privs: bool = False              # docker's default; --security-opt no-new-privileges
    devices: list[str] = field(default_factory=list)
    shm_size: int = 0
    ulimits: list[str] = field(default_factory=list)
    stop_signal: str | None = None
    stop_timeout: float | None = None
    label_files: list[str] = field(default_factory=list)
    # --ip, --network-alias, -p, -P, --dns, --add-host (runtime.network.attach.NetOptions)
    ip: str | None = None
    aliases: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    dns: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)
    restart: str = "no"                     # docker's --restart (runtime/restart.py)
    tty: bool = False                       # -t: a pty for the container (runtime/tty.py)
    # the user's Config.Healthcheck (``runtime.health.from_flags``; compose's healthcheck),
    # merged over the image's HEALTHCHECK at create
    healthcheck: dict[str, Any] | None = None


class Runtime:
    def __init__(self, root: str | os.PathLike[str], use_overlay: bool = True,
                 unpack_limits: UnpackLimits | None = None) -> None:
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.snapshots = SnapshotStore(self.root / "snapshots", unpack_limits)
        recover_unsynced(self.snapshots.root)     # what a crash cut short goes first
        self.containers = ContainerStore(self.root / "containers")
        self.use_overlay = use_overlay and os.environ.get("HOIST_NO_OVERLAY", "") == ""

    # -- create -------------------------------------------------------------------------------
    def create(self, opts: RunOptions) -> Container:
        """Resolve the image, unpack what is missing, write the container's folder."""
        image = load_image(self.images_dir, opts.image)
        spec = self._spec(image, opts)
        try:
            chain = self.snapshots.ensure_chain(list(image.layer_blobs), image.diff_ids)
            return self.create_from_spec(spec, chain)
        except BaseException:
            from runtime import volumes

            volumes.forget_container(self.root, spec.volumes)  # the anonymous ones it made
            raise

    def create_from_spec(self, spec: ContainerSpec, chain: list[Path],
                         store: ContainerStore | None = None, volatile: bool = False) -> Container:
        """Write the folder of a container that runs ``spec`` on the snapshots ``chain`` (lowest
        first), in ``store`` (default: the containers ``hoist ps`` lists). ``volatile``: a
        container started once (a build step), whose overlay need not sync at unmount
        (``runtime.unsynced``)."""
        container = (store or self.containers).reserve(spec)
        try:
            self._prepare(container, spec, chain, volatile)
        except BaseException:
            cgroups.remove(spec.cgroups)
            container.destroy()
            raise
        return container

    def _spec(self, image: Image, opts: RunOptions) -> ContainerSpec:
        config = image.run_config
        cid = self.containers.new_id()
        from runtime.network.attach import NetOptions, check_options

        net = check_options(self.root, NetOptions(
            mode=opts.network, ip=opts.ip, aliases=opts.aliases, publish=opts.publish,
            publish_all=opts.publish_all, dns=opts.dns, add_hosts=opts.add_hosts),
            config.get("ExposedPorts"), opts.hostname is not None)
        hostname = opts.hostname or net.pop("hostname", None) or (
            os.uname().nodename if opts.network == "host" else cid[:12])
        user_env = []
        for path in opts.env_files:
            user_env += read_env_file(path)
        user_env += parse_env_args(opts.env)
        user = opts.user if opts.user is not None else (config.get("User") or "")
        _check_user(user)
        policy = RestartPolicy.parse(opts.restart)
        if opts.remove and not policy.is_none:
            raise SetupError("Conflicting options: --restart and --rm")
        log = _log_config(opts)
        given = dict(opts.labels) if isinstance(opts.labels, dict) else parse_labels(opts.labels, opts.label_files)
        if isinstance(opts.labels, dict) and opts.label_files:
            given = {**parse_labels([], opts.label_files), **given}
        labels = {**(config.get("Labels") or {}), **given}
        from runtime.caps import capability_set

        cap_names = capability_set(opts.cap_add, opts.cap_drop, opts.privileged)
        # --privileged runs without a filter, as docker; the profile's rules follow the caps.
        choice = seccomp.UNCONFINED if opts.privileged else opts.seccomp
        profile = seccomp.for_container(choice, cap_names, self.root / "cache" / "seccomp")
        devices = [parse_device(d) for d in opts.devices]
        ulimits = parse_ulimits(opts.ulimits)
        stop_signal = parse_signal(opts.stop_signal or config.get("StopSignal"))
        return ContainerSpec(  # the mounts last: they may create volumes, nothing may fail after
            id=cid, name=opts.name or f"hoist_{cid[:12]}", image=image.ref, image_id=image.config_digest,
            argv=command_line(config, opts.entrypoint, opts.args),
            env=build_env(config.get("Env"), user_env, hostname),
            cwd=working_dir(config, opts.workdir),
            user=user,
            hostname=hostname, init=opts.init, **net,
            stop_signal=stop_signal, stop_timeout=opts.stop_timeout,
            entrypoint=([opts.entrypoint] if opts.entrypoint else []) if opts.entrypoint is not None
            else config.get("Entrypoint"),
            cmd=list(opts.args) if opts.args or opts.entrypoint is not None else config.get("Cmd"),
            caps=cap_names, no_new_privs=opts.no_new_privs and not opts.privileged, privileged=opts.privileged,
            devices=devices, shm_size=opts.shm_size, ulimits=ulimits,
            limits=opts.limits, remove=opts.remove, detach=opts.detach, created=time.time(),
            seccomp=profile, log=log, labels=labels, read_only=opts.read_only,
            restart=policy.to_json(), tty=opts.tty, interactive=opts.interactive,
            config=_docker_config(config, opts, labels),
            volumes=self._mounts(opts),
        )

    def _mounts(self, opts: RunOptions) -> list[Volume]:
        from runtime import volumes

        return volumes.container_mounts(opts.volumes, opts.mounts, opts.tmpfs, opts.volumes_from,
                                        volumes.VolumeStore(self.root / "volumes"), self.containers)

    def _prepare(self, container: Container, spec: ContainerSpec, chain: list[Path],
                 volatile: bool = False) -> None:
        (container.path / "rootfs").mkdir(mode=0o755, exist_ok=True)
        plan = plan_rootfs(self.snapshots, chain, container.path, self.use_overlay, volatile)
        spec.rootfs = plan.to_json()
        spec.cgroups = cgroups.create(spec.id, spec.limits, devices=[
            (d["kind"], d["major"], d["minor"], d["access"]) for d in spec.devices])
        write_etc_files(container.path, spec)
        container.write_spec(spec)

    # -- start ----------------------------------------------------------------------------------
    def _monitor_argv(self, container: Container, *extra: str) -> list[str]:
        return [sys.executable, "-I", "-S", "-c", _MONITOR, _PKG_PARENT, str(container.path), *extra]

    def _spawn_monitor(self, container: Container, ready_fd: int | None, stdin: int | None,
                       output: int | None, attach_first: bool = False, errput: int | None = _AS_OUTPUT,
                       waited: bool = True) -> int:
        """Start the monitor in its own session; returns its pid. A single-threaded caller (the
        CLI) forks, which saves a Python start-up; anything else re-executes Python. ``waited``:
        the caller waits for the pid (else subprocess reaps a re-executed monitor, as a detached
        one outlives its caller's interest)."""
        # _thread's count covers threads started either way (threading, or _thread directly);
        # importing threading just to ask would cost the CLI start-up.
        if _thread._count() == 0:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _monitor_child(container, ready_fd, stdin, output, attach_first, errput)
            return pid
        import subprocess

        extra: tuple[str, ...] = (str(ready_fd),) if ready_fd is not None else ()
        extra += ("--attach-first",) if attach_first else ()
        proc = subprocess.Popen(self._monitor_argv(container, *extra), start_new_session=True,
                                stdin=stdin, stdout=output, stderr=output if errput == _AS_OUTPUT else errput,
                                pass_fds=(ready_fd,) if ready_fd is not None else ())
        if waited:
            _callers_child(proc)
        return proc.pid

    def run_foreground(self, container: Container, interactive: bool = False,
                       streams: frozenset[str] | None = None, sig_proxy: bool = True) -> int:
        """Start and wait, the output on the caller's; returns the exit code. ``streams``
        (``run -a``): the attached ones of stdout and stderr, the others to /dev/null (this path
        keeps no log: ``attached`` is the one that logs). ``sig_proxy``: the caller's signals
        go to the container (docker's --sig-proxy); else they are the caller's own."""
        streams = frozenset(("stdout", "stderr")) if streams is None else streams
        container.update_state(output="caller")   # no log of this run: nothing for `attach`
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            pid = self._spawn_monitor(container, None, None if interactive else devnull,
                                      None if "stdout" in streams else devnull,
                                      errput=None if "stderr" in streams else devnull)
        finally:
            os.close(devnull)
        with _SignalProxy(self._forwarder(container, pid) if sig_proxy else None):
            _, status = os.waitpid(pid, 0)
        return exit_code_of(status)

    def _forwarder(self, container: Container, monitor_pid: int = 0) -> Any:
        """A signal handler that does what docker's client does with a signal it gets: kill the
        container with it (``Runtime.kill``: PID 1, a paused one thawed). Before PID 1 runs, the
        monitor gets the signals it passes on itself."""
        def forward(sig: int, _frame: object) -> None:
            try:
                self.kill(container, sig)
                return
            except (RuntimeFailure, OSError, ValueError):
                pass
            if monitor_pid and sig in _PROXIED:
                _kill_quiet(monitor_pid, sig)
        return forward

    def attached(self, container: Container, streams: frozenset[str], interactive: bool = False,
                 sig_proxy: bool = True, start: bool = True) -> int:
        """``run -a``/``start -a`` (``start``) and ``attach`` of a container without a TTY: the
        container runs as a detached one does, every stream into its log, and the caller shows
        the attached streams of this run from the log as they come, so an unattached stream is
        still in ``hoist logs`` and the container outlives a caller that goes (``--sig-proxy=false``
        and a signal). With ``interactive`` (and ``start``) the container reads the caller's stdin.
        The exit code is the run's (for a container another process started: as the state says)."""
        from runtime.logfile import LogConfig, LogReader

        if LogConfig.from_json(container.spec.log).driver == "none":
            if not start:
                raise SetupError(f"container {container.name} keeps no log (--log-driver none): "
                                 f"there is no output to attach to")
            return self.run_foreground(container, interactive, streams, sig_proxy)
        reader = LogReader(container.path)
        reader.read()    # what earlier runs wrote is not this run's
        if start:
            # Held open from now: a --rm run's monitor removes the log with the folder, which
            # for a short command can be before the first read of what it wrote.
            reader.hold()
        try:
            with _SignalProxy(self._forwarder(container) if sig_proxy else None):
                monitor = 0
                if start:
                    with fs_lock(container):
                        ready_r, monitor = self._spawn_logged_pid(container, False, 0 if interactive else None,
                                                                   waited=True)
                        self._await_ready(container, ready_r)
                else:
                    status, state = container.status()
                    if status != "running":
                        raise ContainerRunning(f"container {container.name} is not running")
                    if state.get("output") == "caller":
                        raise SetupError(f"container {container.name} writes to the terminal of the "
                                         f"`hoist run` that started it: it keeps no log to attach to")
                return self._follow(container, reader, streams, monitor)
        finally:
            reader.close()

    def _follow(self, container: Container, reader: Any, streams: frozenset[str], monitor: int) -> int:
        """Replay the run's records of ``streams`` until it ends; its exit code. ``monitor``: the
        caller's own child, whose exit status is the code even once ``--rm`` removed the state."""
        out = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
        started = container.state().get("started_at")

        def drain() -> None:
            for record in reader.read():
                if record.stream in streams:
                    stream = out.get(record.stream, sys.stdout.buffer)
                    stream.write(record.data)
            for stream in out.values():
                stream.flush()

        while True:
            if monitor:
                pid, wstatus = os.waitpid(monitor, os.WNOHANG)
                if pid:
                    drain()   # the monitor ends after the run's every record is written
                    return exit_code_of(wstatus)
            status, state = container.status()
            gone = not container.path.exists()
            done = gone or status != "running" or state.get("started_at") != started
            drain()
            if done and monitor:
                # Our own monitor's status is the code when it has ended: the state can say 255
                # for a monitor that just exited (not yet reaped), or be going with the folder
                # (--rm removes it while the monitor ends), so then the monitor is waited for.
                pid, wstatus = os.waitpid(monitor, os.WNOHANG)
                if not pid and (gone or (status != "running" and "exit_code" not in state)):
                    pid, wstatus = os.waitpid(monitor, 0)
                if pid:
                    drain()
                    return exit_code_of(wstatus)
            if done:
                return int(state.get("exit_code", 0 if gone else 255))
            time.sleep(0.02)

    def start_captured(self, container: Container, output: int) -> int:
        """Start with stdin from /dev/null and stdout and stderr on ``output``; returns the
        monitor's pid, for ``wait``."""
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid = self._spawn_monitor(container, None, devnull, output)
        finally:
            os.close(devnull)
        return pid

    def wait(self, pid: int) -> int:
        """Wait for a monitor ``start_captured`` started, passing the caller's signals on (from
        the main thread; another thread only waits)."""
        import threading  # not at the top: `hoist run` never needs it (start-up time)

        if threading.current_thread() is not threading.main_thread():
            _, status = os.waitpid(pid, 0)
            return exit_code_of(status)
        return _wait_forwarding(pid)

    def start_detached(self, container: Container, stdin: int | None = None) -> None:
        """Start with output to the container's log (stdin from ``stdin``, default /dev/null);
        return once the command runs (or raise StartFailed with docker's exit code)."""
        with fs_lock(container):
            ready_r, _ = self._spawn_logged_pid(container, False, stdin)
            self._await_ready(container, ready_r)

    def _spawn_logged(self, container: Container, attach_first: bool) -> int:
        """A monitor in the background with output to the log; returns the ready pipe to read."""
        return self._spawn_logged_pid(container, attach_first)[0]

    def _spawn_logged_pid(self, container: Container, attach_first: bool,
                          stdin: int | None = None, waited: bool = False) -> tuple[int, int]:
        """(the ready pipe to read, the monitor's pid): output to the log, stdin from ``stdin``
        (default /dev/null); ``waited`` as for ``_spawn_monitor``."""
        container.update_state(output="log")
        ready_r, ready_w = os.pipe()
        log = os.open(container.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid = self._spawn_monitor(container, ready_w, devnull if stdin is None else stdin, log, attach_first,
                                      waited=waited)
        finally:
            os.close(log)
            os.close(devnull)
        os.close(ready_w)
        return ready_r, pid

    def _await_ready(self, container: Container, ready_r: int) -> None:
        try:
            # The monitor writes its one answer in a single write (well under PIPE_BUF).
            answer = os.read(ready_r, 65536)
        finally:
            os.close(ready_r)
        if answer == b"ok":
            return
        if not answer:
            raise StartFailed(f"the monitor of container {container.id[:12]} exited early "
                              f"(see {container.log_path})")
        doc = json.loads(answer)
        raise StartFailed(doc["message"], int(doc["code"]))

    # -- stop, kill, remove ------------------------------------------------------------------------
    def kill(self, container: Container, sig: int = signal.SIGKILL) -> None:
        """docker's kill: SIGKILL or the stop signal also ends the restart policy's hold (the
        user stopped it); other signals only reach the command."""
        status, state = container.status()
        if status == "restarting":
            if sig in (signal.SIGKILL, container.spec.stop_signal):
                container.update_state(manually_stopped=True)
                _signal_monitor(container, state, signal.SIGTERM)
                return
            raise ContainerRunning(f"container {container.name} is restarting, wait until it runs")
        pid = container.init_pid()
        if not pid:
            raise ContainerRunning(f"container {container.name} is not running")
        if sig in (signal.SIGKILL, container.spec.stop_signal):
            container.update_state(manually_stopped=True)
        _kill_quiet(pid, sig)
        self._thaw_if_paused(container)

    def stop(self, container: Container, timeout: float = 10.0, sig: int | None = None) -> None:
        """``sig`` (default: the container's stop signal: --stop-signal, else the image's
        STOPSIGNAL, else SIGTERM), then SIGKILL after ``timeout`` seconds; waits for the exit.
        A user's stop: no restart policy brings the container back (until ``start``).

        Each run the monitor starts before it sees the stop gets the stop signal as well."""
        status, state = container.status()
        if status not in ("running", "restarting"):
            return
        container.update_state(manually_stopped=True)
        stop_signal = sig if sig is not None else container.spec.stop_signal
        signalled: set[int] = set()

        def signal_run(state: dict[str, Any]) -> None:
            pid = int(state.get("pid") or 0)
            if pid and pid not in signalled:
                signalled.add(pid)
                _kill_quiet(pid, stop_signal)
                self._thaw_if_paused(container)

        signal_run(state)
        if self.wait_exit(container, timeout, signal_run):
            return
        pid = container.init_pid()
        if pid:
            _kill_quiet(pid, signal.SIGKILL)
            self._thaw_if_paused(container)

        def kill_run(state: dict[str, Any]) -> None:
            if pid := int(state.get("pid") or 0):
                _kill_quiet(pid, signal.SIGKILL)

        self.wait_exit(container, 10.0, kill_run)

    def _settled_status(self, container: Container) -> tuple[str, dict[str, Any]]:
        """``container.status()``, once a monitor that has written its last exit has also
        ended (it still removes the cgroups and the network after that write): what ``start``
        and ``rm`` may act on without a live monitor beside them."""
        status, state = container.status()
        if status == "exited" and container.monitor_alive(state):
            if not self.wait_exit(container, 10.0):
                raise ContainerRunning(f"container {container.name} is still stopping")
            if not container.path.exists():     # --rm: its monitor removed it
                raise ContainerNotFound(f"no such container: {container.name}")
            status, state = container.status()
        return status, state

    def wait_exit(self, container: Container, timeout: float,
                  each_poll: Callable[[dict[str, Any]], None] | None = None) -> bool:
        """Wait until the container's monitor has exited (having written the exit, and removed a
        ``--rm`` container): the monitor process itself, as it was when the wait began.
        ``each_poll`` sees the state at each look while the monitor lives."""
        deadline = time.monotonic() + timeout
        first = container.state()
        monitor = (first.get("monitor_pid"), first.get("monitor_start")) if container.monitor_alive(first) else None
        while True:
            if monitor is not None:
                if process_start_time(int(monitor[0] or 0)) != monitor[1]:
                    return True
            elif not container.path.exists():
                return True
            state = container.state()
            if monitor is None and not container.monitor_alive(state):
                return True
            if each_poll is not None:
                each_poll(state)
            if state.get("status") == "restarting" and state.get("manually_stopped"):
                # waiting out a back-off: the monitor's signal handler ends the wait
                _signal_monitor(container, state, signal.SIGTERM)
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def remove(self, container: Container, force: bool = False, anonymous_volumes: bool = False) -> None:
        """Remove the container (``force``: kill it first); with ``anonymous_volumes`` (``rm
        -v``) the anonymous volumes only it used go too."""
        self._remove(container, force)
        if anonymous_volumes:
            from runtime import volumes

            volumes.forget_container(self.root, container.spec.volumes)

    def _remove(self, container: Container, force: bool) -> None:
        status, _ = self._settled_status(container)
        if status in ("running", "restarting"):
            if not force:
                raise ContainerRunning(f"container {container.name} is {status} "
                                       f"(stop it first, or use rm -f)")
            with contextlib.suppress(ContainerRunning):   # it may end meanwhile
                self.kill(container, signal.SIGKILL)
            self.wait_exit(container, 10.0)
        if container.path.exists():
            cgroups.remove(container.spec.cgroups)
            if container.spec.networks:
                from runtime.network.attach import forget_if_stale

                forget_if_stale(self.root, container.id)   # a killed monitor's endpoints
        container.destroy()

    # -- start, restart, wait, pause, update (the lifecycle verbs) ---------------------------------
    def start(self, container: Container, attach: bool = False, interactive: bool = False,
              detach_keys: bytes | None = None, sig_proxy: bool = True) -> int | None:
        """Start a created or exited container again: same root and upper dir, fresh cgroups.
        Detached unless ``attach``; attached, returns the exit code (None when detached)."""
        status, _ = self._settled_status(container)     # never a second monitor beside a live one
        if status in ("running", "restarting"):
            raise ContainerRunning(f"container {container.name} is already {status}")
        spec = container.spec
        with contextlib.suppress(RuntimeFailure):   # a monitor killed while the container was paused
            cgroups.freeze(spec.cgroups, False)
        cgroups.remove(spec.cgroups)   # what a killed monitor left (a reboot leaves nothing)
        spec.cgroups = cgroups.create(spec.id, spec.limits)
        container.write_spec(spec)
        # docker's start: the user's start resets the stop mark and the restart count
        container.update_state(manually_stopped=False, restart_count=0, paused=False, error="")
        if attach and spec.tty:
            return self.start_attached(container, interactive, detach_keys)
        if attach:   # docker's start -a: stdout and stderr, the signals proxied
            return self.attached(container, frozenset(("stdout", "stderr")), interactive, sig_proxy)
        self.start_detached(container)
        return None

    def start_attached(self, container: Container, interactive: bool, detach_keys: bytes | None = None) -> int:
        """A ``-t`` container started with the caller attached before the command runs
        (``run -it``, ``start -ai``). Raises tty.Detached on the detach keys."""
        from runtime import tty

        with fs_lock(container):
            ready_r = self._spawn_logged(container, attach_first=True)
            try:
                sock = self._connect_console(container, ready_r)
            except BaseException:
                os.close(ready_r)
                raise
            try:
                # the first frame, which the monitor waits for before the command starts: the size
                # the console starts with (0 x 0: the caller has no terminal to take it from)
                sock.sendall(tty.size_frame(tty.get_size(0) or tty.get_size(1) or (0, 0)))
                self._await_ready(container, ready_r)
            except BaseException:
                sock.close()
                raise
        started = container.state()
        code = tty.attach_client(sock, interactive, detach_keys=detach_keys or tty.DETACH_KEYS)
        if code is None:
            _, state = container.status()
            code = int(state.get("exit_code", 255))
        if container.spec.remove:
            # docker's run --rm returns once the container is gone. Its monitor removes it after
            # the console closes, then exits: the monitor is waited for (its state file may be
            # gone before the folder is, so the state cannot say when).
            pid, start = int(started.get("monitor_pid") or 0), started.get("monitor_start")
            deadline = time.monotonic() + 10
            while pid and process_start_time(pid) == start and time.monotonic() < deadline:
                time.sleep(0.01)
        return code

    def run_following(self, container: Container, streams: frozenset[str] | None = None,
                      sig_proxy: bool = True) -> int:
        """Foreground ``run`` with a restart policy, as docker's: the caller sees the first run's
        output (from the log; ``streams`` of it) and gets its exit code; the restarts go on in
        the background. The caller's signals go to the command (unless not ``sig_proxy``)."""
        from runtime.logfile import LogReader

        streams = frozenset(("stdout", "stderr")) if streams is None else streams
        reader = LogReader(container.path)
        try:
            with _SignalProxy(self._forwarder(container) if sig_proxy else None):
                self.start_detached(container)
                # The run's records, each replayed to the stream it came from; the monitor writes
                # the state (exited, restarting) only once every record of the run is in the log.
                return self._follow(container, reader, streams, 0)
        finally:
            reader.close()

    def _connect_console(self, container: Container, ready_r: int) -> socket.socket:
        """Connect to the console a starting monitor is about to serve; StartFailed when the
        monitor answers (fails) before it serves one."""
        import select

        from runtime import tty

        deadline = time.monotonic() + 30.0
        while True:
            try:
                return tty.connect(container.path)
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            if select.select([ready_r], [], [], 0.005)[0] or time.monotonic() > deadline:
                self._await_ready(container, ready_r)   # raises: the monitor answered without a console
                raise StartFailed(f"container {container.id[:12]} has no console")

    def attach(self, container: Container, detach_keys: bytes | None = None, sig_proxy: bool = True,
               stdin: bool = True) -> int | None:
        """``hoist attach``: the caller's terminal on a running ``-t`` container's console; on
        one without a TTY, its output from now on (from its log) with the caller's signals
        proxied to it unless not ``sig_proxy`` (docker proxies none to a TTY: ^C is a key there)."""
        from runtime import tty

        status, state = container.status()
        if status != "running":
            raise ContainerRunning(f"container {container.name} is not running")
        if state.get("paused"):
            raise ContainerRunning(f"cannot attach to a paused container {container.name}, unpause it first")
        if not container.spec.tty:
            return self.attached(container, frozenset(("stdout", "stderr")), sig_proxy=sig_proxy, start=False)
        try:
            sock = tty.connect(container.path)
        except OSError as e:
            raise SetupError(f"cannot attach to {container.name}: {e.strerror or e}") from None
        return tty.attach_client(sock, container.spec.interactive and stdin,
                                 detach_keys=detach_keys or tty.DETACH_KEYS)

    def restart(self, container: Container, timeout: float = 10.0) -> None:
        self.stop(container, timeout)
        self.start(container)

    def wait_container(self, container: Container) -> int:
        """``hoist wait``: block until the container's command exits (this run), its exit code."""
        status, state = container.status()
        if status not in ("running", "restarting"):
            return int(state.get("exit_code", 0))
        started = state.get("started_at")
        while True:
            time.sleep(0.05)
            if not container.path.exists():
                raise ContainerNotFound(f"container {container.id[:12]} was removed before its exit "
                                        f"code could be read")
            status, state = container.status()
            if status == "exited" or status == "restarting":
                return int(state.get("exit_code", 255))
            if state.get("started_at") != started:   # exited and restarted between two looks
                return int(state.get("exit_code", 255))

    def pause(self, container: Container) -> None:
        status, state = container.status()
        if status != "running":
            raise ContainerRunning(f"container {container.name} is not running")
        if state.get("paused"):
            raise ContainerRunning(f"container {container.name} is already paused")
        cgroups.freeze(container.spec.cgroups, True)
        container.update_state(paused=True)

    def unpause(self, container: Container) -> None:
        status, state = container.status()
        if status != "running" or not state.get("paused"):
            raise ContainerRunning(f"container {container.name} is not paused")
        cgroups.freeze(container.spec.cgroups, False)
        container.update_state(paused=False)

    def _thaw_if_paused(self, container: Container) -> None:
        """A signal reaches a frozen process only once it is thawed (docker unpauses too)."""
        if container.state().get("paused"):
            with contextlib.suppress(RuntimeFailure):
                cgroups.freeze(container.spec.cgroups, False)
            container.update_state(paused=False)

    def update(self, container: Container, memory: int | None = None, cpus: float | None = None,
               pids: int | None = None, restart: str | None = None) -> None:
        """``hoist update``: new limits apply at once to a running container and to its next
        starts; a new restart policy to its next exit."""
        spec = container.spec
        if restart is not None:
            policy = RestartPolicy.parse(restart)
            if spec.remove and not policy.is_none:
                raise SetupError("Restart policy cannot be updated because AutoRemove is enabled for the container")
            spec.restart = policy.to_json()
        old = spec.limits
        spec.limits = Limits(memory=memory if memory is not None else old.memory,
                             cpus=cpus if cpus is not None else old.cpus,
                             pids=pids if pids is not None else old.pids)
        status, _ = container.status()
        if status in ("running", "restarting") and spec.limits != old:
            spec.cgroups = cgroups.update(spec.id, spec.cgroups, spec.limits)
        container.write_spec(spec)

    # -- exec -------------------------------------------------------------------------------------
    def exec(self, container: Container, argv: list[str], env: list[str] | None = None,
             user: str | None = None, workdir: str | None = None, tty: bool = False,
             interactive: bool = False) -> int:
        """Run ``argv`` inside the running container's namespaces; returns its exit code. With
        ``tty`` the command gets a pty of the container's devpts and the caller relays it."""
        from runtime import init

        pid = container.init_pid()
        if not pid:
            raise ContainerRunning(f"container {container.name} is not running")
        if container.state().get("paused"):
            raise ContainerRunning(f"container {container.name} is paused, unpause the container before exec")
        spec = container.spec
        if user is not None:
            _check_user(user)
        spec.seccomp = seccomp.complete(spec.seccomp, self.root / "cache" / "seccomp")
        ns_fds = [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
                  for ns in ("ipc", "uts", "net", "pid", "mnt")]
        full_env = build_env(spec.env, parse_env_args(env or []), spec.hostname)
        if tty and not any(item.startswith("TERM=") for item in full_env):
            full_env.append("TERM=xterm")   # docker sets it for -t
        pair = _socketpair() if tty else None
        child = os.fork()
        if child == 0:
            console_fd = None
            if pair is not None:
                os.close(pair[0])
                console_fd = pair[1]
            _exec_child(init, spec, ns_fds, argv, full_env, user if user is not None else spec.user,
                        workdir or spec.cwd, console_fd)
        for fd in ns_fds:
            os.close(fd)
        if pair is None:
            return _wait_forwarding(child)
        return _relay_exec(child, pair, interactive)


def _docker_config(config: dict[str, Any], opts: RunOptions, labels: dict[str, str]) -> dict[str, Any]:
    """What ``inspect`` reports as Config.Entrypoint/Cmd (docker keeps them apart; argv is their
    sum), Labels, ExposedPorts, Healthcheck (the user's over the image's, checked) and Shell."""
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else None
        cmd = list(opts.args) or None
    else:
        entrypoint = config.get("Entrypoint") or None
        cmd = list(opts.args) or config.get("Cmd") or None
    check = None
    if opts.healthcheck is not None or config.get("Healthcheck"):
        from runtime import health

        check = health.merge(opts.healthcheck, config.get("Healthcheck"))
        health.validate(check)
    return {"Entrypoint": entrypoint, "Cmd": cmd, "Labels": labels,
            "ExposedPorts": dict(config.get("ExposedPorts") or {}), "Volumes": config.get("Volumes") or None,
            "Healthcheck": check, "Shell": config.get("Shell") or None}


def _log_config(opts: RunOptions) -> dict[str, object]:
    from runtime import logfile  # only here: `hoist run` in the foreground keeps no log

    return logfile.parse_log_options(opts.log_driver, opts.log_opts, parse_size).to_json()


def _check_user(user: str) -> None:
    try:
        users.check_user_spec(user)
    except users.UserNotFound as e:
        raise SetupError(f"invalid user: {e}") from None


def _callers_child(proc: Any) -> None:
    """The caller reaps ``proc`` itself (os.waitpid on its pid). A Popen dropped while its child
    runs is polled by the next Popen anywhere in the process (subprocess's ``_cleanup``), which
    would reap the monitor first and leave the caller's waitpid with ECHILD: so it is marked
    done, and subprocess never waits for it."""
    proc.returncode = 0


class WarmMonitor:
    """A monitor started before its container exists (re-executing Python costs a RUN step
    ~40-70 ms of imports; this way they overlap the step's own set-up or the steps before it).
    It has imported ``runtime.init`` and waits for a container's path on its control pipe; its
    stdout and stderr are a pipe whose read end is ``output``. Start it from the thread that will
    wait for it: the monitor's parent-death signal follows the thread that spawned it.
    ``discard`` ends one that is not used (and is safe to call after ``start``)."""

    def __init__(self) -> None:
        import subprocess

        ctrl_r, self._ctrl = os.pipe()
        self.output, out_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._proc: Any = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WARM_MONITOR, _PKG_PARENT, str(ctrl_r)],
                start_new_session=True, stdin=devnull, stdout=out_w, stderr=out_w, pass_fds=(ctrl_r,))
        except BaseException:
            for fd in (self._ctrl, self.output):
                os.close(fd)
            raise
        finally:
            for fd in (ctrl_r, out_w, devnull):
                os.close(fd)
        self.pid: int = self._proc.pid
        self.started = False

    def start(self, container: Container) -> int | None:
        """Hand ``container`` to the monitor; its pid (to wait for, as ``start_captured``'s),
        with ``output`` now the container's output. None when this monitor has died (then it is
        discarded; start the container another way)."""
        if self._proc.poll() is None:
            try:
                os.write(self._ctrl, os.fsencode(str(container.path)))
            except OSError:
                pass
            else:
                os.close(self._ctrl)
                self._ctrl = -1
                _callers_child(self._proc)
                self.started = True
                return self.pid
        self.discard()
        return None

    def discard(self) -> None:
        """End an unused monitor (killed and reaped) and close its pipes. After ``start`` it
        does nothing: the caller owns ``output`` and the pid."""
        if self.started:
            return
        for fd in (self._ctrl, self.output):
            if fd >= 0:
                os.close(fd)
        self._ctrl = self.output = -1
        if self._proc.returncode is None:
            self._proc.kill()
            self._proc.wait()


def _monitor_child(container: Container, ready_fd: int | None, stdin: int | None,
                   output: int | None, attach_first: bool = False, errput: int | None = _AS_OUTPUT) -> None:
    """The forked monitor: a new session, its own stdio, then ``runtime.init``. Never returns."""
    code = 125
    try:
        os.setsid()
        for fd, target in ((stdin, 0), (output, 1), (output if errput == _AS_OUTPUT else errput, 2)):
            if fd is not None:
                os.dup2(fd, target)
        # The caller's handlers (its signal proxy among them) are not the monitor's, and what it
        # ignores (--sig-proxy=false) must not stay ignored through exec into the container;
        # SIGPIPE and SIGXFSZ stay as Python has them (container_main resets them before exec).
        for sig in signal.valid_signals():
            if sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGKILL, signal.SIGSTOP):
                continue
            with contextlib.suppress(OSError, ValueError):
                if signal.getsignal(sig) != signal.SIG_DFL:
                    signal.signal(sig, signal.SIG_DFL)
        from runtime import init

        code = init.monitor_main(container.path, ready_fd, container, attach_first)
    except BaseException as e:
        print(f"hoist: container monitor failed: {e}", file=sys.stderr, flush=True)
    finally:
        os._exit(code)


def _socketpair() -> tuple[int, int]:
    import socket

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return a.detach(), b.detach()


def _relay_exec(child: int, pair: tuple[int, int], interactive: bool) -> int:
    """``exec -t``: the helper sends the master of the pty it opened inside; relay it."""
    import socket

    from runtime import tty

    os.close(pair[1])
    sock = socket.socket(fileno=pair[0])
    try:
        master = tty.receive_master(sock)
    finally:
        sock.close()
    if master is None:   # the helper failed before it opened the console (it said why)
        return _wait_forwarding(child)
    try:
        status = tty.relay_local(master, child, interactive)
    finally:
        os.close(master)
    return exit_code_of(status)


def _exec_child(init, spec: ContainerSpec, ns_fds: list[int], argv: list[str], env: list[str],
                user: str, cwd: str, console_fd: int | None = None) -> None:
    """Forked from the caller. Never returns.

    This helper is the host's Python, so it never enters the container's PID namespace itself
    (setns for a PID namespace only places future children there): from inside it cannot be
    seen at all. It becomes non-dumpable, erases the caller's command line and environment,
    keeps no descriptor of the caller's, joins the namespaces, becomes the user, and only then
    forks the process that appears inside, which execs at once (runc's rule: a host binary is
    never reachable from the container)."""
    from runtime import tty  # now: after setns the host's Python files are out of reach

    try:
        linux.set_dumpable(False)
        linux.erase_command_line("hoist-exec")
        linux.close_fds_above_2(keep=tuple(ns_fds) + ((console_fd,) if console_fd is not None else ()))
        linux.join_new_session_keyring()
        cgroups.join(spec.cgroups)
        last_cap = linux.cap_last_cap()
        for fd in ns_fds:
            linux.setns(fd)
            os.close(fd)
        slave = None
        if console_fd is not None:
            # In the container's mount namespace now: its own devpts, so `tty` names /dev/pts/N there.
            master, slave = tty.open_console_in_namespace()
            tty.send_fd(console_fd, master)
            os.close(master)
            os.close(console_fd)
        for sig in _PROXIED + (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        env2, _ = init.become_user(user, env, cwd, last_cap, spec=spec)
    except init.StartFailure as e:
        print(f"hoist exec: {e.message}", file=sys.stderr, flush=True)
        os._exit(e.code)
    except BaseException as e:
        print(f"hoist exec: cannot enter the container: {e}", file=sys.stderr, flush=True)
        os._exit(125)
    grandchild = os.fork()
    if grandchild == 0:
        try:
            # Its own session, so kill(0) from the command cannot reach the caller's group.
            os.setsid()
            if slave is not None:
                tty.become_console(slave)
            seccomp.apply(spec.seccomp)
            init.exec_command(argv, env2)
        except init.StartFailure as e:
            print(f"hoist exec: {e.message}", file=sys.stderr, flush=True)
            os._exit(e.code)
        except BaseException as e:
            print(f"hoist exec: {e}", file=sys.stderr, flush=True)
            os._exit(125)
    if slave is not None:
        os.close(slave)
    for sig in _PROXIED:
        signal.signal(sig, lambda s, _f: _kill_quiet(grandchild, s))
    _, status = os.waitpid(grandchild, 0)
    os._exit(exit_code_of(status))


@contextlib.contextmanager
def fs_lock(container: Container) -> Iterator[None]:
    """Held from a start's spawn until its monitor says the command runs (its root is mounted
    then), and by ``cp`` while it has a stopped container's root mounted (``runtime.cp``): the
    two never mount one upper dir at once (docker holds the container's lock for a copy too)."""
    with file_lock(container.path / ".fs.lock"):
        yield


class _SignalProxy:
    """While in the block, every signal docker's client proxies goes to ``handler``; the
    previous handlers come back on the way out. Without a handler (``--sig-proxy=false``) the
    signals do to the caller what they do to docker's (a Go program): SIGHUP, SIGINT and SIGTERM
    end it (by that signal), SIGQUIT too (exit 2), the stop signals stop it, the others are
    ignored; the container lives on either way."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalProxy:
        for sig in sorted(signal.valid_signals()):
            if sig in _NOT_PROXIED:
                continue
            try:
                self.previous[sig] = signal.signal(sig, self.handler or _unproxied(sig))
            except (OSError, ValueError):   # the C library's own (32, 33)
                continue
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _unproxied(sig: int) -> Any:
    if sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        return _die_by
    if sig == signal.SIGQUIT:
        return lambda _s, _f: os._exit(2)
    if sig in (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        return signal.SIG_DFL
    return signal.SIG_IGN


def _die_by(sig: int, _frame: object) -> None:
    """End this process by ``sig`` (what a shell sees as 128+N), what it had written flushed."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)


def _wait_forwarding(pid: int) -> int:
    """Wait for ``pid``, passing the caller's signals on to it; docker's exit code."""
    previous = {sig: signal.signal(sig, lambda s, _f: _kill_quiet(pid, s)) for sig in _PROXIED}
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_code_of(status)


def _signal_monitor(container: Container, state: dict[str, Any], sig: int) -> None:
    """Signal the container's monitor, never a process that reused its pid: the identity is
    checked while a pidfd pins the process."""
    pid = int(state.get("monitor_pid") or 0)
    if pid <= 0:
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if container.monitor_alive(state):
            signal.pidfd_send_signal(fd, sig)
    except OSError:
        pass
    finally:
        os.close(fd)


def _kill_quiet(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _host_resolv_conf(network: str) -> str:
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    if network != "host":
        # A nameserver on the host's loopback is unreachable from the container's own loopback.
        lines = [ln for ln in lines if not (ln.startswith("nameserver") and
                                            (" 127." in ln or " ::1" in ln))]
    return "\n".join(lines) + "\n" if lines else ""


def write_etc_files(cdir: Path, spec: ContainerSpec) -> None:
    """The container's /etc/hosts, /etc/hostname and /etc/resolv.conf (bound over the image's)."""
    if spec.network.startswith("container:"):
        from runtime.network.dns import share_etc_files

        share_etc_files(cdir, cdir.parent / spec.network.split(":", 1)[1])
        return
    if spec.network == "host":
        try:
            hosts = Path("/etc/hosts").read_text()
        except OSError:
            hosts = _HOSTS
    else:
        hosts = _HOSTS + "".join(h + "\n" for h in spec.extra_hosts)
    (cdir / "hosts").write_text(hosts)
    (cdir / "hostname").write_text(spec.hostname + "\n")
    if spec.networks or spec.dns:
        from runtime.network.dns import resolv_conf

        try:
            host_text = Path("/etc/resolv.conf").read_text()
        except OSError:
            host_text = ""
        (cdir / "resolv.conf").write_text(resolv_conf(host_text, spec.dns))
        return
    (cdir / "resolv.conf").write_text(_host_resolv_conf(spec.network))
