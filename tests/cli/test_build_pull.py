"""``hoist build`` FROM a registry image: pulled with the client when not local (or with --pull),
its digest resolved and shown, the result run."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

from storage import mediatypes as mt
from tests.cli.conftest import run_hoist
from tests.cli.fakeregistry import FakeRegistry
from tests.cli.helpers import Hoist
from tests.runtime.images import busybox_entries, layer_tar as entries_tar


def _publish(registry: FakeRegistry) -> str:
    tar = entries_tar(busybox_entries())
    blob = gzip.compress(tar, mtime=0)
    layer = registry.add_blob(blob)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
                         }).encode()
    config_digest = registry.add_blob(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config)},
                           "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": layer, "size": len(blob)}]}).encode()
    return registry.add_manifest("lib/bb", ["1"], manifest, mt.OCI_MANIFEST)


async def test_from_a_registry_image(fake: tuple[FakeRegistry, str], hoist: Hoist, tmp_path: Path) -> None:
    registry, host = fake
    digest = _publish(registry)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {host}/lib/bb:1\nRUN echo pulled > /p\n")
    r = await run_hoist(hoist, "build", "-t", "x:1", str(ctx))
    assert f"FROM {host}/lib/bb:1@{digest}" in r.err
    out = await run_hoist(hoist, "run", "--rm", "x:1", "cat", "/p")
    assert out.out == "pulled\n"
    # Local now: a rebuild does not ask the registry (it is gone); --pull does, and says so.
    registry.manifests.clear()
    again = await run_hoist(hoist, "build", "-t", "x:1", str(ctx))
    assert "CACHED" in again.err
    failed = await run_hoist(hoist, "build", "--pull", "-t", "x:2", str(ctx), ok=False)
    assert failed.code == 1 and "Dockerfile:1: " in failed.err.strip().splitlines()[-1]

