"""Resource limits (``--memory``, ``--cpus``, ``--pids-limit``) on cgroup v2 or v1.

v2 (``/sys/fs/cgroup/cgroup.controllers`` exists): one directory ``hoist/<id>`` with
memory.max, cpu.max, pids.max. v1 (or hybrid, where the unified mount has no controllers): one
directory per controller, ``<controller>/hoist/<id>``. A container only gets cgroups when it
has limits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from pathlib import Path

from runtime.errors import SetupError
from runtime.spec import Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PERIOD_US = 100_000


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


def create(container_id: str, limits: Limits, root: Path = CGROUP_ROOT) -> list[str]:
    """Make the container's cgroup directories with the limits set; returns their paths."""
    if not limits.any():
        return []
    v2 = is_v2(root)
    settings = _settings(limits, v2)
    paths: list[str] = []
    try:
        if v2:
            paths.append(str(_create_v2(root, container_id, settings)))
        else:
            for controller, files in settings.items():
                base = root / controller
                if not base.is_dir():
                    raise SetupError(f"cgroup controller {controller} is not mounted at {base}")
                path = base / "hoist" / container_id
                path.mkdir(parents=True, exist_ok=True)
                paths.append(str(path))
                for name, value in files.items():
                    _write(path / name, value)
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
