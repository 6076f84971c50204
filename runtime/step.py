"""Build steps: a process run on a given snapshot chain, whose overlay upper dir is the result.

``run_step`` is what a Dockerfile RUN needs from the runtime. It runs the process exactly as
``hoist run`` runs a container (the same monitor and container init: PID, mount, UTS, IPC and,
unless ``network="host"``, network namespaces; docker's capabilities and seccomp profile,
no_new_privs, no inherited descriptors, its own session keyring, masked /proc paths, nodev and
nosuid binds; one difference: fsync and its kin succeed without flushing anything,
``seccomp.for_container``'s ``sync_noop``, and the overlay is mounted ``volatile``, so its unmount
syncs nothing either: ``runtime.unsynced``), on an overlay of ``chain`` with a fresh upper directory. /etc/hosts,
/etc/resolv.conf and /etc/hostname are bound into the step from the step's folder, so they are
never part of the upper dir; the empty mount points the init had to create for them and for
the extra mounts are removed from the upper dir afterwards, as BuildKit's mount-stub cleaner
(``executor.MountStubsCleaner``: /etc/resolv.conf, /etc/hosts and the step's mounts) does. The
mount points of /proc, /sys and /dev are not the step's mounts but the container's: runc creates
them and BuildKit keeps them, so a RUN on a base without them leaves them in its layer as empty
directories (0755, root), and so does a step here. The upper dir is then an overlay diff the
caller turns into a layer and adopts as the next snapshot (``SnapshotStore.adopt``).

``on_overlay`` is the same overlay for a step that is not a process (COPY/ADD): a function run
in a child with its own mount namespace, on the merged root, writing into a fresh upper dir.

Steps live in ``<root>/build/steps/<id>/`` (not in ``containers/``: ``hoist ps`` never lists
them) and are removed by ``StepResult.close``.

Folders of a killed build: every step folder's name starts with its owner's token
(``runtime.stepowners``), so the next build removes what a killed one left and never a live
build's. A step's monitor dies with its build (``ContainerSpec.caller_pid``: PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runtime import linux, mounts, seccomp
from runtime.containers import Container, ContainerStore
from runtime.errors import RuntimeFailure
from runtime.lifecycle import Runtime, WarmMonitor
from runtime.snapshots import SnapshotStore, overlay_mount_data, remove_tree
from runtime.spec import ContainerSpec, Volume, check_volume_target, check_volumes
from runtime.stepowners import TOKEN_LEN, new_step_id
from storage.tree import is_opaque, is_whiteout

HOSTNAME = "buildkitsandbox"
_ETC_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")


class StepError(RuntimeFailure):
    """A step could not be set up or its function failed (the message says why)."""


@dataclass(frozen=True)
class ProcessSpec:
    """What to run: ``network`` is "host" or "none"; ``mounts`` are extra binds (nodev, nosuid)."""

    argv: list[str]
    env: list[str]
    cwd: str = "/"
    user: str = ""
    network: str = "host"
    mounts: list[Volume] = field(default_factory=list)
    hostname: str = HOSTNAME


@dataclass
class StepResult:
    exit_code: int
    upper: Path
    folder: Path

    def close(self) -> None:
        """Remove what is left of the step (its upper dir too, unless it was adopted)."""
        remove_tree(self.folder)


class StepCancel:
    """Ends a running step from another thread (``builder.execute``: a RUN started before its
    cache key was known, which turns out to be a hit). ``cancel`` SIGKILLs the step's init, the
    PID namespace going with it; a step not started yet is killed as soon as it starts, one
    that has ended is left alone. ``cancelled`` says whether it was asked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target: tuple[Runtime, Container] | None = None
        self.cancelled = False

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            target = self._target
        if target is not None:
            self._kill(*target)

    def _started(self, runtime: Runtime, container: Container) -> None:
        with self._lock:
            self._target = (runtime, container)
            cancelled = self.cancelled
        if cancelled:
            self._kill(runtime, container)

    def _ended(self) -> None:
        with self._lock:
            self._target = None

    def _kill(self, runtime: Runtime, container: Container) -> None:
        # The init may not have written its pid yet: asked again until it has, or the step
        # has ended (run_step reaps it; its exit is then the kill's, or its own).
        deadline = time.monotonic() + 5
        while True:
            try:
                runtime.kill(container, signal.SIGKILL)
                return
            except RuntimeFailure:
                with self._lock:
                    if self._target is None or time.monotonic() > deadline:
                        return
                time.sleep(0.01)


def step_seccomp(root: Path) -> dict[str, str] | None:
    """A step's seccomp filter (docker's default profile, fsync and its kin answered 0), from
    the store's cache under ``root`` ($HOIST_ROOT, resolved) or compiled into it (~45 ms of
    libseccomp: ``builder.execute`` compiles it ahead, while the steps before the first RUN
    run)."""
    return seccomp.for_container(seccomp.DEFAULT, linux.DEFAULT_CAPS, root / "cache" / "seccomp", sync_noop=True)


def _step_store(root: Path) -> ContainerStore:
    store = ContainerStore(root / "build" / "steps")
    store.root.mkdir(parents=True, exist_ok=True)
    os.chmod(root / "build", 0o700)
    return store


def run_step(root: str | os.PathLike[str], chain: list[Path], process: ProcessSpec,
             output: Callable[[bytes], None], warm: WarmMonitor | None = None,
             cancel: StepCancel | None = None) -> StepResult:
    """Run ``process`` on the snapshots ``chain`` (lowest first) of the store under ``root``
    ($HOIST_ROOT); ``output`` gets its stdout and stderr as they come. ``warm``: a monitor
    started ahead for this step (used if it is still alive; the caller discards it either way).
    ``cancel``: what another thread may end the step with (its exit is then SIGKILL's).
    Raises StepError when the step cannot be set up; a process that fails is a StepResult with
    its exit code."""
    runtime = Runtime(root)
    if not runtime.use_overlay:
        raise StepError("building needs overlayfs (HOIST_NO_OVERLAY is set)")
    if process.network not in ("host", "none"):
        raise StepError(f"unsupported network {process.network!r} (use host or none)")
    store = _step_store(runtime.root)
    cid = new_step_id(runtime.root)
    for vol in process.mounts:
        check_volume_target(vol.target)
    spec = ContainerSpec(
        id=cid, name=f"hoist_build_{cid[TOKEN_LEN:TOKEN_LEN + 12]}", image="(build step)", image_id="",
        argv=list(process.argv), env=list(process.env), cwd=process.cwd, user=process.user,
        hostname=process.hostname, network=process.network,
        volumes=check_volumes(list(process.mounts)), created=time.time(),
        seccomp=step_seccomp(runtime.root),
        caller_pid=os.getpid(),
    )
    # Not SPECIAL_DIRS: their mount points stay in the layer, as in BuildKit's (see above).
    stubs = [p.lstrip("/") for p in _ETC_FILES] + \
        [v.target.strip("/") for v in spec.volumes if v.target.strip("/")]
    missing = [s for s in stubs if not _in_chain(chain, s)]
    container = runtime.create_from_spec(spec, chain, store, volatile=True)
    read_fd = -1
    pid = 0
    try:
        started = warm.start(container) if warm is not None else None
        if warm is not None and started is not None:
            pid, read_fd = started, warm.output
        else:
            read_fd, write_fd = os.pipe()
            try:
                pid = runtime.start_captured(container, write_fd)
            finally:
                os.close(write_fd)
        if cancel is not None:
            cancel._started(runtime, container)
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            read_fd = -1
            while chunk := pipe.read(65536):
                output(chunk)
        code = runtime.wait(pid)
        if cancel is not None:
            cancel._ended()
    except BaseException:
        if cancel is not None:
            cancel._ended()
        # Interrupted (Ctrl-C) or failed: the step must not outlive the build.
        if read_fd >= 0:
            os.close(read_fd)
        if pid:
            _kill_step(runtime, container, pid)
        container.destroy()
        raise
    upper = container.path / "upper"
    _remove_stubs(upper, missing)
    return StepResult(code, upper, container.path)


def _kill_step(runtime: Runtime, container: Container, monitor: int) -> None:
    """SIGKILL the step's init (its PID namespace goes with it), then reap the monitor."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            runtime.kill(container, signal.SIGKILL)
            break
        except RuntimeFailure:
            time.sleep(0.01)    # not started yet (or gone already)
            try:
                if os.waitpid(monitor, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
    try:
        os.waitpid(monitor, 0)
    except ChildProcessError:
        pass


def _in_chain(chain: list[Path], rel: str) -> bool:
    """Whether ``rel`` exists in the merged view of ``chain`` (top layer first; whiteouts hide)."""
    for layer in reversed(chain):
        try:
            st = os.lstat(layer / rel)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return not is_whiteout(st)
    return False


def _remove_stubs(upper: Path, missing: list[str]) -> None:
    """Remove the empty mount points the init created in ``upper`` for paths that were not in
    the image, and the empty directories above them that only they had put there."""
    for rel in missing:
        path = upper / rel
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(path)
        elif stat.S_ISDIR(st.st_mode) and not os.listdir(path):
            os.rmdir(path)
        else:
            continue
        parent = path.parent
        while parent != upper:
            fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                opaque = is_opaque(fd)
            finally:
                os.close(fd)
            if opaque or os.listdir(parent):
                break
            os.rmdir(parent)
            parent = parent.parent


_SOURCE_MOUNT = ".hoist-copy-source"


def on_overlay(root: str | os.PathLike[str], chain: list[Path], fn: Callable[[Path], None],
               source: Path | None = None) -> StepResult:
    """Run ``fn(source_dir)`` in a child with a private mount namespace, chrooted into an
    overlay of ``chain`` with a fresh upper dir (so the step's paths, and the symlinks in them,
    resolve inside the new root as BuildKit's do); ``source`` is bound read-only at
    ``source_dir`` for the time of ``fn`` (and gone from the result). Returns the upper dir or
    raises StepError with the message of what ``fn`` raised. ``fn`` must not import anything:
    after the chroot the host's modules are out of reach."""
    runtime = Runtime(root)
    store = _step_store(runtime.root)
    folder = store.root / new_step_id(runtime.root)
    folder.mkdir(mode=0o700)
    upper, work, merged = folder / "upper", folder / "work", folder / "rootfs"
    upper.mkdir(mode=0o755)
    work.mkdir(mode=0o700)
    merged.mkdir(mode=0o755)
    snapshots: SnapshotStore = runtime.snapshots
    try:
        lower_cwd, options = overlay_mount_data(snapshots, chain, folder, upper, work, volatile=True)
    except BaseException:
        remove_tree(folder)
        raise
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(read_fd)
            linux.unshare(linux.CLONE_NEWNS)
            mounts.make_private()
            mounts.mount_overlay(str(merged), lower_cwd, options)
            inner = Path("/" + _SOURCE_MOUNT)
            if source is not None:
                os.mkdir(merged / _SOURCE_MOUNT, 0o700)
                mounts.bind(str(source), str(merged / _SOURCE_MOUNT), readonly=True,
                            extra=linux.MS_NODEV | linux.MS_NOSUID | linux.MS_NOEXEC)
            os.chdir(merged)
            os.chroot(".")
            fn(inner)
            if source is not None:
                os.chdir("/")
                linux.umount2(str(inner), linux.MNT_DETACH)
                os.rmdir(inner)
            code = 0
        except BaseException as e:
            message = str(getattr(e, "message", "") or e) or type(e).__name__
            try:
                os.write(write_fd, message.encode(errors="replace")[:60000])
            except OSError:
                pass
        os._exit(code)
    os.close(write_fd)
    result = StepResult(0, upper, folder)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        _, status = os.waitpid(pid, 0)
    except BaseException:
        # Interrupted: stop the child, leave nothing behind.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        result.close()
        raise
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        result.close()
        raise StepError(message or "the copy step failed")
    return result



__all__ = ["HOSTNAME", "Container", "ProcessSpec", "StepError", "StepResult", "on_overlay", "run_step"]
