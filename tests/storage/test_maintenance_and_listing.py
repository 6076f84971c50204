"""Upload purging by ``startedat`` on every driver (repositories without manifests too), stale
temporary files, the catalog's blob-only repositories, and tag pages that read only the page."""

from __future__ import annotations

import os
import time
from pathlib import Path

from storage import paths
from storage.drivers import StorageDriver
from storage.drivers.filesystem import FilesystemDriver
from storage.drivers.memory import MemoryDriver
from storage.maintenance import purge_abandoned
from storage.registry import RegistryStore
from tests.storage.faulty import FaultyDriver
from tests.storage.test_driver_conformance import driver  # noqa: F401  (the per-driver fixture)
from tests.storage.test_gc import _image

OLD = "2020-01-02T03:04:05.123456789Z"  # as Distribution writes it (nanoseconds)


async def test_abandoned_uploads_are_purged_by_startedat(driver: StorageDriver) -> None:  # noqa: F811
    store = RegistryStore(driver)
    old = await store.start_upload("no/manifests")  # a repository with nothing but uploads
    await driver.put_content(paths.upload_started_at("no/manifests", old.id), OLD.encode())
    young = await store.start_upload("no/manifests")
    await _image(store, "with/manifests", "v1", "x")
    old2 = await store.start_upload("with/manifests")
    await driver.put_content(paths.upload_started_at("with/manifests", old2.id), b"2021-05-05T00:00:00+02:00")
    dry = await purge_abandoned(store, 24 * 3600, dry_run=True)
    assert sorted(dry.uploads) == sorted([("no/manifests", old.id), ("with/manifests", old2.id)])
    assert (await store.get_upload("no/manifests", old.id)).size == 0
    report = await purge_abandoned(store, 24 * 3600)
    assert sorted(report.uploads) == sorted(dry.uploads)
    for name, upload_id in report.uploads:
        assert not await store._exists(paths.upload_dir(name, upload_id))
    assert (await store.get_upload("no/manifests", young.id)).size == 0
    assert await store.resolve("with/manifests", "v1")


async def test_stale_temporary_files_are_cleaned(tmp_path: Path) -> None:
    fs_driver = FilesystemDriver(tmp_path / "root")
    store = RegistryStore(fs_driver)
    await _image(store, "t/app", "v1", "x")
    crashed = tmp_path / "root/docker/registry/v2/repositories/t/app/_layers/.tmp-deadbeef"
    crashed.write_bytes(b"half a link")
    os.utime(crashed, (time.time() - 7200, time.time() - 7200))
    fresh = crashed.with_name(".tmp-inflight")
    fresh.write_bytes(b"being written")
    assert (await purge_abandoned(store, 3600, dry_run=True)).temporaries == 1 and crashed.exists()
    assert (await purge_abandoned(store, 3600)).temporaries == 1
    assert not crashed.exists() and fresh.exists()
    assert await store.resolve("t/app", "v1")


async def test_catalog_lists_a_repository_holding_only_a_mounted_blob() -> None:
    store = RegistryStore(MemoryDriver())
    _, (config, _) = await _image(store, "a/app", "v1", "x")
    assert await store.mount_blob("b/only-blobs", config, "a/app")
    await store.start_upload("c/only-uploads")
    assert [n async for n in store.repositories()] == ["a/app", "b/only-blobs"]


async def test_a_tag_page_reads_only_the_page() -> None:
    faulty = FaultyDriver(MemoryDriver())
    store = RegistryStore(faulty)
    d, _ = await _image(store, "many/tags", "t00000", "x")
    for i in range(1, 2001):
        await faulty.inner.put_content(paths.tag_current_link("many/tags", f"t{i:05d}"), str(d).encode())
    faulty.calls.clear()
    page = await store.tags("many/tags", after="t00100", limit=101)
    assert page == [f"t{i:05d}" for i in range(101, 202)]
    assert faulty.calls["list"] == 1 and faulty.calls["stat"] <= 101
    assert len(await store.tags("many/tags")) == 2001
