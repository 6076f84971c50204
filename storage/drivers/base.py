"""The storage driver interface: paths and bytes, nothing else.

Paths are absolute, slash-separated, ``/``-rooted strings made of ``[A-Za-z0-9._-]``
components (``storage.paths`` builds them); digests and repositories live above this layer.
Every driver passes ``tests/storage/test_driver_conformance.py``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from storage.errors import InvalidPath

_PATH_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")


def check_path(path: str) -> str:
    """Return ``path`` if it is a valid driver path; raise InvalidPath otherwise."""
    if not isinstance(path, str) or not _PATH_RE.match(path) or any(
        part in (".", "..") for part in path.split("/")
    ):
        raise InvalidPath(path)
    return path


def check_dir(path: str) -> str:
    """Like check_path, but "/" (the root) is also allowed."""
    return path if path == "/" else check_path(path)


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    modified: float
    is_dir: bool


class FileWriter(abc.ABC):
    """A file being written. Its content becomes visible at ``path`` only on ``commit()``
    (for append writers, the bytes already there stay visible throughout)."""

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Bytes in the file so far, including those present before an append writer opened."""

    @abc.abstractmethod
    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``."""

    @abc.abstractmethod
    async def commit(self) -> None:
        """Make everything written durable and visible at ``path``."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Drop what this writer wrote (the file is left as it was before the writer opened)."""


class StorageDriver(abc.ABC):
    """Every method raises PathNotFound for a missing path and InvalidPath for a bad one."""

    name: str = "abstract"

    @abc.abstractmethod
    async def get_content(self, path: str) -> bytes:
        """The whole file (meant for small files: links, manifests)."""

    @abc.abstractmethod
    async def put_content(self, path: str, data: bytes) -> None:
        """Replace the file atomically (readers see the old or the new bytes, never a mix)."""

    @abc.abstractmethod
    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (default: to the end) from ``offset``; InvalidOffset if offset > size."""

    @abc.abstractmethod
    async def writer(self, path: str, append: bool = False) -> FileWriter:
        """A writer for ``path``; with ``append`` it continues an existing file (PathNotFound if absent)."""

    @abc.abstractmethod
    async def stat(self, path: str) -> FileInfo:
        """Size and kind of a file or directory."""

    @abc.abstractmethod
    async def list(self, path: str) -> list[str]:
        """Full paths of the direct children of a directory, sorted."""

    @abc.abstractmethod
    async def move(self, src: str, dst: str) -> None:
        """Move a file, replacing ``dst`` atomically; parent directories are created."""

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Delete a file, or a directory and everything below it."""

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Every file and directory below ``path``, depth first, in sorted order."""
        for child in await self.list(path):
            info = await self.stat(child)
            yield info
            if info.is_dir:
                async for sub in self.walk(child):
                    yield sub

    @contextlib.asynccontextmanager
    async def lock(self, path: str) -> AsyncIterator[None]:
        """Hold the writers' lock of an existing file for the block: one holder at a time.

        This default serialises the holders in this process only (memory; S3, which has no
        lock primitive: several S3 processes rely on the re-checked offset instead, see
        ``RegistryStore.append_upload``). The filesystem driver also excludes other processes.
        """
        check_path(path)
        locks: dict[str, tuple[asyncio.Lock, int]] = self.__dict__.setdefault("_path_locks", {})
        lock, users = locks.get(path, (asyncio.Lock(), 0))
        locks[path] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = locks[path]
            if users == 1:
                del locks[path]
            else:
                locks[path] = (lock, users - 1)

    async def clean_temporaries(self, older_than: float, dry_run: bool = False) -> int:
        """Remove temporary files a crashed writer left behind, older than ``older_than``
        seconds; returns how many. Drivers without such files have nothing to do."""
        return 0

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL the client can fetch the file from directly, or None (serve it ourselves)."""
        return None

    def local_path(self, path: str) -> str | None:
        """A filesystem path for sendfile, where the driver has one."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional: a driver without pools has nothing to release
        """Release connections and pools."""
