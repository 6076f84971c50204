"""Registry garbage collection over the in-memory driver, and through the CLI on a filesystem root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from storage import paths
from storage.digest import Digest
from storage.drivers.memory import MemoryDriver
from storage.gc import collect
from storage.registry import RegistryStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


async def _blob(store: RegistryStore, name: str, data: bytes) -> Digest:
    up = await store.start_upload(name)

    async def body():
        yield data
    up = await store.append_upload(up, body(), len(data))
    return await store.finish_upload(up, Digest.of(data))


async def _image(store: RegistryStore, name: str, tag: str | None, seed: str, subject: Digest | None = None,
                 raw_subject: bytes = b"") -> tuple[Digest, list[Digest]]:
    config = await _blob(store, name, f'{{"seed":"{seed}"}}'.encode())
    layer = await _blob(store, name, f"layer {seed}".encode())
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(config),
                      "size": len(f'{{"seed":"{seed}"}}')},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": str(layer),
                       "size": len(f"layer {seed}")}]}
    if subject is not None:
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": str(subject), "size": len(raw_subject)}
    raw = json.dumps(doc).encode()
    d, _ = await store.put_manifest(name, tag or str(Digest.of(raw)), raw, OCI_MANIFEST)
    return d, [config, layer]


async def test_gc_keeps_referenced_and_sweeps_the_rest() -> None:
    store = RegistryStore(MemoryDriver())
    kept, kept_blobs = await _image(store, "a/app", "v1", "kept")
    raw_kept = await store.read_blob(kept)
    sig, sig_blobs = await _image(store, "a/app", None, "sig", subject=kept, raw_subject=raw_kept)
    gone, gone_blobs = await _image(store, "a/app", "v2", "gone")
    await store.delete_manifest("a/app", gone)
    orphan = await _blob(store, "a/app", b"pushed but never used")
    report = await collect(store, grace=0)
    assert set(report.swept) == {gone, *gone_blobs, orphan}
    for d in [kept, *kept_blobs, sig, *sig_blobs]:
        assert await store.blob_size(d) > 0
    for d in report.swept:
        assert not await store._exists(paths.blob_data(d))
        assert not await store._exists(paths.layer_link("a/app", d))


async def test_gc_delete_untagged_and_grace_and_dry_run() -> None:
    store = RegistryStore(MemoryDriver())
    tagged, _ = await _image(store, "b/app", "v1", "t")
    untagged, untagged_blobs = await _image(store, "b/app", None, "u")
    dry = await collect(store, delete_untagged=True, grace=0, dry_run=True)
    assert dry.untagged_manifests == [("b/app", untagged)]
    assert await store.blob_size(untagged) > 0
    # An untagged revision younger than the grace period may be a push whose tag is not
    # written yet: it stays, with everything it references.
    young = await collect(store, delete_untagged=True, grace=3600)
    assert not young.untagged_manifests and not young.swept
    assert {untagged, *untagged_blobs} <= young.marked
    report = await collect(store, delete_untagged=True, grace=0)
    assert set(report.swept) == {untagged, *untagged_blobs}
    assert await store.blob_size(tagged) > 0


def test_gc_cli_on_a_filesystem_root(tmp_path: Path) -> None:
    from tests.registry.http import ServerProcess
    server = ServerProcess(tmp_path / "root")
    try:
        c = server.client()
        c.push_blob("c/app", b"orphan bytes")
    finally:
        server.stop()
    cmd = [sys.executable, "-m", "hoist.cli", "registry", "gc", "--root", str(tmp_path / "root")]
    cwd = Path(__file__).resolve().parents[2]
    out = subprocess.run(cmd + ["--grace", "0s", "--dry-run"], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0 and "would delete 1" in out.stdout
    out = subprocess.run(cmd + ["--grace", "0s"], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0 and "deleted 1 (12 bytes)" in out.stdout
    assert not list((tmp_path / "root/docker/registry/v2/blobs").rglob("data"))
    bad = subprocess.run(cmd + ["--grace", "soon"], capture_output=True, text=True, cwd=cwd)
    assert bad.returncode != 0 and "invalid duration" in bad.stderr and "Traceback" not in bad.stderr
