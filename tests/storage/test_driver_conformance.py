"""One conformance suite for every storage driver. A new driver joins by adding a fixture param."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.drivers import StorageDriver, create_driver
from storage.drivers.filesystem import FilesystemDriver
from storage.drivers.memory import MemoryDriver
from storage.errors import InvalidOffset, InvalidPath, PathNotFound


def s3_driver(request: pytest.FixtureRequest) -> StorageDriver:
    from storage.drivers.s3 import MIN_PART, S3Driver
    moto = request.getfixturevalue("moto_s3")
    bucket = f"b-{uuid.uuid4().hex[:16]}"
    moto.create_bucket(bucket)
    return S3Driver(bucket=bucket, regionendpoint=moto.endpoint, accesskey="test", secretkey="test",
                    rootdirectory="/prefix/under", chunksize=MIN_PART)


@pytest.fixture(params=["inmemory", "filesystem", "s3"])
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageDriver]:
    if request.param == "s3":
        d: StorageDriver = s3_driver(request)
    elif request.param == "inmemory":
        d = MemoryDriver()
    else:
        d = FilesystemDriver(tmp_path / "root")
    yield d
    await d.close()


async def _read(d: StorageDriver, path: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join([c async for c in d.reader(path, offset, length)])


async def test_put_get_roundtrip(driver: StorageDriver) -> None:
    await driver.put_content("/a/b/c", b"hello")
    assert await driver.get_content("/a/b/c") == b"hello"
    await driver.put_content("/a/b/c", b"replaced")
    assert await driver.get_content("/a/b/c") == b"replaced"


async def test_empty_file(driver: StorageDriver) -> None:
    await driver.put_content("/empty", b"")
    assert await driver.get_content("/empty") == b""
    assert (await driver.stat("/empty")).size == 0


async def test_missing_path_raises_path_not_found(driver: StorageDriver) -> None:
    with pytest.raises(PathNotFound):
        await driver.get_content("/nope")
    with pytest.raises(PathNotFound):
        await driver.stat("/nope")
    with pytest.raises(PathNotFound):
        await driver.list("/nope")
    with pytest.raises(PathNotFound):
        await driver.delete("/nope")
    with pytest.raises(PathNotFound):
        await driver.move("/nope", "/other")
    with pytest.raises(PathNotFound):
        await _read(driver, "/nope")
    with pytest.raises(PathNotFound):
        await driver.writer("/nope", append=True)


@pytest.mark.parametrize("bad", ["", "relative", "/a/../b", "/a/./b", "/a//b", "/a/b/", "/with space", "/ü"])
async def test_invalid_paths(driver: StorageDriver, bad: str) -> None:
    with pytest.raises(InvalidPath):
        await driver.put_content(bad, b"x")
    with pytest.raises(InvalidPath):
        await driver.get_content(bad)


async def test_reader_offsets(driver: StorageDriver) -> None:
    data = bytes(range(256)) * 10000
    await driver.put_content("/big", data)
    assert await _read(driver, "/big") == data
    assert await _read(driver, "/big", 1000) == data[1000:]
    assert await _read(driver, "/big", 1000, 10) == data[1000:1010]
    assert await _read(driver, "/big", len(data)) == b""
    with pytest.raises(InvalidOffset):
        await _read(driver, "/big", len(data) + 1)


async def test_writer_commit_makes_content_visible(driver: StorageDriver) -> None:
    w = await driver.writer("/w/file")
    await w.write(b"abc")
    await w.write(b"def" * 500_000)
    assert w.size == 3 + 1_500_000
    with pytest.raises(PathNotFound):
        await driver.get_content("/w/file")
    await w.commit()
    assert await driver.get_content("/w/file") == b"abc" + b"def" * 500_000


async def test_writer_cancel_leaves_nothing(driver: StorageDriver) -> None:
    w = await driver.writer("/w/cancelled")
    await w.write(b"x" * 2_000_000)
    await w.cancel()
    with pytest.raises(PathNotFound):
        await driver.get_content("/w/cancelled")


async def test_append_writer_and_cancel_rolls_back(driver: StorageDriver) -> None:
    await driver.put_content("/up/data", b"")
    w = await driver.writer("/up/data", append=True)
    await w.write(b"first")
    await w.commit()
    w = await driver.writer("/up/data", append=True)
    assert w.size == 5
    await w.write(b"-second" * 300_000)
    await w.cancel()
    assert await driver.get_content("/up/data") == b"first"
    w = await driver.writer("/up/data", append=True)
    await w.write(b"-third")
    await w.commit()
    assert await driver.get_content("/up/data") == b"first-third"


async def test_stat(driver: StorageDriver) -> None:
    await driver.put_content("/s/d/f", b"12345")
    f = await driver.stat("/s/d/f")
    assert (f.size, f.is_dir, f.path) == (5, False, "/s/d/f")
    d = await driver.stat("/s/d")
    assert d.is_dir


async def test_list_direct_children_sorted(driver: StorageDriver) -> None:
    for p in ("/l/b", "/l/a/x", "/l/a/y", "/l/c/z/deep"):
        await driver.put_content(p, b"1")
    assert await driver.list("/l") == ["/l/a", "/l/b", "/l/c"]
    assert await driver.list("/l/a") == ["/l/a/x", "/l/a/y"]
    assert "/l" in await driver.list("/")


async def test_move_replaces_destination(driver: StorageDriver) -> None:
    await driver.put_content("/m/src", b"new")
    await driver.put_content("/m2/dst", b"old")
    await driver.move("/m/src", "/m2/dst")
    assert await driver.get_content("/m2/dst") == b"new"
    with pytest.raises(PathNotFound):
        await driver.get_content("/m/src")
    await driver.put_content("/m/src2", b"fresh")
    await driver.move("/m/src2", "/brand/new/dir/file")
    assert await driver.get_content("/brand/new/dir/file") == b"fresh"


async def test_delete_file_and_tree(driver: StorageDriver) -> None:
    for p in ("/t/a/1", "/t/a/2", "/t/b"):
        await driver.put_content(p, b"x")
    await driver.delete("/t/b")
    with pytest.raises(PathNotFound):
        await driver.get_content("/t/b")
    await driver.delete("/t/a")
    with pytest.raises(PathNotFound):
        await driver.get_content("/t/a/1")
    with pytest.raises(PathNotFound):
        await driver.stat("/t/a")


async def test_walk(driver: StorageDriver) -> None:
    for p in ("/wk/a/1", "/wk/a/2", "/wk/b"):
        await driver.put_content(p, b"x")
    seen = [(i.path, i.is_dir) async for i in driver.walk("/wk")]
    assert seen == [("/wk/a", True), ("/wk/a/1", False), ("/wk/a/2", False), ("/wk/b", False)]


def test_unknown_driver_name_fails_loudly() -> None:
    with pytest.raises(ValueError, match="unknown storage driver 's4'"):
        create_driver("s4")


def test_filesystem_never_leaves_its_root(tmp_path: Path) -> None:
    d = FilesystemDriver(tmp_path / "root")
    with pytest.raises(InvalidPath):
        d.local_path("/../escape")


async def test_large_append_keeps_old_bytes_and_rolls_back(driver: StorageDriver) -> None:
    """Appends past the multipart threshold (S3: copy the old object as a part, then new parts)."""
    first = bytes(range(256)) * 30_000          # ~7.7 MB
    await driver.put_content("/big/data", first)
    w = await driver.writer("/big/data", append=True)
    await w.write(b"x" * 6_000_000)
    await w.cancel()
    assert await driver.get_content("/big/data") == first
    w = await driver.writer("/big/data", append=True)
    await w.write(b"y" * 6_000_000)
    await w.write(b"z" * 10)
    await w.commit()
    assert await _read(driver, "/big/data") == first + b"y" * 6_000_000 + b"z" * 10
    assert (await driver.stat("/big/data")).size == len(first) + 6_000_010
