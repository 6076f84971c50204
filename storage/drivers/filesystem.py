"""The filesystem driver: driver paths map onto files below a root directory.

Small reads and link writes happen inline (page-cache speed); bulk writes are buffered and
flushed from a worker thread so the event loop never waits on the disk for long.

Every OSError (ENOSPC, EROFS, EACCES, EIO...) becomes a DriverError here, so a full or
read-only disk is a storage error the registry answers as JSON, never a traceback; a failed
write is rolled back (an append is truncated to its start, a new file's temporary removed).
``lock`` adds an ``flock`` on the file, so processes sharing one root exclude each other too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator

from storage.drivers.base import FileInfo, FileWriter, StorageDriver, check_dir, check_path
from storage.errors import DriverError, InvalidOffset, PathNotFound
from storage.fsutil import fsync_dir

_FLUSH_AT = 1 << 20
_TMP_PREFIX = ".tmp-"
# How long a writer waits for another process's lock before giving up (a stuck peer).
LOCK_TIMEOUT = 120.0


@contextlib.contextmanager
def _os_errors(path: str) -> Iterator[None]:
    """OSError to the driver tier: missing paths to PathNotFound, the rest to DriverError."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError):
        raise PathNotFound(path) from None
    except OSError as e:
        raise DriverError(f"{path}: {e.strerror or e}") from None


class _FsWriter(FileWriter):
    def __init__(self, driver: FilesystemDriver, path: str, append: bool) -> None:
        self._driver, self._path = driver, path
        self._full = driver._full(path)
        self._buf: list[bytes] = []
        self._buffered = 0
        with _os_errors(path):
            if append:
                self._fd = os.open(self._full, os.O_WRONLY | os.O_APPEND)
                self._target = self._full
                self._start = os.fstat(self._fd).st_size
            else:
                os.makedirs(os.path.dirname(self._full), exist_ok=True)
                self._target = f"{os.path.dirname(self._full)}/{_TMP_PREFIX}{uuid.uuid4().hex}"
                self._fd = os.open(self._target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                self._start = 0
        self._append = append
        self._written = 0
        self._closed = False

    @property
    def size(self) -> int:
        return self._start + self._written

    async def write(self, chunk: bytes) -> None:
        self._buf.append(chunk)
        self._buffered += len(chunk)
        self._written += len(chunk)
        if self._buffered >= _FLUSH_AT:
            await self._flush()

    async def _flush(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf, self._buffered = [], 0
        with _os_errors(self._path):
            await asyncio.to_thread(_write_all, self._fd, data)

    async def commit(self) -> None:
        await self._flush()
        with _os_errors(self._path):
            await asyncio.to_thread(os.fsync, self._fd)
            if not self._append:
                os.replace(self._target, self._full)
                fsync_dir(os.path.dirname(self._full))
        os.close(self._fd)
        self._closed = True

    async def cancel(self) -> None:
        self._buf = []
        if not self._closed:
            with contextlib.suppress(OSError):
                if self._append:
                    os.ftruncate(self._fd, self._start)
            os.close(self._fd)
            self._closed = True
        if not self._append:
            with contextlib.suppress(OSError):
                os.unlink(self._target)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class FilesystemDriver(StorageDriver):
    name = "filesystem"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise DriverError(f"cannot use storage root {self.root}: {e.strerror}") from None

    def _full(self, path: str) -> str:
        return self.root + check_dir(path) if path != "/" else self.root

    def local_path(self, path: str) -> str | None:
        return self._full(path)

    async def get_content(self, path: str) -> bytes:
        try:
            with open(self._full(path), "rb") as f:  # noqa: ASYNC230 - small reads inline (docstring)
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None
        except OSError as e:
            raise DriverError(f"{path}: {e.strerror}") from None

    async def put_content(self, path: str, data: bytes) -> None:
        full = self._full(check_path(path))
        directory = os.path.dirname(full)
        tmp = f"{directory}/{_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            os.makedirs(directory, exist_ok=True)
            with open(tmp, "wb") as f:  # noqa: ASYNC230 - small writes inline (docstring)
                f.write(data)
                if len(data) > 4096:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, full)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise DriverError(f"{path}: {e.strerror}") from None

    async def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        try:
            f = open(self._full(check_path(path)), "rb")  # noqa: ASYNC230 - opening is page-cache fast
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None
        except OSError as e:
            raise DriverError(f"{path}: {e.strerror}") from None
        try:
            size = os.fstat(f.fileno()).st_size
            if offset < 0 or offset > size:
                raise InvalidOffset(path, offset)
            f.seek(offset)
            remaining = size - offset if length is None else min(length, size - offset)
            while remaining > 0:
                with _os_errors(path):
                    chunk = await asyncio.to_thread(f.read, min(remaining, _FLUSH_AT))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        check_path(path)
        return _FsWriter(self, path, append)

    async def stat(self, path: str) -> FileInfo:
        with _os_errors(path):
            st = os.stat(self._full(path))
        is_dir = os.path.isdir(self._full(path))  # noqa: ASYNC240 - a stat, inline like the one above
        return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime, is_dir)

    async def list(self, path: str) -> list[str]:
        full = self._full(path)
        with _os_errors(path):
            names = os.listdir(full)
        prefix = "" if path == "/" else path
        return sorted(f"{prefix}/{n}" for n in names if not n.startswith(_TMP_PREFIX))

    async def move(self, src: str, dst: str) -> None:
        s, d = self._full(check_path(src)), self._full(check_path(dst))
        try:
            os.makedirs(os.path.dirname(d), exist_ok=True)
            os.replace(s, d)
            fsync_dir(os.path.dirname(d))
        except FileNotFoundError:
            raise PathNotFound(src) from None
        except OSError as e:
            raise DriverError(f"cannot move {src} to {dst}: {e.strerror}") from None

    async def delete(self, path: str) -> None:
        full = self._full(check_path(path))
        if os.path.isdir(full) and not os.path.islink(full):  # noqa: ASYNC240 - stats, inline
            def rmtree() -> None:
                def failed(func: object, p: str, exc_info: tuple) -> None:
                    # Whatever vanished meanwhile is gone anyway; anything else must be reported.
                    if not isinstance(exc_info[1], FileNotFoundError):
                        raise exc_info[1]
                shutil.rmtree(full, onerror=failed)
            with _os_errors(path):
                await asyncio.to_thread(rmtree)
            return
        with _os_errors(path):
            os.unlink(full)

    @contextlib.asynccontextmanager
    async def lock(self, path: str) -> AsyncIterator[None]:
        async with super().lock(path):
            with _os_errors(path):
                fd = os.open(self._full(check_path(path)), os.O_RDONLY)
            try:
                deadline = time.monotonic() + LOCK_TIMEOUT
                delay = 0.002
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        raise DriverError(f"cannot lock {path}: {e.strerror}") from None
                    if time.monotonic() > deadline:
                        raise DriverError(f"{path} is locked by another process")
                    # Poll rather than block a worker thread on another process's writer.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.05)
                yield
            finally:
                os.close(fd)  # closing the descriptor drops the flock

    async def clean_temporaries(self, older_than: float, dry_run: bool = False) -> int:
        def scan() -> int:
            removed, now = 0, time.time()
            for directory, _dirs, files in os.walk(self.root):
                for name in files:
                    if not name.startswith(_TMP_PREFIX):
                        continue
                    full = os.path.join(directory, name)
                    try:
                        if now - os.lstat(full).st_mtime <= older_than:
                            continue
                        if not dry_run:
                            os.unlink(full)
                    except FileNotFoundError:
                        continue
                    removed += 1
            return removed
        try:
            return await asyncio.to_thread(scan)
        except OSError as e:
            raise DriverError(f"cannot clean temporary files under {self.root}: {e.strerror}") from None
