"""The in-memory driver: a real implementation (it passes the driver suite) that backs fast tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from storage.drivers.base import FileInfo, FileWriter, StorageDriver, check_dir, check_path
from storage.errors import InvalidOffset, PathNotFound


class _MemWriter(FileWriter):
    def __init__(self, driver: MemoryDriver, path: str, append: bool) -> None:
        self._driver, self._path, self._append = driver, path, append
        self._start = len(driver._files[path]) if append else 0
        self._chunks: list[bytes] = []
        self._written = 0

    @property
    def size(self) -> int:
        return self._start + self._written

    async def write(self, chunk: bytes) -> None:
        self._chunks.append(bytes(chunk))
        self._written += len(chunk)
        if self._append:
            # Append writers make bytes visible as they arrive, like a file opened O_APPEND.
            self._driver._files[self._path] = self._driver._files.get(self._path, b"") + chunk
            self._driver._mtimes[self._path] = time.time()

    async def commit(self) -> None:
        if not self._append:
            self._driver._store(self._path, b"".join(self._chunks))

    async def cancel(self) -> None:
        if self._append and self._path in self._driver._files:
            self._driver._files[self._path] = self._driver._files[self._path][: self._start]
        self._chunks = []


class MemoryDriver(StorageDriver):
    name = "inmemory"

    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}
        self._mtimes: dict[str, float] = {}

    def _store(self, path: str, data: bytes) -> None:
        self._files[path] = data
        self._mtimes[path] = time.time()

    def _is_dir(self, path: str) -> bool:
        if path == "/":
            return True
        prefix = path + "/"
        return any(p.startswith(prefix) for p in self._files)

    async def get_content(self, path: str) -> bytes:
        check_path(path)
        try:
            return self._files[path]
        except KeyError:
            raise PathNotFound(path) from None

    async def put_content(self, path: str, data: bytes) -> None:
        self._store(check_path(path), bytes(data))

    async def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        data = await self.get_content(path)
        if offset < 0 or offset > len(data):
            raise InvalidOffset(path, offset)
        end = len(data) if length is None else min(len(data), offset + length)
        for i in range(offset, end, 1 << 20):
            yield data[i: min(end, i + (1 << 20))]

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        check_path(path)
        if append and path not in self._files:
            raise PathNotFound(path)
        return _MemWriter(self, path, append)

    async def stat(self, path: str) -> FileInfo:
        check_dir(path)
        if path in self._files:
            return FileInfo(path, len(self._files[path]), self._mtimes[path], False)
        if self._is_dir(path):
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFound(path)

    async def list(self, path: str) -> list[str]:
        check_dir(path)
        prefix = "/" if path == "/" else path + "/"
        children = {prefix + p[len(prefix):].split("/", 1)[0] for p in self._files if p.startswith(prefix)}
        if not children and path != "/":
            raise PathNotFound(path)
        return sorted(children)

    async def move(self, src: str, dst: str) -> None:
        check_path(src), check_path(dst)
        try:
            data = self._files.pop(src)
        except KeyError:
            raise PathNotFound(src) from None
        self._mtimes.pop(src, None)
        self._store(dst, data)

    async def delete(self, path: str) -> None:
        check_path(path)
        if path in self._files:
            del self._files[path]
            self._mtimes.pop(path, None)
            return
        prefix = path + "/"
        doomed = [p for p in self._files if p.startswith(prefix)]
        if not doomed:
            raise PathNotFound(path)
        for p in doomed:
            del self._files[p]
            self._mtimes.pop(p, None)
