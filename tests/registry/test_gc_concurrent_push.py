"""GC on a filesystem root while the real server takes a push that references an old layer:
a push before gc's re-check keeps its layers and pulls; one after is refused (400), never lost."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from registry import routes
from storage.drivers.filesystem import FilesystemDriver
from storage.gc import collect
from storage.registry import RegistryStore
from tests.registry.http import Response, ServerProcess, digest_of, image


@pytest.mark.parametrize("phase,acked", [("marked", True), ("deleting", True), ("rechecked", False)])
async def test_push_referencing_an_old_layer_during_gc(tmp_path: Path, phase: str, acked: bool) -> None:
    server = ServerProcess(tmp_path / "root")
    try:
        c = server.client()
        doc, d, _ = image(c, "race/app", "old", seed="race")
        assert c.request("DELETE", routes.manifest("race/app", d)).status == 202
        layer = doc["layers"][0]["digest"]
        assert c.request("HEAD", routes.blob("race/app", layer)).status == 200
        new = dict(doc, annotations={"pushed": "during gc"})
        hexd = digest_of(json.dumps(new).encode()).split(":")[1]
        revision = tmp_path / f"root/docker/registry/v2/repositories/race/app/_manifests/revisions/sha256/{hexd}/link"
        result: dict[str, Response] = {}
        pusher = threading.Thread(target=lambda: result.setdefault("r", c.push_manifest("race/app", "new", new)))

        async def hook(at: str) -> None:
            if at == phase:
                pusher.start()
                while not revision.exists():  # the server wrote the revision: now gc goes on
                    await asyncio.sleep(0.005)

        driver = FilesystemDriver(tmp_path / "root")
        report = await collect(RegistryStore(driver), grace=0, hook=hook)
        await asyncio.to_thread(pusher.join, 60)
        r = result["r"]
        if acked:
            assert r.status == 201, r.body
            assert layer not in {str(x) for x in report.swept}
            m = c.request("GET", routes.manifest("race/app", "new"),
                          headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert m.status == 200
            for desc in [doc["config"], *doc["layers"]]:
                b = c.request("GET", routes.blob("race/app", desc["digest"]))
                assert b.status == 200 and digest_of(b.body) == desc["digest"]
        else:
            assert r.status == 400 and r.error_codes() == ["MANIFEST_BLOB_UNKNOWN"], r.body
            assert c.request("GET", routes.manifest("race/app", "new")).status == 404
    finally:
        server.stop()
