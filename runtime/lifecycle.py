"""Create, start, stop, kill, remove and exec into containers.

The CLI verbs are thin wrappers over ``Runtime``. Starting always goes through a fresh monitor
process (``runtime.init``): in the foreground the caller waits for it and forwards signals; with
``detach`` it outlives the caller and writes the exit code into the state when the container ends.
"""

from __future__ import annotations

import json
import os
import signal
import _thread
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runtime import cgroups, linux, seccomp, users
from runtime.containers import Container, ContainerStore
from runtime.errors import ContainerRunning, RuntimeFailure, SetupError
from runtime.image import Image, load_image
from runtime.snapshots import SnapshotStore, plan_rootfs
from runtime.spec import (ContainerSpec, Limits, Volume, build_env, command_line, exit_code_of,
                          parse_device, parse_env_args, parse_labels, parse_signal, parse_size, parse_ulimits,
                          read_env_file,
                          working_dir)

if TYPE_CHECKING:
    from runtime.unpack import Limits as UnpackLimits

_PKG_PARENT = str(Path(__file__).resolve().parent.parent)
_MONITOR = ("import sys; sys.path.insert(0, sys.argv[1]); from runtime.init import main; "
            "sys.exit(main(sys.argv[2:]))")
_PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
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


class Runtime:
    def __init__(self, root: str | os.PathLike[str], use_overlay: bool = True,
                 unpack_limits: UnpackLimits | None = None) -> None:
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.snapshots = SnapshotStore(self.root / "snapshots", unpack_limits)
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
                         store: ContainerStore | None = None) -> Container:
        """Write the folder of a container that runs ``spec`` on the snapshots ``chain`` (lowest
        first), in ``store`` (default: the containers ``hoist ps`` lists)."""
        container = (store or self.containers).reserve(spec)
        try:
            self._prepare(container, spec, chain)
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
            volumes=self._mounts(opts),
        )

    def _mounts(self, opts: RunOptions) -> list[Volume]:
        from runtime import volumes

        return volumes.container_mounts(opts.volumes, opts.mounts, opts.tmpfs, opts.volumes_from,
                                        volumes.VolumeStore(self.root / "volumes"), self.containers)

    def _prepare(self, container: Container, spec: ContainerSpec, chain: list[Path]) -> None:
        (container.path / "rootfs").mkdir(mode=0o755, exist_ok=True)
        plan = plan_rootfs(self.snapshots, chain, container.path, self.use_overlay)
        spec.rootfs = plan.to_json()
        spec.cgroups = cgroups.create(spec.id, spec.limits, devices=[
            (d["kind"], d["major"], d["minor"], d["access"]) for d in spec.devices])
        write_etc_files(container.path, spec)
        container.write_spec(spec)

    # -- start ----------------------------------------------------------------------------------
    def _monitor_argv(self, container: Container, *extra: str) -> list[str]:
        return [sys.executable, "-I", "-S", "-c", _MONITOR, _PKG_PARENT, str(container.path), *extra]

    def _spawn_monitor(self, container: Container, ready_fd: int | None, stdin: int | None,
                       output: int | None) -> int:
        """Start the monitor in its own session; returns its pid. A single-threaded caller (the
        CLI) forks, which saves a Python start-up; anything else re-executes Python."""
        # _thread's count covers threads started either way (threading, or _thread directly);
        # importing threading just to ask would cost the CLI start-up.
        if _thread._count() == 0:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _monitor_child(container, ready_fd, stdin, output)
            return pid
        import subprocess

        extra = (str(ready_fd),) if ready_fd is not None else ()
        proc = subprocess.Popen(self._monitor_argv(container, *extra), start_new_session=True,
                                stdin=stdin, stdout=output, stderr=output,
                                pass_fds=(ready_fd,) if ready_fd is not None else ())
        return proc.pid

    def run_foreground(self, container: Container, interactive: bool = False) -> int:
        """Start and wait; signals to the caller are passed on. Returns the exit code."""
        devnull = None if interactive else os.open(os.devnull, os.O_RDONLY)
        try:
            pid = self._spawn_monitor(container, None, devnull, None)
        finally:
            if devnull is not None:
                os.close(devnull)
        return _wait_forwarding(pid)

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

    def start_detached(self, container: Container) -> None:
        """Start with output to the container's log; return once the command runs (or raise
        StartFailed with docker's exit code)."""
        ready_r, ready_w = os.pipe()
        log = os.open(container.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._spawn_monitor(container, ready_w, devnull, log)
        finally:
            os.close(log)
            os.close(devnull)
        os.close(ready_w)
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
        pid = container.init_pid()
        if not pid:
            raise ContainerRunning(f"container {container.name} is not running")
        _kill_quiet(pid, sig)

    def stop(self, container: Container, timeout: float = 10.0, sig: int | None = None) -> None:
        """``sig`` (default: the container's stop signal: --stop-signal, else the image's
        STOPSIGNAL, else SIGTERM), then SIGKILL after ``timeout`` seconds; waits for the exit."""
        pid = container.init_pid()
        if not pid:
            return
        _kill_quiet(pid, sig if sig is not None else container.spec.stop_signal)
        if self.wait_exit(container, timeout):
            return
        pid = container.init_pid()
        if pid:
            _kill_quiet(pid, signal.SIGKILL)
        self.wait_exit(container, 10.0)

    def wait_exit(self, container: Container, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if not container.path.exists() or not container.monitor_alive():
                return True
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
        status, _ = container.status()
        if status == "running":
            if not force:
                raise ContainerRunning(f"container {container.name} is running "
                                       f"(stop it first, or use rm -f)")
            self.kill(container, signal.SIGKILL)
            self.wait_exit(container, 10.0)
        if container.path.exists():
            cgroups.remove(container.spec.cgroups)
            if container.spec.networks:
                from runtime.network.attach import forget_if_stale

                forget_if_stale(self.root, container.id)   # a killed monitor's endpoints
        container.destroy()

    # -- exec -------------------------------------------------------------------------------------
    def exec(self, container: Container, argv: list[str], env: list[str] | None = None,
             user: str | None = None, workdir: str | None = None) -> int:
        """Run ``argv`` inside the running container's namespaces; returns its exit code."""
        from runtime import init

        pid = container.init_pid()
        if not pid:
            raise ContainerRunning(f"container {container.name} is not running")
        spec = container.spec
        if user is not None:
            _check_user(user)
        spec.seccomp = seccomp.complete(spec.seccomp, self.root / "cache" / "seccomp")
        ns_fds = [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
                  for ns in ("ipc", "uts", "net", "pid", "mnt")]
        full_env = build_env(spec.env, parse_env_args(env or []), spec.hostname)
        child = os.fork()
        if child == 0:
            _exec_child(init, spec, ns_fds, argv, full_env, user if user is not None else spec.user,
                        workdir or spec.cwd)
        for fd in ns_fds:
            os.close(fd)
        return _wait_forwarding(child)


def _log_config(opts: RunOptions) -> dict[str, object]:
    from runtime import logfile  # only here: `hoist run` in the foreground keeps no log

    return logfile.parse_log_options(opts.log_driver, opts.log_opts, parse_size).to_json()


def _check_user(user: str) -> None:
    try:
        users.check_user_spec(user)
    except users.UserNotFound as e:
        raise SetupError(f"invalid user: {e}") from None


def _monitor_child(container: Container, ready_fd: int | None, stdin: int | None,
                   output: int | None) -> None:
    """The forked monitor: a new session, its own stdio, then ``runtime.init``. Never returns."""
    code = 125
    try:
        os.setsid()
        for fd, target in ((stdin, 0), (output, 1), (output, 2)):
            if fd is not None:
                os.dup2(fd, target)
        for sig in _PROXIED:
            signal.signal(sig, signal.SIG_DFL)
        from runtime import init

        code = init.monitor_main(container.path, ready_fd, container)
    except BaseException as e:
        print(f"hoist: container monitor failed: {e}", file=sys.stderr, flush=True)
    finally:
        os._exit(code)


def _exec_child(init, spec: ContainerSpec, ns_fds: list[int], argv: list[str], env: list[str],
                user: str, cwd: str) -> None:
    """Forked from the caller. Never returns.

    This helper is the host's Python, so it never enters the container's PID namespace itself
    (setns for a PID namespace only places future children there): from inside it cannot be
    seen at all. It becomes non-dumpable, erases the caller's command line and environment,
    keeps no descriptor of the caller's, joins the namespaces, becomes the user, and only then
    forks the process that appears inside, which execs at once (runc's rule: a host binary is
    never reachable from the container)."""
    try:
        linux.set_dumpable(False)
        linux.erase_command_line("hoist-exec")
        linux.close_fds_above_2(keep=tuple(ns_fds))
        linux.join_new_session_keyring()
        cgroups.join(spec.cgroups)
        last_cap = linux.cap_last_cap()
        for fd in ns_fds:
            linux.setns(fd)
            os.close(fd)
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
            seccomp.apply(spec.seccomp)
            init.exec_command(argv, env2)
        except init.StartFailure as e:
            print(f"hoist exec: {e.message}", file=sys.stderr, flush=True)
            os._exit(e.code)
        except BaseException as e:
            print(f"hoist exec: {e}", file=sys.stderr, flush=True)
            os._exit(125)
    for sig in _PROXIED:
        signal.signal(sig, lambda s, _f: _kill_quiet(grandchild, s))
    _, status = os.waitpid(grandchild, 0)
    os._exit(exit_code_of(status))


def _wait_forwarding(pid: int) -> int:
    """Wait for ``pid``, passing the caller's signals on to it; docker's exit code."""
    previous = {sig: signal.signal(sig, lambda s, _f: _kill_quiet(pid, s)) for sig in _PROXIED}
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_code_of(status)


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
