"""Resource limits (``--memory``, ``--cpus``, ``--pids-limit``) on cgroup v2 or v1.

v2 (``/sys/fs/cgroup/cgroup.controllers`` exists): one directory ``hoist/<id>`` with
memory.max, cpu.max, pids.max. v1 (or hybrid, where the unified mount has no controllers): one
directory per controller, ``<controller>/hoist/<id>``.

Every container gets a device cgroup whatever its limits, so that a device node it makes (mknod
is allowed, as in docker) cannot be opened unless it is one of ``ALLOWED_DEVICES``: on v1 the
devices controller's deny-all plus allow list, on v2 a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program
(``runtime/devfilter.py``) attached to the container's cgroup. This is the second wall: every
file system a container can write to is also mounted ``nodev``.

``pause``/``unpause`` use the freezer: on v1 every container gets a ``freezer`` cgroup too, on v2
``cgroup.freeze`` of its own. ``update`` changes limits of a running container, making the v1
controller's cgroup (and moving the container's processes into it) when the container had none.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterable
from pathlib import Path

from runtime import devfilter
from runtime.errors import SetupError
from runtime.spec import Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PERIOD_US = 100_000

# docker's default device rules (moby oci/defaults.go): mknod of anything, and read/write of
# null, zero, full, random, urandom, tty, console, ptmx and the pty slaves only.
# (type, major, minor, access); -1 is the wildcard.
ALLOWED_DEVICES: tuple[tuple[str, int, int, str], ...] = (
    ("c", -1, -1, "m"), ("b", -1, -1, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, -1, "rwm"),
)


def device_rule(kind: str, major: int, minor: int, access: str) -> str:
    """A rule in the v1 ``devices.allow`` syntax: ``c 1:3 rwm``, ``b *:* m``."""
    num = lambda n: "*" if n < 0 else str(n)  # noqa: E731
    return f"{kind} {num(major)}:{num(minor)} {access}"


def is_v2(root: Path = CGROUP_ROOT) -> bool:
    return (root / "cgroup.controllers").is_file()


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        raise SetupError(f"cannot set {path}: {e.strerror}") from None


def _settings(limits: Limits, v2: bool) -> dict[str, dict[str, str]]:
    """controller → {file: value}."""
    out: dict[str, dict[str, str]] = {}
    if limits.memory is not None:
        out["memory"] = {"memory.max" if v2 else "memory.limit_in_bytes": str(limits.memory)}
    if limits.cpus is not None:
        quota = max(1000, int(limits.cpus * _PERIOD_US))
        out["cpu"] = ({"cpu.max": f"{quota} {_PERIOD_US}"} if v2 else
                      {"cpu.cfs_period_us": str(_PERIOD_US), "cpu.cfs_quota_us": str(quota)})
    if limits.pids is not None:
        out["pids"] = {"pids.max": str(limits.pids) if limits.pids > 0 else "max"}
    return out


def create(container_id: str, limits: Limits, root: Path = CGROUP_ROOT,
           devices: Iterable[tuple[str, int, int, str]] = ()) -> list[str]:
    """Make the container's cgroup directories: the limits set, and the device rules always
    (``ALLOWED_DEVICES`` and ``devices``, what ``--device`` adds). Returns their paths. Raises
    SetupError when a controller is missing or refuses a value."""
    allowed = ALLOWED_DEVICES + tuple(devices)
    v2 = is_v2(root)
    settings = _settings(limits, v2)
    paths: list[str] = []
    try:
        if v2:
            path = _create_v2(root, container_id, settings)
            paths.append(str(path))
            devfilter.attach(path, allowed)
        else:
            settings["devices"] = {}
            settings["freezer"] = {}
            for controller, files in settings.items():
                base = root / controller
                if not base.is_dir():
                    if controller in ("devices", "freezer"):
                        # No devices controller (some nested or minimal hosts): nodev mounts
                        # remain the only wall, as they were before v1 cgroups existed.
                        continue
                    raise SetupError(f"cgroup controller {controller} is not mounted at {base}")
                path = base / "hoist" / container_id
                path.mkdir(parents=True, exist_ok=True)
                paths.append(str(path))
                for name, value in files.items():
                    _write(path / name, value)
                if controller == "devices":
                    _write(path / "devices.deny", "a")
                    for rule in allowed:
                        _write(path / "devices.allow", device_rule(*rule))
    except BaseException:
        remove(paths)
        raise
    return paths


def _create_v2(root: Path, container_id: str, settings: dict[str, dict[str, str]]) -> Path:
    enable = " ".join(f"+{c}" for c in settings)
    parent = root / "hoist"
    parent.mkdir(exist_ok=True)
    for level in (root, parent):
        with contextlib.suppress(OSError):
            (level / "cgroup.subtree_control").write_text(enable)
    path = parent / container_id
    path.mkdir(exist_ok=True)
    for files in settings.values():
        for name, value in files.items():
            _write(path / name, value)
    return path


def join(paths: list[str], pid: int = 0) -> None:
    """Move ``pid`` (0: the caller) into every cgroup in ``paths``."""
    for path in paths:
        _write(Path(path) / "cgroup.procs", str(pid or os.getpid()))


def remove(paths: list[str], timeout: float = 2.0) -> None:
    """Remove the cgroups once their processes are gone (rmdir fails with EBUSY until then)."""
    deadline = time.monotonic() + timeout
    for path in paths:
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    break
                time.sleep(0.02)


def freeze(paths: list[str], frozen: bool, timeout: float = 10.0) -> None:
    """Freeze (or thaw) every process of the container and wait until the kernel says so."""
    v1 = [Path(p) for p in paths if (Path(p) / "freezer.state").exists()]
    v2 = [Path(p) for p in paths if (Path(p) / "cgroup.freeze").exists()]
    if v1:
        path, want = v1[0] / "freezer.state", "FROZEN" if frozen else "THAWED"
        _write(path, want)
        done = lambda: path.read_text().strip() == want  # noqa: E731
    elif v2:
        _write(v2[0] / "cgroup.freeze", "1" if frozen else "0")
        events = v2[0] / "cgroup.events"
        done = lambda: f"frozen {int(frozen)}" in events.read_text().splitlines()  # noqa: E731
    else:
        raise SetupError("the container has no freezer cgroup (it was created by an older hoist: "
                         "recreate it to pause it)")
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SetupError(f"the container did not {'freeze' if frozen else 'thaw'} within {timeout:g}s")
        time.sleep(0.001)


def update(container_id: str, paths: list[str], limits: Limits, root: Path = CGROUP_ROOT) -> list[str]:
    """Apply ``limits`` to a running container's cgroups; returns the (possibly longer) paths."""
    v2 = is_v2(root)
    settings = _settings(limits, v2)
    paths = list(paths)
    if v2:
        path = _create_v2(root, container_id, settings)
        return paths if str(path) in paths else paths + [str(path)]
    procs = _procs(paths)
    for controller, files in settings.items():
        path = root / controller / "hoist" / container_id
        if str(path) not in paths:
            if not (root / controller).is_dir():
                raise SetupError(f"cgroup controller {controller} is not mounted at {root / controller}")
            path.mkdir(parents=True, exist_ok=True)
            paths.append(str(path))
            for name, value in files.items():   # the limit first, then the processes
                _write(path / name, value)
            for pid in procs:
                with contextlib.suppress(SetupError):   # one that exited meanwhile
                    _write(path / "cgroup.procs", str(pid))
            continue
        for name, value in files.items():
            _write(path / name, value)
    return paths


def _procs(paths: list[str]) -> list[int]:
    for path in paths:
        try:
            return [int(line) for line in (Path(path) / "cgroup.procs").read_text().split()]
        except OSError:
            continue
    return []
