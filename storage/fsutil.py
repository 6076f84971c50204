"""Small filesystem primitives shared by the local stores: directory fsync, file locks and
private directories."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


# A file changed less than this long before its metadata was recorded may change again and keep
# the same timestamps (they are coarse: a jiffy, a second on some file systems; git's "racy"
# files): caches that trust size, mtime and ctime (builder.copy.HashCache, builder.memo) look
# at such a file's bytes.
RACY_NS = 2_000_000_000


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or create inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once (a temporary file in the same directory, then
    rename): a reader sees the old bytes or the new, never a mix. ``durable`` fsyncs the data
    before the rename. Raises OSError; the temporary file never outlives a failure."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.fspath(path)) or ".", prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], shared: bool = False) -> Iterator[None]:
    """Hold an flock on ``path`` (created, with its parents, if missing) for the block."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def try_file_lock(path: str | os.PathLike[str]) -> Iterator[bool]:
    """An exclusive flock on ``path`` if nobody holds it now: yields whether it was taken (the
    block runs either way; without the lock it must do nothing that needs it)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def private_dir(path: str | os.PathLike[str], mode: int = 0o700) -> Path:
    """``path`` as a directory only its owner can enter: created with ``mode`` (missing parents
    get the default mode), or tightened to it if it exists looser (an older hoist made 0755
    ones). Never follows a symlink at ``path`` itself."""
    p = Path(path)
    p.mkdir(mode=mode, parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_mode & 0o7777 & ~mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return p


STORE_DIRS = ("images", "snapshots", "containers", "cache", "networks", "volumes")


def secure_store_root(root: str | os.PathLike[str]) -> Path:
    """Make ``$HOIST_ROOT`` and the stores under it that exist 0700, so no other host user can
    reach an image's setuid binary, device node or world-writable directory through them.

    ``root`` itself is created 0700 if missing; an existing one is tightened only when it is
    plainly hoist's own (owned by the caller, not ``/``, not sticky like ``/tmp``): a shared
    directory given as ``HOIST_ROOT`` keeps its mode, and its hoist subdirectories still
    become 0700, which is what keeps others out.
    """
    p = Path(root)
    if not p.exists():
        private_dir(p)
    else:
        st = os.stat(p)
        if (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & stat.S_ISVTX
                and os.path.realpath(p) != "/"):
            private_dir(p)
    for name in STORE_DIRS:
        sub = p / name
        if sub.is_dir() and not sub.is_symlink():
            private_dir(sub)
    return p
