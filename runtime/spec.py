"""The container spec: what to run and how, from the image config and the user's options.

Entrypoint and Cmd combine as docker combines them: ``--entrypoint`` replaces the image's
ENTRYPOINT and drops its CMD; command-line arguments replace CMD. The environment starts with
a default PATH and HOSTNAME, then the image's Env, then ``-e``/``--env-file``; HOME is filled in
at start from the user's passwd entry, inside the container.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from runtime.errors import ImageConfigInvalid, SetupError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True)
class Volume:
    """A bind of host path ``source`` on ``target``; or, ``tmpfs`` set (its mount options, e.g.
    ``size=1048576,nr_inodes=1024``), a fresh tmpfs there and ``source`` unused."""

    source: str
    target: str
    readonly: bool = False
    tmpfs: str | None = None
    # runtime/volumes.py: the named (or anonymous) volume ``source`` is the data of; whether
    # PID 1 fills it from the image at ``target`` first (a new, empty volume); a tmpfs's noexec
    volume: str = ""
    populate: bool = False
    noexec: bool = False


@dataclass(frozen=True)
class Limits:
    memory: int | None = None       # bytes
    cpus: float | None = None       # CPUs' worth of time
    pids: int | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.memory, self.cpus, self.pids))


@dataclass
class ContainerSpec:
    """Everything the container init needs; stored as the container's config.json."""

    id: str
    name: str
    image: str
    image_id: str
    argv: list[str]
    env: list[str]
    cwd: str = "/"
    user: str = ""
    hostname: str = ""
    network: str = "none"           # none | host | container:ID | a network's name
    # runtime/network: the bridged networks to join (the first is ``network``), published ports
    # (runtime.network.ports bindings), --ip (first network), --network-alias, --add-host
    # lines, --dns servers
    networks: list[str] = field(default_factory=list)
    ports: list[dict[str, Any]] = field(default_factory=list)
    ip: str = ""
    aliases: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    init: bool = False
    volumes: list[Volume] = field(default_factory=list)
    stop_signal: int = int(signal.SIGTERM)
    limits: Limits = field(default_factory=Limits)
    remove: bool = False
    detach: bool = False
    rootfs: dict[str, str] = field(default_factory=dict)
    cgroups: list[str] = field(default_factory=list)
    # runtime.seccomp.for_container's answer: the profile's source and its compiled program;
    # None runs unconfined.
    seccomp: dict[str, str] | None = None
    created: float = 0.0
    # runtime.logfile.LogConfig of a detached container's log (None: the defaults).
    log: dict[str, Any] | None = None
    # docker's container labels: the image's with --label's (or hoist compose's) over them
    labels: dict[str, str] = field(default_factory=dict)
    read_only: bool = False         # --read-only: the root file system (not the mounts on it)
    # privileges (runtime/caps.py): capability names (None: docker's default set); no_new_privs
    # (hoist run: off, as docker; --security-opt no-new-privileges turns it on; build steps and
    # specs written before this field keep it on); --privileged (all caps, no filter, no masks)
    caps: list[str] | None = None
    no_new_privs: bool = True
    privileged: bool = False
    # --device: {"host", "target", "kind" (c or b), "major", "minor", "access" (rwm)}
    devices: list[dict[str, Any]] = field(default_factory=list)
    shm_size: int = 0               # --shm-size in bytes (0: docker's 64 MiB)
    ulimits: dict[str, list[int]] = field(default_factory=dict)   # name -> [soft, hard]; -1 unlimited
    stop_timeout: float | None = None   # --stop-timeout seconds (None: stop's -t, default 10)
    # docker's container Config.Entrypoint and Config.Cmd (``argv`` is them joined), for commit
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    # A build step's: the monitor dies with this process (PDEATHSIG), so a killed build leaves
    # no step running. 0: the monitor lives on its own (``hoist run``).
    caller_pid: int = 0
    # lifecycle (runtime/restart.py, runtime/tty.py): docker's HostConfig.RestartPolicy
    # ({"Name", "MaximumRetryCount"}; None is "no"), Config.Tty and Config.OpenStdin
    restart: dict[str, Any] | None = None
    tty: bool = False
    interactive: bool = False
    # docker's Config.Entrypoint, Cmd, Labels and ExposedPorts as they were at create (inspect)
    config: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ContainerSpec:
        doc = dict(doc)
        doc["volumes"] = [Volume(**v) for v in doc.get("volumes") or []]
        doc["limits"] = Limits(**(doc.get("limits") or {}))
        if "seccomp" not in doc:
            # Written before seccomp existed: such a container gets the default profile (compiled
            # when it is started or entered, ``runtime.seccomp.complete``), never no filter.
            doc["seccomp"] = {"profile": "default"}
        return cls(**doc)


def _env_key(item: str) -> str:
    return item.split("=", 1)[0]


def merge_env(base: list[str], overrides: list[str]) -> list[str]:
    """Replace-or-append by key, keeping the first position of each key (docker's order)."""
    out: dict[str, str] = {}
    for item in list(base) + list(overrides):
        out[_env_key(item)] = item
    return list(out.values())


def build_env(image_env: list[str] | None, user_env: list[str], hostname: str) -> list[str]:
    env = merge_env([f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"], list(image_env or []))
    return merge_env(env, user_env)


def parse_env_args(items: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """``-e K=V`` as given; ``-e K`` takes K from the caller's environment, or is dropped."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    out = []
    for item in items:
        if "=" in item:
            if not item.split("=", 1)[0]:
                raise SetupError(f"invalid environment variable {item!r}")
            out.append(item)
        elif item in env:
            out.append(f"{item}={env[item]}")
    return out


def read_env_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SetupError(f"cannot read env file {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise SetupError(f"env file {path} is not valid UTF-8 (byte {e.start})") from None
    return parse_env_args([ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")])


def parse_labels(items: Sequence[str], files: Sequence[str] = ()) -> dict[str, str]:
    """``--label K=V`` (``K`` alone is an empty value) and ``--label-file`` lines, as docker."""
    lines = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                lines += [ln.strip() for ln in f.read().splitlines()]
        except OSError as e:
            raise SetupError(f"cannot read label file {path}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise SetupError(f"label file {path} is not valid UTF-8 (byte {e.start})") from None
    out: dict[str, str] = {}
    for item in [ln for ln in lines if ln and not ln.startswith("#")] + list(items):
        key, _, value = item.partition("=")
        if not key:
            raise SetupError(f"invalid label {item!r}: the key is empty")
        out[key] = value
    return out


ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


def parse_ulimits(items: Sequence[str]) -> dict[str, list[int]]:
    """``--ulimit NAME=SOFT[:HARD]`` (docker's names; -1 is unlimited; HARD defaults to SOFT)."""
    out: dict[str, list[int]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in ULIMITS:
            raise SetupError(f"invalid ulimit {item!r} (NAME=SOFT[:HARD], NAME one of {', '.join(ULIMITS)})")
        soft_text, _, hard_text = value.partition(":")
        try:
            soft = int(soft_text)
            hard = int(hard_text) if hard_text else soft
        except ValueError:
            raise SetupError(f"invalid ulimit {item!r}: the limits are numbers") from None
        if soft < -1 or hard < -1 or (hard != -1 and (soft == -1 or soft > hard)):
            raise SetupError(f"invalid ulimit {item!r}: the soft limit cannot be more than the hard one")
        out[name] = [soft, hard]
    return out


def parse_device(text: str) -> dict[str, Any]:
    """``--device HOST[:CONTAINER][:PERMS]``: a character or block device of the host."""
    import stat as _stat

    parts = text.split(":")
    host = parts[0]
    target, access = host, "rwm"
    if len(parts) == 2:
        if parts[1] and set(parts[1]) <= set("rwm") and not parts[1].startswith("/"):
            access = parts[1]
        else:
            target = parts[1]
    elif len(parts) == 3:
        target, access = parts[1], parts[2]
    elif len(parts) > 3:
        raise SetupError(f"invalid device {text!r} (HOST[:CONTAINER][:rwm])")
    if not access or not set(access) <= set("rwm"):
        raise SetupError(f"invalid device mode {access!r} in {text!r} (r, w, m)")
    if not host.startswith("/") or not target.startswith("/dev/"):
        raise SetupError(f"invalid device {text!r}: an absolute host path, and a target under /dev")
    try:
        st = os.stat(host)
    except OSError as e:
        raise SetupError(f"error gathering device information while adding device {host!r}: {e.strerror}") from None
    if not (_stat.S_ISCHR(st.st_mode) or _stat.S_ISBLK(st.st_mode)):
        raise SetupError(f"{host} is not a device node")
    return {"host": host, "target": os.path.normpath(target), "kind": "c" if _stat.S_ISCHR(st.st_mode) else "b",
            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev), "access": access}


def command_line(config: dict[str, Any], entrypoint: str | None, args: list[str]) -> list[str]:
    """docker's rule: --entrypoint resets CMD; arguments replace CMD."""
    if entrypoint is not None:
        head = [entrypoint] if entrypoint else []
        argv = head + list(args)
    else:
        argv = list(config.get("Entrypoint") or []) + (list(args) or list(config.get("Cmd") or []))
    if not argv:
        raise ImageConfigInvalid("no command specified (the image has no ENTRYPOINT or CMD; give one)")
    return argv


def working_dir(config: dict[str, Any], override: str | None) -> str:
    cwd = override if override else (config.get("WorkingDir") or "/")
    if not cwd.startswith("/"):
        raise ImageConfigInvalid(f"the working directory {cwd!r} is not an absolute path")
    return os.path.normpath(cwd)


# runc lets a bind cover these few /proc files (lxcfs does); nothing else under /proc.
PROC_BIND_ALLOWED = ("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
                     "/proc/swaps", "/proc/uptime", "/proc/loadavg", "/proc/slabinfo",
                     "/proc/net/dev", "/proc/sys/kernel/ns_last_pid")


def check_volume_target(target: str) -> None:
    """Refuse what docker and runc refuse: covering the root, or /proc (where a bind could hide
    the masks on /proc/kcore and friends), and any path with a NUL."""
    if "\0" in target:
        raise SetupError("volume target contains a NUL byte")
    if target == "/":
        raise SetupError("invalid volume target '/': the destination can't be '/'")
    if (target == "/proc" or target.startswith("/proc/")) and target not in PROC_BIND_ALLOWED:
        raise SetupError(f"invalid volume target {target!r}: mounting into /proc is not allowed")


def check_volumes(volumes: list[Volume]) -> list[Volume]:
    """The volumes, once each target is known to be used once (docker: duplicate mount point)."""
    seen: set[str] = set()
    for vol in volumes:
        if vol.target in seen:
            raise SetupError(f"duplicate mount point: {vol.target}")
        seen.add(vol.target)
    return volumes


def parse_volume(text: str) -> Volume:
    """``HOST:CONTAINER[:ro|rw]``; the host path must exist (docker would create it; hoist
    refuses, so that a typo does not quietly create a directory on the host)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise SetupError(f"invalid volume {text!r} (use HOST:CONTAINER[:ro])")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise SetupError(f"invalid volume mode {mode!r} in {text!r} (use ro or rw)")
    source, target = os.path.abspath(parts[0]), parts[1]
    if not target.startswith("/"):
        raise SetupError(f"volume target {target!r} is not an absolute path")
    target = os.path.normpath(target).replace("//", "/")
    check_volume_target(target)
    if not os.path.exists(source):
        raise SetupError(f"volume source {parts[0]} does not exist (create it first)")
    return Volume(source, target, mode == "ro")


def parse_size(text: str) -> int:
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise SetupError(f"invalid size {text!r} (use e.g. 512m or 1g)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_signal(text: str | int | None, default: int = int(signal.SIGTERM)) -> int:
    """``SIGTERM``, ``TERM`` or ``15``."""
    if text is None or text == "":
        return default
    if isinstance(text, int) or str(text).isdigit():
        return int(text)
    name = str(text).upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise SetupError(f"unknown signal {text!r}") from None


def exit_code_of(status: int) -> int:
    """A wait status as docker reports it: the exit code, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
