"""Container state on disk.

::

    <root>/containers/
    ├── .lock                  flock held while names are checked and taken
    └── <id: 64 hex>/          0700, as ``containers/`` (``upper`` keeps 0755: it is the
                               container's ``/``)
        ├── config.json        the ContainerSpec (its name changes on rename)
        ├── state.json         status, monitor and init pids, exit code, times (atomic rewrites)
        ├── hosts, hostname, resolv.conf    bind-mounted into /etc
        ├── container.log      the monitor's own messages (a detached container's)
        ├── container-json.log[.N]   a detached container's stdout and stderr (runtime/logfile.py)
        ├── attach.sock        a ``-t`` container's console, served by its monitor (runtime/tty.py)
        ├── upper/ work/       the overlay's upper and work directories (upper is the diff)
        └── rootfs/            the mount point of the root (mounted only inside the container)

A container whose monitor is gone while its state still says it runs is reported as exited
(255, as dockerd reports a container its host's reboot ended): the state is only trusted together
with the monitor's pid, its start time and the boot it was recorded in (``monitor_boot``), so
after a reboot nothing in ``state.json`` can pass for a live monitor.

State fields (``state.json``): ``status`` (created, running, restarting, exited), ``pid``,
``monitor_pid``/``monitor_start``/``monitor_boot``, ``exit_code``, ``error``, ``started_at``,
``finished_at``, ``restart_count`` (the runs the restart policy added), ``manually_stopped``
(the user's stop or kill; restart policies honour it), ``paused`` (cgroup freezer), ``health``
(docker's ``State.Health`` ``{Status, FailingStreak, Log}``, present once a container with a
healthcheck has started; reset to starting by each run, written by the run's health process:
``runtime/health.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runtime.errors import ContainerNotFound, NameInUse, SetupError
from runtime.snapshots import remove_tree
from runtime.spec import ContainerSpec
from storage.fsutil import atomic_write, file_lock, private_dir

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 and fields[0] != b"Z" else None


def boot_id() -> str:
    """This boot of the kernel: a monitor recorded under another boot is gone (a reboot)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _atomic_write_json(path: Path, doc: Any) -> None:
    # Not fsynced: state is rewritten at every transition and a crash loses only the newest.
    atomic_write(path, json.dumps(doc, indent=1).encode(), durable=False)


class Container:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.id = self.path.name
        self._spec: ContainerSpec | None = None

    @property
    def spec(self) -> ContainerSpec:
        if self._spec is None:
            try:
                doc = json.loads((self.path / "config.json").read_text())
            except FileNotFoundError:
                raise ContainerNotFound(f"container {self.id[:12]} was removed") from None
            self._spec = ContainerSpec.from_json(doc)
        return self._spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def log_path(self) -> Path:
        return self.path / "container.log"

    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "state.json").read_text())
        except FileNotFoundError:
            return {"status": "created"}

    def update_state(self, **changes: Any) -> dict[str, Any]:
        with file_lock(self.path / ".state.lock"):
            state = self.state()
            state.update(changes)
            _atomic_write_json(self.path / "state.json", state)
            return state

    def modify_state(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """``update_state`` with changes computed from the state as it is, under the same lock."""
        with file_lock(self.path / ".state.lock"):
            state = self.state()
            state.update(change(state))
            _atomic_write_json(self.path / "state.json", state)
            return state

    def monitor_alive(self, state: dict[str, Any] | None = None) -> bool:
        state = self.state() if state is None else state
        pid = state.get("monitor_pid")
        if not pid:
            return False
        if state.get("monitor_boot", "") not in ("", boot_id()):
            return False
        return process_start_time(int(pid)) == state.get("monitor_start")

    def status(self) -> tuple[str, dict[str, Any]]:
        """("created" | "running" | "restarting" | "exited", state). A paused container is
        "running" with ``state["paused"]``."""
        state = self.state()
        status = state.get("status", "created")
        if status != "exited" and state.get("monitor_pid") and not self.monitor_alive(state):
            status = "exited"
            state["status"] = "exited"
            state["exit_code"] = 255
            state["paused"] = False
            state["pid"] = 0
        return status, state

    def init_pid(self) -> int:
        """The host pid of the container's PID 1, or 0 when it is not running."""
        status, state = self.status()
        return int(state.get("pid") or 0) if status == "running" else 0

    def write_spec(self, spec: ContainerSpec) -> None:
        _atomic_write_json(self.path / "config.json", spec.to_json())
        self._spec = spec

    def destroy(self) -> None:
        """Remove the container's folder, whatever its processes left in ``upper`` (a directory
        thousands of levels deep included: the walk is iterative). A ``--rm`` container's
        monitor and ``rm -f`` may both be at it: entries the other one took are not an error."""
        for _ in range(3):
            try:
                remove_tree(self.path)
                return
            except FileNotFoundError:
                if not self.path.exists():
                    return
        remove_tree(self.path)


class ContainerStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        private_dir(self.root)
        with file_lock(self.root / ".lock"):
            yield

    def all(self) -> list[Container]:
        if not self.root.is_dir():
            return []
        out = []
        for entry in os.listdir(self.root):
            if len(entry) != 64:
                continue
            container = Container(self.root / entry)
            try:
                _ = container.spec  # read once, now: another process may be removing it
            except ContainerNotFound:
                continue
            out.append(container)
        return sorted(out, key=lambda c: c.spec.created, reverse=True)

    def get(self, ref: str) -> Container:
        """By exact name, full id, or unique id prefix."""
        containers = self.all()
        for c in containers:
            if c.name == ref or c.id == ref:
                return c
        matches = [c for c in containers if ref and c.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ContainerNotFound(f"{ref!r} matches {len(matches)} containers; give more of the id")
        raise ContainerNotFound(f"no such container: {ref}")

    def new_id(self) -> str:
        return os.urandom(32).hex()

    def reserve(self, spec: ContainerSpec) -> Container:
        """Create the container's folder under the name lock; the name must be free."""
        if not NAME_RE.match(spec.name):
            raise SetupError(f"invalid container name {spec.name!r} (letters, digits, _ . -)")
        with self.locked():
            self._check_name_free(spec.name)
            path = self.root / spec.id
            path.mkdir(mode=0o700)
            container = Container(path)
            container.write_spec(spec)   # no state.json yet: that reads as "created"
        return container

    def _check_name_free(self, name: str) -> None:
        for c in self.all():
            if c.name == name:
                raise NameInUse(f'the name "{name}" is already in use by container {c.id[:12]} '
                                f"(remove or rename it first)")

    def rename(self, container: Container, new_name: str) -> None:
        if not NAME_RE.match(new_name):
            raise SetupError(f"invalid container name {new_name!r} (letters, digits, _ . -)")
        with self.locked():
            self._check_name_free(new_name)
            spec = container.spec
            spec.name = new_name
            container.write_spec(spec)


def uptime_text(seconds: float) -> str:
    """docker's "About a minute" style, roughly."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''}" if s else "Less than a second"
    if s < 3600:
        m = s // 60
        return "About a minute" if m == 1 else f"{m} minutes"
    if s < 86400:
        h = s // 3600
        return "About an hour" if h == 1 else f"{h} hours"
    d = s // 86400
    return f"{d} day{'s' if d != 1 else ''}"


def now() -> float:
    return time.time()
