"""Owners of build-step folders: what a killed build left behind is removed by the next one,
and never a folder a live build is using.

Every process that makes step folders (``runtime.step``'s step ids, the builder's scratch dirs)
is an *owner*: it holds an exclusive ``flock`` on ``<root>/build/owners/<token>.lock`` (16
random hex digits) for its whole life, taken before its first folder (the file is created
locked under a temporary name and renamed in, so no cleaner ever sees it unlocked), and every
folder it makes starts with its token (``claim_prefix``). The kernel drops the lock when the
process dies, however it dies (SIGKILL included; a forked child that still works in a folder
shares it). ``clean_stale`` (run at the start of each build) removes the folders whose owner's
lock it can take, or whose owner's lock file is gone, with the cgroups of their steps; a folder
whose step monitor is still alive is left for the next clean. A normal exit removes the
owner's file.

A light module (no runtime machinery imported until there is something to remove): a fully
cached build runs ``clean_stale`` too.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import threading
from pathlib import Path

TOKEN_LEN = 16
_owners: dict[tuple[int, str], str] = {}
_owners_lock = threading.Lock()


def claim_prefix(root: str | os.PathLike[str]) -> str:
    """The token this process starts its folders' names with under ``root``; the first call
    makes the owner lock (held until the process exits)."""
    key = (os.getpid(), os.path.realpath(root))
    with _owners_lock:
        token = _owners.get(key)
        if token is None:
            folder = Path(root) / "build" / "owners"
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(Path(root) / "build", 0o700)
            token = os.urandom(TOKEN_LEN // 2).hex()
            # Locked before it has its name: a cleaner never sees an owner's file unlocked.
            staging = folder / f".new-{token}"
            fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.rename(staging, folder / f"{token}.lock")
            # Never closed: the lock is this process's life (fork children share it).
            _owners[key] = token
            atexit.register(_release_owner, key, folder / f"{token}.lock")
        return token


def _release_owner(key: tuple[int, str], path: Path) -> None:
    """At a normal exit: the owner's file goes (its folders are all closed by then)."""
    if key[0] == os.getpid():
        with contextlib.suppress(OSError):
            os.unlink(path)


def _owner_alive(root: Path, token: str) -> tuple[bool, int | None]:
    """(alive, fd holding the dead owner's lock, to unlink under it) for ``token``."""
    try:
        fd = os.open(root / "build" / "owners" / f"{token}.lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return True, None
        raise
    return False, fd


def clean_stale(root: str | os.PathLike[str]) -> list[Path]:
    """Remove the step and scratch folders under ``root`` whose owner is gone (see the module
    doc); returns what was removed. A folder of a live owner, or with a live monitor, stays."""
    root = Path(root)
    build = root / "build"
    mine = {t for (pid, r), t in _owners.items() if pid == os.getpid() and r == os.path.realpath(root)}
    candidates: dict[str, list[Path]] = {}
    for sub in ("steps", "scratch"):
        try:
            names = os.listdir(build / sub)
        except FileNotFoundError:
            continue
        for name in names:
            if name.startswith(".") or len(name) < TOKEN_LEN:
                continue
            token = name[:TOKEN_LEN]
            if token not in mine:
                candidates.setdefault(token, []).append(build / sub / name)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(build / "owners"):
            token = name.removesuffix(".lock")
            if name.endswith(".lock") and token not in mine:
                candidates.setdefault(token, [])
    removed: list[Path] = []
    for token, paths in sorted(candidates.items()):
        alive, fd = _owner_alive(root, token)
        if alive:
            continue
        try:
            left = False
            for path in paths:
                try:
                    gone = _remove_step_folder(path)
                except OSError:
                    gone = False        # best effort: the next build tries again
                if gone:
                    removed.append(path)
                else:
                    left = True
            if fd is not None and not left:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(build / "owners" / f"{token}.lock")
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def _remove_step_folder(path: Path) -> bool:
    """Remove a dead owner's folder (and a killed step's cgroups); False if its monitor lives."""
    if (path / "config.json").exists():
        from runtime import cgroups
        from runtime.containers import Container

        container = Container(path)
        try:
            if container.monitor_alive():
                return False
            spec_cgroups = container.spec.cgroups
        except Exception:  # a half-written folder: nothing ran in it
            spec_cgroups = []
        with contextlib.suppress(OSError):
            cgroups.remove(spec_cgroups, timeout=0.5)
    if path.is_dir() and not path.is_symlink():
        from runtime.snapshots import remove_tree

        remove_tree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return True


def new_step_id(root: str | os.PathLike[str]) -> str:
    """A step id (64 hex digits, as container ids) that starts with this process's token."""
    return claim_prefix(root) + os.urandom((64 - TOKEN_LEN) // 2).hex()
