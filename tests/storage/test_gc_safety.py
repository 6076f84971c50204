"""GC while pushes run: a push at each point of a gc run (through gc's phase hook) either
keeps what it references or is refused; a storage error while marking aborts with nothing
deleted; a manifest whose layer data is gone is refused."""

from __future__ import annotations

import asyncio
import json

import pytest

from storage import paths
from storage.digest import Digest
from storage.drivers.memory import MemoryDriver
from storage.errors import DriverError, ManifestBlobUnknown
from storage.gc import collect
from storage.registry import RegistryStore
from tests.storage.faulty import FaultyDriver
from tests.storage.test_gc import OCI_MANIFEST, _blob, _image

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


def _manifest(config: Digest, config_size: int, layer: Digest, layer_size: int) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": CONFIG_TYPE, "digest": str(config), "size": config_size},
                       "layers": [{"mediaType": LAYER_TYPE, "digest": str(layer), "size": layer_size}]}).encode()


async def _orphaned_layer(store: RegistryStore) -> tuple[Digest, Digest]:
    """An image whose manifest was deleted: its config and layer are still linked in the
    repository (a client HEADs them: 200) but nothing references them."""
    gone, (config, layer) = await _image(store, "t/app", "old", "s")
    await store.delete_manifest("t/app", gone)
    return config, layer


async def _pullable(store: RegistryStore, name: str, tag: str) -> bool:
    m = await store.get_manifest(name, tag)
    from storage.manifest import parse_manifest
    for desc in parse_manifest(m.raw).blob_references():
        await store.stat_blob(name, desc.digest)
        await store.read_blob(desc.digest)
    return True


@pytest.mark.parametrize("phase", ["marked", "deleting"])
async def test_a_push_before_the_recheck_keeps_the_old_layer(phase: str) -> None:
    store = RegistryStore(MemoryDriver())
    config, layer = await _orphaned_layer(store)
    raw = _manifest(config, len(b'{"seed":"s"}'), layer, len(b"layer s"))
    d = Digest.of(raw)
    push: asyncio.Task | None = None

    async def hook(at: str) -> None:
        nonlocal push
        if at == phase:
            # Between mark and sweep: the push has written its revision when gc re-checks
            # (after "deleting" it then waits for gc's decision before answering).
            push = asyncio.create_task(store.put_manifest("t/app", "new", raw, OCI_MANIFEST))
            while not await store._exists(paths.revision_link("t/app", d)):
                await asyncio.sleep(0.001)

    report = await collect(store, grace=0, hook=hook)
    assert push is not None and (await push)[0] == d
    assert layer not in report.swept and config not in report.swept
    assert await _pullable(store, "t/app", "new")


async def test_a_push_after_the_recheck_is_refused_not_lost() -> None:
    store = RegistryStore(MemoryDriver())
    config, layer = await _orphaned_layer(store)
    raw = _manifest(config, len(b'{"seed":"s"}'), layer, len(b"layer s"))
    d = Digest.of(raw)
    push: asyncio.Task | None = None

    async def hook(at: str) -> None:
        nonlocal push
        if at != "rechecked":
            return
        push = asyncio.create_task(store.put_manifest("t/app", "new", raw, OCI_MANIFEST))
        # gc holds its markers now: the push writes its revision and then waits for gc.
        while not await store._exists(paths.revision_link("t/app", d)):
            await asyncio.sleep(0.001)

    report = await collect(store, grace=0, hook=hook)
    assert layer in report.swept
    assert push is not None
    with pytest.raises(ManifestBlobUnknown):
        await push
    # Refused and rolled back: no revision or tag pointing at swept blobs.
    assert not await store._exists(paths.revision_link("t/app", d))
    assert not await store._exists(paths.tag_current_link("t/app", "new"))


async def test_an_upload_of_existing_bytes_during_the_sweep_keeps_them() -> None:
    store = RegistryStore(MemoryDriver())
    _, layer = await _orphaned_layer(store)

    async def hook(at: str) -> None:
        if at == "rechecked":
            # Uploaded again after gc's re-check: gc deletes the old copy, the upload
            # brings its own verified bytes.
            task = asyncio.create_task(_blob(store, "u/other", b"layer s"))
            # It links the existing blob, then waits for gc's decision.
            while not await store._exists(paths.layer_link("u/other", layer)):
                await asyncio.sleep(0.001)
            hook.task = task  # type: ignore[attr-defined]

    await collect(store, grace=0, hook=hook)
    assert await hook.task == layer  # type: ignore[attr-defined]
    assert await store.read_blob(layer) == b"layer s"
    assert await store.stat_blob("u/other", layer) == len(b"layer s")


async def test_a_mount_during_the_run_keeps_the_blob() -> None:
    store = RegistryStore(MemoryDriver())
    config, layer = await _orphaned_layer(store)

    async def hook(at: str) -> None:
        if at == "marked":
            assert await store.mount_blob("u/other", layer, "t/app")

    report = await collect(store, grace=0, hook=hook)
    assert layer in report.kept_referenced and config in report.swept
    assert await store.read_blob(layer) == b"layer s"


async def test_grace_counts_from_the_last_reference_not_the_data() -> None:
    store = RegistryStore(MemoryDriver())
    _, layer = await _orphaned_layer(store)
    driver = store.driver
    assert isinstance(driver, MemoryDriver)
    for path in list(driver._mtimes):
        driver._mtimes[path] -= 7200  # everything two hours old
    await store.mount_blob("u/other", layer, "t/app")  # referenced again just now
    report = await collect(store, grace=3600)
    assert layer not in report.swept and await store.read_blob(layer) == b"layer s"


async def test_delete_untagged_keeps_a_revision_tagged_during_the_run() -> None:
    store = RegistryStore(MemoryDriver())
    d, blobs = await _image(store, "t/app", None, "untagged")
    raw = await store.read_blob(d)

    push: asyncio.Task | None = None

    async def hook(at: str) -> None:
        nonlocal push
        if at == "untagging":
            push = asyncio.create_task(store.put_manifest("t/app", "now-tagged", raw, OCI_MANIFEST))
            while not await store._exists(paths.tag_current_link("t/app", "now-tagged")):
                await asyncio.sleep(0.001)

    report = await collect(store, delete_untagged=True, grace=0, hook=hook)
    assert push is not None and (await push)[0] == d
    assert not report.untagged_manifests and not set(report.swept) & {d, *blobs}
    assert await _pullable(store, "t/app", "now-tagged")


@pytest.mark.parametrize("fail_on", ["get_content", "list", "stat"])
async def test_a_read_error_while_marking_aborts_with_nothing_deleted(fail_on: str) -> None:
    faulty = FaultyDriver(MemoryDriver())
    store = RegistryStore(faulty)
    kept, blobs = await _image(store, "f/app", "v1", "live")
    gone, gone_blobs = await _image(store, "f/app", "v2", "dead")
    await store.delete_manifest("f/app", gone)
    before = dict(faulty.inner._files)  # type: ignore[attr-defined]
    targets = {"get_content": paths.blob_data(kept),  # the live manifest cannot be read
               "list": paths.revisions_root("f/app") + "/sha256",
               "stat": paths.blob_data(gone_blobs[0])}
    faulty.fail = lambda op, path: op == fail_on and path == targets[fail_on]
    with pytest.raises(DriverError):
        await collect(store, grace=0)
    faulty.fail = lambda op, path: False
    after = dict(faulty.inner._files)  # type: ignore[attr-defined]
    assert {p for p in before if not p.startswith(paths.ROOT + "/_gc")} == \
        {p for p in after if not p.startswith(paths.ROOT + "/_gc")}
    assert not [p for p in after if "/_gc/deleting" in p]


async def test_delete_untagged_never_lists_a_tagged_manifest_when_reads_fail() -> None:
    faulty = FaultyDriver(MemoryDriver())
    store = RegistryStore(faulty)
    tagged, _ = await _image(store, "f/app", "v1", "t")
    faulty.fail = lambda op, path: op == "get_content" and path == paths.tag_current_link("f/app", "v1")
    with pytest.raises(DriverError):
        await collect(store, delete_untagged=True, grace=0, dry_run=True)
    with pytest.raises(DriverError):
        await collect(store, delete_untagged=True, grace=0)
    faulty.fail = lambda op, path: False
    assert await store.resolve("f/app", "v1") == tagged
    assert await _pullable(store, "f/app", "v1")


async def test_a_manifest_whose_layer_data_is_gone_is_refused() -> None:
    store = RegistryStore(MemoryDriver())
    config, layer = await _orphaned_layer(store)
    await store.driver.delete(paths.blob_dir(layer))  # what a gc killed mid-sweep leaves
    raw = _manifest(config, len(b'{"seed":"s"}'), layer, len(b"layer s"))
    with pytest.raises(ManifestBlobUnknown):
        await store.put_manifest("t/app", "v1", raw, OCI_MANIFEST)
    assert not await store._exists(paths.tag_current_link("t/app", "v1"))
    assert not await store._exists(paths.revision_link("t/app", Digest.of(raw)))
