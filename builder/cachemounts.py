"""``RUN --mount=type=cache``: persistent directories shared between steps, builds and processes
the way BuildKit shares them (``solver/llbsolver/mounts/mount.go``, ``getRefCacheDir``).

Keys. BuildKit keys a cache directory by its id (the Dockerfile frontend defaults it to the
target) and, when the mount starts from something, by that too (``id:refID``): ``from`` and
``source``, or the ``mkdir /cache`` it makes for ``uid``/``gid``/``mode``. So ``id=x`` with
``uid=1000`` is another directory than ``id=x`` alone, and two mounts from different stages are
too. Here the key is the id and an ``origin`` string saying what the mount starts from ("" for
nothing: an empty directory, 0755 root).

Layout (under ``<cache>/cachemounts/``, each key in ``sha256(key)/``)::

    <sha256 of id and origin>/
        key                 the key, for people reading the tree
        index.lock          held (flock) while an instance is chosen or made
        <n>.lock            held by each step that uses instance n, for the step's time
        <n>/                instance n: the directory the step sees

Sharing, as BuildKit decides it, across every process on the host (flock locks are the kernel's,
so two ``hoist build`` processes exclude each other and a killed one releases at once):

- ``shared`` (the default): an instance held by other ``shared`` users only is used with them
  (a shared flock); when every instance is held exclusively, a new one is made.
- ``private``: an instance nobody uses (an exclusive flock, not waited for); else a new one, so a
  concurrent user always gets a fresh instance, as BuildKit makes a new ref.
- ``locked``: an instance nobody uses; when there is one but all are in use, the step waits
  (polling every 100 ms, as BuildKit does) until one is free: one writer at a time.

A new instance is made with the mount's ``mode`` (default 0755) and ``uid``/``gid`` (default 0),
then filled from ``seed`` (the ``from``/``source`` tree) if there is one. Instances are never
removed by a build; their parents are 0700 like the rest of ``$HOIST_ROOT``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import DockerfileError
from storage.fsutil import atomic_write, private_dir

SHARED, PRIVATE, LOCKED = "shared", "private", "locked"
POLL_SECONDS = 0.1


@dataclass
class CacheInstance:
    """An instance in use: ``path`` is what the step mounts; ``close`` releases it."""

    path: Path
    index: int
    _fd: int = field(repr=False, default=-1)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)      # releases the flock
            self._fd = -1


class CacheMounts:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def key_dir(self, cache_id: str, origin: str) -> Path:
        digest = hashlib.sha256(f"{cache_id}\0{origin}".encode()).hexdigest()
        return self.root / digest

    def acquire(self, cache_id: str, origin: str, sharing: str | None, *, mode: int = 0o755, uid: int = 0,
                gid: int = 0, seed: Callable[[Path], None] | None = None,
                waiting: Callable[[], None] | None = None,
                first_seed: Callable[[Path], None] | None = None) -> CacheInstance:
        """An instance of the cache ``cache_id`` starting from ``origin``, held as ``sharing``
        says until ``close``. ``seed(path)`` fills a new instance; ``first_seed``, when given,
        fills it instead when the cache has no instance at all yet (an imported cache mount);
        ``waiting`` is called once when a ``locked`` mount has to wait for another user."""
        sharing = sharing or SHARED
        if sharing not in (SHARED, PRIVATE, LOCKED):
            raise DockerfileError(f"unsupported sharing value {sharing!r}")
        private_dir(self.root.parent)
        private_dir(self.root)
        where = self.key_dir(cache_id, origin)
        if not where.is_dir():
            where.mkdir(mode=0o700, exist_ok=True)
            atomic_write(where / "key", f"{cache_id}\n{origin}\n".encode(), durable=False)
        try:
            os.utime(where)         # its last use: the automatic bound evicts the least recent
        except OSError:
            pass
        told = False
        while True:
            with _Flock(where / "index.lock"):
                found, busy = self._take(where, sharing)
                if found is not None:
                    return found
                if sharing != LOCKED or not busy:
                    first = first_seed is not None and not self.instances(where)
                    return self._make(where, sharing, mode, uid, gid, first_seed if first else seed)
            if not told and waiting is not None:
                waiting()
                told = True
            time.sleep(POLL_SECONDS)

    @staticmethod
    def instances(where: Path) -> list[int]:
        return sorted(int(p.name) for p in where.iterdir() if p.name.isdigit() and p.is_dir())

    def _take(self, where: Path, sharing: str) -> tuple[CacheInstance | None, bool]:
        """The first instance that can be held as ``sharing`` wants, and whether any exists."""
        indexes = self.instances(where)
        operation = fcntl.LOCK_SH if sharing == SHARED else fcntl.LOCK_EX
        for n in indexes:
            fd = _open_lock(where / f"{n}.lock")
            try:
                fcntl.flock(fd, operation | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES):
                    continue
                raise
            return CacheInstance(where / str(n), n, fd), True
        return None, bool(indexes)

    def _make(self, where: Path, sharing: str, mode: int, uid: int, gid: int,
              seed: Callable[[Path], None] | None) -> CacheInstance:
        indexes = self.instances(where)
        n = indexes[-1] + 1 if indexes else 0
        fd = _open_lock(where / f"{n}.lock")
        fcntl.flock(fd, fcntl.LOCK_SH if sharing == SHARED else fcntl.LOCK_EX)
        # Made under a temporary name, then renamed: an instance is either complete or absent.
        # Staging happens only under index.lock, so any staging dir seen here is a killed
        # process's leftover.
        for stale in where.glob(".new-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = where / f".new-{n}"
        try:
            staging.mkdir()
            if seed is not None:
                seed(staging)
            os.chown(staging, uid, gid, follow_symlinks=False)
            os.chmod(staging, mode & 0o7777)
            os.rename(staging, where / str(n))
        except BaseException:
            os.close(fd)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return CacheInstance(where / str(n), n, fd)


def _open_lock(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


class _Flock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _Flock:
        self.fd = _open_lock(self.path)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
