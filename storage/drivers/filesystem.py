"""The filesystem driver: driver paths map onto files below a root directory.

Small reads and link writes happen inline (page-cache speed); bulk writes are buffered and
flushed from a worker thread so the event loop never waits on the disk for long.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from typing import AsyncIterator

from storage.drivers.base import FileInfo, FileWriter, StorageDriver, check_dir, check_path
from storage.fsutil import fsync_dir
from storage.errors import DriverError, InvalidOffset, PathNotFound

_FLUSH_AT = 1 << 20


class _FsWriter(FileWriter):
    def __init__(self, driver: "FilesystemDriver", path: str, append: bool) -> None:
        self._driver, self._path = driver, path
        self._full = driver._full(path)
        self._buf: list[bytes] = []
        self._buffered = 0
        if append:
            try:
                self._fd = os.open(self._full, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                raise PathNotFound(path) from None
            self._target = self._full
            self._start = os.fstat(self._fd).st_size
        else:
            os.makedirs(os.path.dirname(self._full), exist_ok=True)
            self._target = f"{os.path.dirname(self._full)}/.tmp-{uuid.uuid4().hex}"
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
        await asyncio.to_thread(_write_all, self._fd, data)

    async def commit(self) -> None:
        await self._flush()
        await asyncio.to_thread(os.fsync, self._fd)
        os.close(self._fd)
        self._closed = True
        if not self._append:
            os.replace(self._target, self._full)
            fsync_dir(os.path.dirname(self._full))

    async def cancel(self) -> None:
        self._buf = []
        if not self._closed:
            if self._append:
                os.ftruncate(self._fd, self._start)
            os.close(self._fd)
            self._closed = True
        if not self._append:
            try:
                os.unlink(self._target)
            except FileNotFoundError:
                pass


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
            with open(self._full(path), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None
        except OSError as e:
            raise DriverError(f"{path}: {e.strerror}") from None

    async def put_content(self, path: str, data: bytes) -> None:
        full = self._full(check_path(path))
        directory = os.path.dirname(full)
        tmp = f"{directory}/.tmp-{uuid.uuid4().hex}"
        try:
            os.makedirs(directory, exist_ok=True)
            with open(tmp, "wb") as f:
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
            f = open(self._full(check_path(path)), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None
        try:
            size = os.fstat(f.fileno()).st_size
            if offset < 0 or offset > size:
                raise InvalidOffset(path, offset)
            f.seek(offset)
            remaining = size - offset if length is None else min(length, size - offset)
            while remaining > 0:
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
        try:
            st = os.stat(self._full(path))
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        is_dir = os.path.isdir(self._full(path))
        return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime, is_dir)

    async def list(self, path: str) -> list[str]:
        full = self._full(path)
        try:
            names = os.listdir(full)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        prefix = "" if path == "/" else path
        return sorted(f"{prefix}/{n}" for n in names if not n.startswith(".tmp-"))

    async def move(self, src: str, dst: str) -> None:
        s, d = self._full(check_path(src)), self._full(check_path(dst))
        os.makedirs(os.path.dirname(d), exist_ok=True)
        try:
            os.replace(s, d)
        except FileNotFoundError:
            raise PathNotFound(src) from None
        except OSError as e:
            raise DriverError(f"cannot move {src} to {dst}: {e.strerror}") from None
        fsync_dir(os.path.dirname(d))

    async def delete(self, path: str) -> None:
        full = self._full(check_path(path))
        if os.path.isdir(full) and not os.path.islink(full):
            await asyncio.to_thread(shutil.rmtree, full, True)
            return
        try:
            os.unlink(full)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
