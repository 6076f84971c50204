"""Docker's container health checks (moby ``daemon/health.go``), daemonless.

The configuration is docker's ``Config.Healthcheck`` (``HealthConfig``): ``Test`` (``["CMD",
argv...]``, ``["CMD-SHELL", command]`` or ``["NONE"]``), durations in nanoseconds (0 = docker's
default: interval 30s, timeout 30s, start period 0s, start interval 5s) and ``Retries`` (0 = 3).
``from_flags`` is the docker CLI's ``--health-*`` parsing, ``merge`` the daemon's merge of the
user's config over the image's HEALTHCHECK (field by field) and ``validate`` its checks.

The state is docker's ``State.Health``: ``{Status, FailingStreak, Log}``. ``fold`` is moby's
handleProbeResult: ``starting`` until the first pass, ``healthy`` after a pass, ``unhealthy`` once
``Retries`` consecutive failures counted; failures while still ``starting`` inside ``StartPeriod``
do not count; the last 5 results are kept, output cut to 4096 bytes (``...`` marks the cut).

Who runs it: the container's monitor (``runtime/init.py``) forks a ``HealthMonitor`` process per
run of the command, before it makes the run's PID namespace. It waits for the monitor to say the
command started, then probes on docker's schedule (``Prober``: the start interval while starting
inside the start period, else the interval, counted from the end of one probe to the start of
the next) and writes each new ``State.Health`` into ``state.json`` (``Container.update_state``,
atomic), where ``inspect`` and ``ps`` read it. Each probe (``exec_probe``) runs as ``hoist exec``
runs a command: the container's namespaces, cgroups, user, environment, working directory,
capabilities and seccomp filter, by a helper that never enters the container's PID namespace
itself; a probe past its timeout has its process group killed and is recorded as exit code -1.
The monitor closes the process's pipe when the run ends (the container exited or was stopped),
which stops it at once, a probe under way included; it dies with the monitor (PDEATHSIG). An
unhealthy container is not restarted (docker does not either).
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from runtime.errors import SetupError
from storage.duration import DurationError, format_duration, parse_duration

if TYPE_CHECKING:
    from runtime.containers import Container
    from runtime.spec import ContainerSpec

SECOND = 1_000_000_000
MINIMUM_DURATION = 1_000_000          # docker's container.MinimumDuration: 1ms
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT_LEN = 4096
EXIT_HEALTHY = 0

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
STATUSES = (STARTING, HEALTHY, UNHEALTHY, NONE)   # what ``ps --filter health=`` accepts

# (exit code, output); exit code -1 and docker's message when the probe timed out or could not start
ProbeResult = tuple[int, bytes]
RunProbe = Callable[[list[str], float], ProbeResult]

_FIELDS = (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period"),
           ("StartInterval", "start_interval"), ("Retries", "retries"))


class HealthConfigError(SetupError):
    """A healthcheck docker refuses (the message is docker's)."""


@dataclass
class HealthConfig:
    """docker's container Config.Healthcheck with a probe to run, durations in nanoseconds
    (0 = docker's default)."""
    test: list[str]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    @classmethod
    def from_docker(cls, doc: dict[str, Any] | None) -> HealthConfig | None:
        """From a container's ``Healthcheck``; None when there is nothing to run (absent, no
        ``Test``, ``["NONE"]``, or a type docker does not know: moby's getProbe)."""
        if not doc:
            return None
        test = [str(t) for t in doc.get("Test") or []]
        if not test or test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
            return None
        values = {}
        for key, name in _FIELDS:
            value = doc.get(key) or 0
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise HealthConfigError(f"healthcheck {key} must be a non-negative integer")
            values[name] = value
        return cls(test=test, **values)

    def to_docker(self) -> dict[str, Any]:
        return to_docker(self.test, **{name: getattr(self, name) for _, name in _FIELDS})

    def argv(self, shell: list[str] | None = None) -> list[str]:
        """What runs: ``CMD``'s arguments, or ``CMD-SHELL``'s after the image's SHELL (default
        ``/bin/sh -c``), as moby's cmdProbe appends them."""
        if self.test[0] == "CMD-SHELL":
            return list(shell or ["/bin/sh", "-c"]) + list(self.test[1:])
        return list(self.test[1:])

    @property
    def interval_s(self) -> float:
        return (self.interval or DEFAULT_INTERVAL) / SECOND

    @property
    def timeout_s(self) -> float:
        return (self.timeout or DEFAULT_TIMEOUT) / SECOND

    @property
    def start_period_s(self) -> float:
        return self.start_period / SECOND

    @property
    def start_interval_s(self) -> float:
        return (self.start_interval or DEFAULT_START_INTERVAL) / SECOND


def to_docker(test: list[str] | None, interval: int = 0, timeout: int = 0, start_period: int = 0,
              start_interval: int = 0, retries: int = 0) -> dict[str, Any]:
    """docker's JSON of a HealthConfig (every field ``omitempty``)."""
    doc: dict[str, Any] = {"Test": list(test)} if test else {}
    for key, value in (("Interval", interval), ("Timeout", timeout), ("StartPeriod", start_period),
                       ("StartInterval", start_interval), ("Retries", retries)):
        if value:
            doc[key] = value
    return doc


# -- configuration: the CLI's flags, the daemon's merge and checks ----------------------------------

def from_flags(cmd: str | None = None, interval: str | None = None, timeout: str | None = None,
               retries: str | None = None, start_period: str | None = None,
               start_interval: str | None = None, no_healthcheck: bool = False) -> dict[str, Any] | None:
    """The docker CLI's ``--health-*`` flags as the user's HealthConfig (None: none given).
    Raises HealthConfigError with the CLI's messages."""
    durations = {}
    for flag, text in (("--health-interval", interval), ("--health-timeout", timeout),
                       ("--health-start-period", start_period), ("--health-start-interval", start_interval)):
        try:
            durations[flag] = parse_duration(text) if text is not None else 0
        except DurationError as e:
            raise HealthConfigError(f'invalid argument "{text}" for "{flag}" flag: {e}') from None
    count = 0
    if retries is not None:
        try:
            if retries != retries.strip():
                raise ValueError(retries)   # Go's ParseInt takes no spaces (Python's int would)
            count = int(retries, 0)
        except ValueError:
            raise HealthConfigError(f'invalid argument "{retries}" for "--health-retries" flag: '
                                    f'strconv.ParseInt: parsing "{retries}": invalid syntax') from None
    have = bool(cmd) or count != 0 or any(durations.values())
    if no_healthcheck:
        if have:
            raise HealthConfigError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not have:
        return None
    for flag, value in (("--health-interval", durations["--health-interval"]),
                        ("--health-timeout", durations["--health-timeout"]), ("--health-retries", count),
                        ("--health-start-period", durations["--health-start-period"]),
                        ("--health-start-interval", durations["--health-start-interval"])):
        if value < 0:
            raise HealthConfigError(f"{flag} cannot be negative")
    return to_docker(["CMD-SHELL", cmd] if cmd else None, durations["--health-interval"],
                     durations["--health-timeout"], durations["--health-start-period"],
                     durations["--health-start-interval"], count)


def merge(user: dict[str, Any] | None, image: dict[str, Any] | None) -> dict[str, Any] | None:
    """The container's Healthcheck: the user's (flags, compose) over the image's HEALTHCHECK
    field by field, as the daemon merges them (a zero or empty field takes the image's)."""
    if not image:
        return dict(user) if user is not None else None
    if user is None:
        return dict(image)
    out = dict(user)
    if not out.get("Test"):
        if image.get("Test"):
            out["Test"] = list(image["Test"])
    for key, _ in _FIELDS:
        if not out.get(key) and image.get(key):
            out[key] = image[key]
    return to_docker(out.get("Test"), *(int(out.get(key) or 0) for key, _ in _FIELDS))


def validate(doc: dict[str, Any] | None) -> None:
    """The daemon's checks of a container's Healthcheck (docker's messages)."""
    if not doc:
        return
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        value = doc.get(key) or 0
        if not isinstance(value, int) or isinstance(value, bool):
            raise HealthConfigError(f"{key} in Healthcheck must be an integer of nanoseconds")
        if value != 0 and value < MINIMUM_DURATION:
            raise HealthConfigError(f"{key} in Healthcheck cannot be less than {format_duration(MINIMUM_DURATION)}")
    retries = doc.get("Retries") or 0
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise HealthConfigError("Retries in Healthcheck cannot be negative")
    test = doc.get("Test")
    if test is not None and (not isinstance(test, list) or not all(isinstance(t, str) for t in test)):
        raise HealthConfigError("Test in Healthcheck must be a list of strings")


# -- the state -------------------------------------------------------------------------------------

def go_time(ns: int | None = None) -> str:
    """A time as Go's encoding/json writes a ``time.Now()``: RFC 3339 with nanoseconds (trailing
    zeros dropped) in the local zone, ``Z`` for UTC."""
    ns = time.time_ns() if ns is None else ns
    seconds, nanos = divmod(ns, SECOND)
    local = _dt.datetime.fromtimestamp(seconds).astimezone()
    frac = f"{nanos:09d}".rstrip("0")
    offset = local.utcoffset() or _dt.timedelta(0)
    if offset:
        minutes = int(offset.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    else:
        zone = "Z"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + zone


def new_state() -> dict[str, Any]:
    return {"Status": STARTING, "FailingStreak": 0, "Log": []}


def reset(previous: dict[str, Any] | None) -> dict[str, Any]:
    """Health at a (re)start (moby's initHealthMonitor): starting, no failures, the log kept."""
    state = new_state()
    if previous and isinstance(previous.get("Log"), list):
        state["Log"] = list(previous["Log"])[-MAX_LOG_ENTRIES:]
    return state


def output_text(output: bytes, truncated: bool = False) -> str:
    """moby's limitedBuffer: at most 4096 bytes, then ``...`` if more were written."""
    text = output[:MAX_OUTPUT_LEN].decode("utf-8", "replace")
    return text + "..." if truncated or len(output) > MAX_OUTPUT_LEN else text


def fold(health: dict[str, Any], config: HealthConfig, started_at: float, probe_start: float,
         start: str, end: str, exit_code: int, output: str | bytes) -> dict[str, Any]:
    """One probe result folded into ``health`` (moby's handleProbeResult); returns it.
    ``started_at`` and ``probe_start`` are epoch seconds (the start period counts from the
    container's start to the probe's)."""
    text = output_text(output) if isinstance(output, bytes) else output
    log = list(health.get("Log") or [])
    log.append({"Start": start, "End": end, "ExitCode": exit_code, "Output": text})
    health["Log"] = log[-MAX_LOG_ENTRIES:]
    if exit_code == EXIT_HEALTHY:
        health["FailingStreak"] = 0
        health["Status"] = HEALTHY
        return health
    counts = not (health.get("Status") == STARTING and probe_start - started_at < config.start_period_s)
    if counts:
        health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
        if health["FailingStreak"] >= (config.retries or DEFAULT_RETRIES):
            health["Status"] = UNHEALTHY
    return health


def status_of(state: dict[str, Any]) -> str:
    """docker's HealthString of a container's state: its Health's Status, or ``none``."""
    health = state.get("health")
    if isinstance(health, dict) and health.get("Status") in (STARTING, HEALTHY, UNHEALTHY):
        return str(health["Status"])
    return NONE


def timeout_output(timeout_ns: int, output: str = "") -> str:
    base = f"Health check exceeded timeout ({format_duration(timeout_ns)})"
    return f"{base}: {output}" if output else base


# -- the schedule ------------------------------------------------------------------------------------

class Stop(Protocol):
    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool: ...


class Prober:
    """Runs ``config``'s probe on docker's schedule until ``stop`` is set; each new Health
    document goes to ``write``. ``run`` loops in the calling thread (the health process);
    ``start``/``stop`` run it on a thread of its own."""

    def __init__(self, config: HealthConfig, run_probe: RunProbe,
                 write: Callable[[dict[str, Any]], None], started_at: float | None = None,
                 health: dict[str, Any] | None = None, stop: Stop | None = None,
                 shell: list[str] | None = None, paused: Callable[[], bool] = lambda: False) -> None:
        self.config = config
        self.run_probe = run_probe
        self.write = write
        self.started_at = time.time() if started_at is None else started_at
        self.health = health if health is not None else new_state()
        self.shell = shell
        self.paused = paused
        self._stop: Stop = stop if stop is not None else threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Write the starting state and probe on a thread (until :meth:`stop`)."""
        self.write(dict(self.health))
        self._thread = threading.Thread(target=self.run, name="hoist-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if isinstance(self._stop, threading.Event):
            self._stop.set()
        if self._thread is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def interval(self) -> float:
        """moby's getInterval: the start interval while starting inside the start period."""
        cfg = self.config
        if time.time() - self.started_at >= cfg.start_period_s:
            return cfg.interval_s
        return cfg.start_interval_s if self.health.get("Status") == STARTING else cfg.interval_s

    def run(self) -> None:
        argv = self.config.argv(self.shell)
        while not self._stop.wait(self.interval()):
            if self.paused():
                continue   # a frozen container is not probed (docker stops its monitor meanwhile)
            probe_start = time.time()
            start = go_time()
            try:
                code, output = self.run_probe(argv, self.config.timeout_s)
            except ProbeStopped:
                continue   # stopped, or paused meanwhile: dropped, as moby's monitor drops it
            except Exception as e:   # the probe could not even start: docker records -1
                code, output = -1, str(e).encode()
            if self._stop.is_set():
                return   # stopped while probing: the result is dropped, as moby's monitor does
            self.health = fold(self.health, self.config, self.started_at, probe_start, start,
                               go_time(), code, output)
            self.write(dict(self.health))


# -- the monitor's health process --------------------------------------------------------------------

class _PipeStop:
    """Set once the monitor closes its end of the pipe (EOF on ``fd``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._set = False

    def is_set(self) -> bool:
        if not self._set and select.select([self.fd], [], [], 0)[0]:
            self._set = True
        return self._set

    def wait(self, timeout: float) -> bool:
        if not self._set and select.select([self.fd], [], [], max(0.0, timeout))[0]:
            self._set = True
        return self._set


class HealthMonitor:
    """One run's health process (see the module docstring). ``spawn`` forks it (before the run's
    PID namespace exists); ``started`` tells it PID 1's pid and start time; ``stop`` ends it and
    waits: once it returns nothing probes the container any more and nothing writes its
    Health."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid, self.fd = pid, fd

    @classmethod
    def spawn(cls, container: Container, spec: ContainerSpec, config: HealthConfig) -> HealthMonitor:
        from runtime import linux

        r, w = os.pipe()
        monitor = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != monitor:
                    os._exit(0)   # the monitor died before PDEATHSIG was armed
                linux.close_fds_above_2(keep=(r,))
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.close(null)
                linux.set_process_name("hoist-health")
                _health_main(container, spec, config, r)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(r)
        return cls(pid, w)

    def started(self, init_pid: int, started_at: float) -> None:
        try:
            os.write(self.fd, f"{init_pid} {started_at!r}\n".encode())
        except OSError:
            pass   # it is gone (it died with an error): the run goes on without probes

    def stop(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.pid:
            return
        deadline = time.monotonic() + 5.0
        while True:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                break
            if time.monotonic() > deadline:
                _kill_quiet(self.pid, signal.SIGKILL)
                deadline = time.monotonic() + 3600
            time.sleep(0.005)
        self.pid = 0


def _read_start(fd: int) -> tuple[int, float] | None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 256)
        if not chunk:
            return None
        data += chunk
    pid_text, when = data.decode().split()
    return int(pid_text), float(when)


def _health_main(container: Container, spec: ContainerSpec, config: HealthConfig, fd: int) -> None:
    start = _read_start(fd)
    if start is None:
        return   # the command never started
    init_pid, started_at = start
    stop = _PipeStop(fd)
    health = container.state().get("health")
    shell = (spec.config or {}).get("Shell") or None

    def write(doc: dict[str, Any]) -> None:
        if not stop.is_set():
            container.update_state(health=doc)

    def paused() -> bool:
        return bool(container.state().get("paused"))

    def probe(argv: list[str], timeout: float) -> ProbeResult:
        return exec_probe(spec, init_pid, argv, config.timeout or DEFAULT_TIMEOUT, stop, paused)

    Prober(config, probe, write, started_at=started_at,
           health=health if isinstance(health, dict) else reset(None), stop=stop,
           shell=shell, paused=paused).run()


# -- one probe inside the container ---------------------------------------------------------------

class ProbeStopped(Exception):
    """The run ended, or the container was paused, while the probe ran (its result is dropped)."""


PAUSE_POLL = 0.1   # seconds between two looks at the paused flag while a probe runs


def exec_probe(spec: ContainerSpec, init_pid: int, argv: list[str], timeout_ns: int,
               stop: Stop | None = None, paused: Callable[[], bool] | None = None) -> ProbeResult:
    """Run ``argv`` in the container whose PID 1 is ``init_pid``, as ``hoist exec`` would (the
    container's user, environment and working directory); stdout and stderr together, kept up to
    4096 bytes. Past ``timeout_ns`` its process group is killed: (-1, docker's message). A
    command that cannot start is (-1, why). Raises ProbeStopped when ``stop`` is set, or
    ``paused()`` says the container was frozen, meanwhile (the probe is killed: docker stops
    probing a paused container, and a frozen probe would only time out)."""
    from runtime import init   # not at the top: init (the monitor) imports this module
    from runtime.spec import build_env

    ns_fds: list[int] = []
    try:
        for ns in ("ipc", "uts", "net", "pid", "mnt"):
            ns_fds.append(os.open(f"/proc/{init_pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC))
    except OSError as e:
        for fd in ns_fds:
            os.close(fd)
        return -1, f"cannot enter the container: {e.strerror}".encode()
    env = build_env(spec.env, [], spec.hostname)
    out_r, out_w = os.pipe()
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(out_r)
        os.close(report_r)
        _probe_helper(init, spec, ns_fds, argv, env, out_w, report_w)
    for fd in (*ns_fds, out_w, report_w):
        os.close(fd)
    try:
        return _collect(child, out_r, report_r, timeout_ns, stop, paused)
    finally:
        os.close(out_r)
        os.close(report_r)


def _collect(child: int, out_r: int, report_r: int, timeout_ns: int, stop: Stop | None,
             paused: Callable[[], bool] | None) -> ProbeResult:
    pidfd = os.pidfd_open(child)
    output, truncated = bytearray(), False
    deadline = time.monotonic() + timeout_ns / SECOND
    watch = [out_r, pidfd] + ([stop.fd] if isinstance(stop, _PipeStop) else [])
    polled = paused is not None or not (stop is None or isinstance(stop, _PipeStop))
    timed_out = stopped = frozen = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready = select.select(watch, [], [], min(remaining, PAUSE_POLL) if polled else remaining)[0]
            if out_r in ready:
                chunk = os.read(out_r, 65536)
                if chunk:
                    keep = MAX_OUTPUT_LEN - len(output)
                    output += chunk[:max(0, keep)]
                    truncated = truncated or len(chunk) > keep
                else:
                    watch.remove(out_r)
            if pidfd in ready:
                break
            if stop is not None and stop.is_set():
                stopped = True
                break
            if paused is not None and paused():
                # A frozen helper cannot take SIGTERM; SIGKILL (and the probe's PDEATHSIG) lands
                # as soon as the freezer lets it (cgroup v1: at the thaw).
                _kill_quiet(child, signal.SIGKILL)
                stopped = frozen = True
                break
        if timed_out or (stopped and not frozen):
            _end_helper(child)
        status = _reap(child)
    finally:
        os.close(pidfd)
    if stopped:
        raise ProbeStopped()
    # What the command wrote before it ended (a child it left behind may hold the pipe open:
    # nothing waits for that).
    os.set_blocking(out_r, False)
    try:
        while chunk := os.read(out_r, 65536):
            keep = MAX_OUTPUT_LEN - len(output)
            output += chunk[:max(0, keep)]
            truncated = truncated or len(chunk) > keep
    except BlockingIOError:
        pass
    text = output_text(bytes(output), truncated)
    if timed_out:
        return -1, timeout_output(timeout_ns, text).encode()
    report = os.read(report_r, 65536)
    if report:
        try:
            return -1, str(json.loads(report)["message"]).encode()
        except (ValueError, KeyError, TypeError):
            return -1, report
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status), text.encode()
    return os.WEXITSTATUS(status), text.encode()


def _end_helper(child: int) -> None:
    """The helper kills the probe's process group on SIGTERM; SIGKILL if it does not go."""
    _kill_quiet(child, signal.SIGTERM)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if _exited(child):
            return
        time.sleep(0.005)
    _kill_quiet(child, signal.SIGKILL)


def _exited(pid: int) -> bool:
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _reap(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


def _kill_quiet(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _probe_helper(init: Any, spec: ContainerSpec, ns_fds: list[int], argv: list[str], env: list[str],
                  out_w: int, report_w: int) -> None:
    """Forked from the health process. Never returns. As ``hoist exec``'s helper: non-dumpable,
    nothing of the monitor's open, the container's cgroups and namespaces, its user; the probe
    is its child, in a session of its own, killed with it (PDEATHSIG) and, on SIGTERM, with
    its whole process group."""
    from runtime import cgroups, linux, seccomp

    try:
        linux.set_dumpable(False)
        linux.erase_command_line("hoist-health")
        linux.close_fds_above_2(keep=(*ns_fds, out_w, report_w))
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.close(out_w)
        linux.join_new_session_keyring()
        cgroups.join(spec.cgroups)
        last_cap = linux.cap_last_cap()
        for fd in ns_fds:
            linux.setns(fd)
            os.close(fd)
        env2, _ = init.become_user(spec.user, env, spec.cwd, last_cap, spec=spec)
    except init.StartFailure as e:
        _report(report_w, e.message)
        os._exit(e.code)
    except BaseException as e:
        _report(report_w, f"cannot enter the container: {e}")
        os._exit(125)
    grandchild = os.fork()
    if grandchild == 0:
        try:
            os.setsid()
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != 0:   # the helper (outside this PID namespace) is already gone
                os._exit(137)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            seccomp.apply(spec.seccomp)
            init.exec_command(argv, env2)
        except init.StartFailure as e:
            _report(report_w, e.message)
            os._exit(e.code)
        except BaseException as e:
            _report(report_w, str(e) or type(e).__name__)
            os._exit(125)
    os.close(report_w)

    def end(_sig: int, _frame: object) -> None:
        try:
            os.killpg(grandchild, signal.SIGKILL)
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise
    signal.signal(signal.SIGTERM, end)
    status = _reap(grandchild)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def _report(fd: int, message: str) -> None:
    try:
        os.write(fd, json.dumps({"message": message}).encode())
    except OSError:
        pass
