"""Storage drivers, chosen from an explicit table. An unknown name is an error, never a fallback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storage.drivers.base import FileInfo, FileWriter, StorageDriver


def _filesystem(params: dict[str, Any]) -> StorageDriver:
    from storage.drivers.filesystem import FilesystemDriver
    return FilesystemDriver(params["rootdirectory"])


def _inmemory(params: dict[str, Any]) -> StorageDriver:
    from storage.drivers.memory import MemoryDriver
    return MemoryDriver()


def _s3(params: dict[str, Any]) -> StorageDriver:
    from storage.drivers.s3 import S3Driver
    return S3Driver(**params)


DRIVERS: dict[str, Callable[[dict[str, Any]], StorageDriver]] = {
    "filesystem": _filesystem,
    "inmemory": _inmemory,
    "s3": _s3,
}


def create_driver(name: str, params: dict[str, Any] | None = None) -> StorageDriver:
    """Build a driver by its config name; ValueError names the known drivers on a bad one."""
    try:
        factory = DRIVERS[name]
    except KeyError:
        raise ValueError(f"unknown storage driver {name!r} (known: {', '.join(sorted(DRIVERS))})") from None
    return factory(params or {})


__all__ = ["DRIVERS", "FileInfo", "FileWriter", "StorageDriver", "create_driver"]
