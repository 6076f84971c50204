"""Snapshots written without a sync, and what a crash does to them.

A build step's overlay is mounted ``volatile`` (``runtime.step``): without it, the unmount at
the end of each RUN (the step's mount namespace going) runs syncfs on the whole file system
under the store, so every step waits for everything dirty there to reach the disk: after a
COPY of 50 MB on this machine's ext4, 0.15-0.2 s a RUN (BuildKit pays the same; dagger mounts
its steps ``volatile`` too). A COPY written straight into its snapshot is not synced either. The
later steps read what the earlier ones wrote through the page cache, so only a crash (the
machine going down, not the build) can lose it, and a cache entry, written with fsync, would
then name a snapshot with files missing or empty.

``UnsyncedWrites`` makes that safe. A build holds a marker ``<snapshots>/.unsynced/<owner
token>`` holding the boot id (its name made durable first; one a crash left empty reads as
another boot's) until a syncfs that started after its last write has succeeded: ``close``, at
the end of the build (after its pushes), runs it and then removes the marker and those of builds
that died in this boot (their writes came before this sync). The CLI does not wait for that
sync: a detached ``sync -f`` writes the build's 50 MB back while the next command runs, as
BuildKit's unmounts would have made each step wait for (syncing during the build instead, in a
thread, slowed the RUN steps it overlapped as much as it saved). A marker whose boot id is not
this boot's is a crash while a build's snapshots were unsynced: ``recover`` (run before a build
or a container uses the store) removes every snapshot that came into place since that marker was
made (its ctime, which the rename that adopts a snapshot sets), then the marker. Their blobs and
cache entries stay: a snapshot is unpacked again from its blob, and a lazy layer's cache entry,
whose snapshot is gone, misses (``builder.execute``). Conservative by design: snapshots of other
builds in that window go too.

A failed syncfs (a writeback error) keeps the marker, so the next boot treats that build's
snapshots as lost.
"""

from __future__ import annotations

import contextlib
import os
import _thread
from pathlib import Path

_BOOT_ID = "/proc/sys/kernel/random/boot_id"
_SLACK_NS = 2_000_000_000      # ctime is coarse (a jiffy); err on the side of removing
_recovered: set[str] = set()    # store roots this process has checked
_recovered_lock = _thread.allocate_lock()   # not threading: `hoist run` start-up


def boot_id() -> str:
    try:
        with open(_BOOT_ID) as f:
            return f.read().strip()
    except OSError:
        return ""


def _markers(store: Path) -> Path:
    return store / ".unsynced"


def _read(marker: Path) -> tuple[str, int] | None:
    """(boot id, ctime ns) of a marker; None when it went meanwhile."""
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, 200).decode(errors="replace").strip(), os.fstat(fd).st_ctime_ns
    finally:
        os.close(fd)


def _boot_of(marker: Path) -> str | None:
    found = _read(marker)
    return found[0] if found is not None else None


def recover(store: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
    """Remove the snapshots a crash may have cut short (module doc); once a process per store
    unless ``force``. Light when there is nothing to do: the build memo's path runs it.
    Returns what was removed."""
    root = Path(store)
    key = os.path.realpath(root)
    with _recovered_lock:
        if key in _recovered and not force:
            return []
        _recovered.add(key)
    try:
        names = os.listdir(_markers(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    now = boot_id()
    if all(name.startswith(".") or _boot_of(_markers(root) / name) in (None, now) for name in names):
        return []
    from runtime.snapshots import remove_tree
    from storage.fsutil import file_lock

    removed: list[Path] = []
    with file_lock(root / ".locks" / "unsynced"):
        # Read again under the lock: another process may have recovered meanwhile.
        stale = {marker: found[1] for marker in _markers(root).iterdir()
                 if not marker.name.startswith(".") and (found := _read(marker)) is not None and found[0] != now}
        if stale:
            since = min(stale.values()) - _SLACK_NS
            for entry in sorted(os.listdir(root)):
                if entry.startswith(".") or entry == "empty":
                    continue
                path = root / entry
                with contextlib.suppress(FileNotFoundError):
                    if os.lstat(path).st_ctime_ns >= since:
                        remove_tree(path)
                        removed.append(path)
        for marker in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(marker)
    return removed


class UnsyncedWrites:
    """One build's marker and the sync that ends it (module doc). ``root``: $HOIST_ROOT."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        from runtime.stepowners import claim_prefix

        self.root = Path(root)
        self.store = self.root / "snapshots"
        self.token = claim_prefix(self.root)
        self._marker = _markers(self.store) / self.token
        self._open = False
        self._dead: list[str] = []     # markers of this boot's dead builds, seen at open

    def open(self) -> None:
        """Recover what a crash left, then put the marker down (durably)."""
        from storage.fsutil import fsync_dir, private_dir

        recover(self.store)
        private_dir(self.store)
        folder = _markers(self.store)
        folder.mkdir(mode=0o700, exist_ok=True)
        self._dead = self._dead_markers(folder)
        staging = folder / f".new-{self.token}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (boot_id() + "\n").encode())
        finally:
            os.close(fd)
        # Renamed in whole (a reader never sees it empty); only its name is made durable (one
        # fsync, ~10 ms on a journalled ext4): a crash may leave it empty, which names no boot,
        # so it reads as another boot's, the safe side.
        os.replace(staging, self._marker)
        fsync_dir(folder)
        self._open = True

    def _dead_markers(self, folder: Path) -> list[str]:
        from runtime.stepowners import _owner_alive

        now, dead = boot_id(), []
        for name in os.listdir(folder):
            found = _read(folder / name) if not name.startswith(".") and name != self.token else None
            if found is None or found[0] != now:
                continue
            alive, fd = _owner_alive(self.root, name)
            if fd is not None:
                os.close(fd)
            if not alive:
                dead.append(name)
        return dead

    def close(self, wait: bool = True) -> OSError | None:
        """The build is done writing: sync the store's file system, then remove the marker (and
        those of this boot's dead builds, whose writes came before). ``wait=False`` leaves it
        to a detached ``sync -f && rm`` (the CLI: the build's result is usable at once, and
        until the sync ends the marker says what a crash would have cut short). Returns the
        writeback error that keeps the marker, when waiting."""
        if not self._open:
            return None
        self._open = False
        markers = [str(_markers(self.store) / name) for name in [self.token, *self._dead]]
        if not wait and _detached_sync(str(self.store), markers):
            return None
        from runtime.linux import syncfs

        try:
            fd = os.open(self.store, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                syncfs(fd)
            finally:
                os.close(fd)
        except OSError as e:
            return e
        for marker in markers:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(marker)
        return None


_SYNC_THEN_REMOVE = 'd=$1; shift; (sync -f -- "$d" && rm -f -- "$@") </dev/null >/dev/null 2>&1 &'


def _detached_sync(store: str, markers: list[str]) -> bool:
    """Start ``sync -f store && rm -f markers`` in the background, not a child of this process
    (a shell that backgrounds it and exits at once); False if it could not be started."""
    import subprocess

    try:
        done = subprocess.run(["/bin/sh", "-c", _SYNC_THEN_REMOVE, "sh", store, *markers],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0
