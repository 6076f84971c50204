"""A fault-injecting driver: a real driver wrapper that fails the operations a test picks
(and counts what it is asked), for the error paths no healthy backend produces on demand."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable

from storage.drivers.base import FileInfo, FileWriter, StorageDriver
from storage.errors import DriverError


class FaultyDriver(StorageDriver):
    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.fail: Callable[[str, str], bool] = lambda op, path: False
        self.calls: Counter[str] = Counter()

    def _check(self, op: str, path: str) -> None:
        self.calls[op] += 1
        if self.fail(op, path):
            raise DriverError(f"injected {op} failure on {path}")

    async def get_content(self, path: str) -> bytes:
        self._check("get_content", path)
        return await self.inner.get_content(path)

    async def put_content(self, path: str, data: bytes) -> None:
        self._check("put_content", path)
        await self.inner.put_content(path, data)

    async def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        self._check("reader", path)
        async for chunk in self.inner.reader(path, offset, length):
            yield chunk

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        self._check("writer", path)
        return await self.inner.writer(path, append)

    async def stat(self, path: str) -> FileInfo:
        self._check("stat", path)
        return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        self._check("list", path)
        return await self.inner.list(path)

    async def move(self, src: str, dst: str) -> None:
        self._check("move", src)
        await self.inner.move(src, dst)

    async def delete(self, path: str) -> None:
        self._check("delete", path)
        await self.inner.delete(path)

    def lock(self, path: str):  # type: ignore[override]
        return self.inner.lock(path)
