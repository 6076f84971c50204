"""The application on the in-memory driver, through aiohttp's test client: the fast path for
API tests, and proof that create_app works on any driver."""

from __future__ import annotations

import hashlib
import json

from registry import routes
from registry.server.app import create_app
from registry.server.config import Config
from storage.drivers.memory import MemoryDriver


async def test_push_pull_roundtrip_in_memory(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(Config(), MemoryDriver()))
    config = b'{"architecture":"amd64","os":"linux"}'
    cd = "sha256:" + hashlib.sha256(config).hexdigest()
    r = await client.post(routes.upload_start("mem/app", digest=cd), data=config)
    assert r.status == 201
    r = await client.post(routes.upload_start("mem/app"))
    loc = r.headers["Location"]
    layer = b"L" * 300_000
    r = await client.patch(loc, data=layer[:100_000], headers={"Content-Range": "0-99999"})
    assert r.status == 202 and r.headers["Range"] == "0-99999"
    r = await client.patch(r.headers["Location"], data=layer[100_000:], headers={"Content-Range": "100000-299999"})
    ld = "sha256:" + hashlib.sha256(layer).hexdigest()
    r = await client.put(f"{r.headers['Location']}?digest={ld}")
    assert r.status == 201
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd,
                                      "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld,
                                       "size": len(layer)}]}).encode()
    r = await client.put(routes.manifest("mem/app", "v1"), data=manifest,
                         headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 201
    r = await client.get(routes.manifest("mem/app", "v1"))
    assert await r.read() == manifest
    r = await client.get(routes.blob("mem/app", ld), headers={"Range": "bytes=299990-"})
    assert r.status == 206 and await r.read() == layer[299990:]
    r = await client.get(routes.blob("mem/app", ld))
    assert r.status == 200 and await r.read() == layer
    r = await client.get(routes.tags("mem/app"))
    assert (await r.json())["tags"] == ["v1"]
    r = await client.get(routes.catalog())
    assert (await r.json())["repositories"] == ["mem/app"]


async def test_metrics_and_health(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(Config(), MemoryDriver()))
    assert (await client.get(routes.base())).status == 200
    assert (await client.get(routes.manifest("a/b", "nope"))).status == 404
    r = await client.get(routes.PATTERNS["health"])
    assert r.status == 200 and (await r.json())["status"] == "ok"
    text = await (await client.get(routes.PATTERNS["metrics"])).text()
    assert 'hoist_http_requests_total{method="GET",route="get_base",status="200"} 1.0' in text
    assert 'hoist_http_requests_total{method="GET",route="get_manifest",status="404"} 1.0' in text
    assert "hoist_http_request_duration_seconds_bucket" in text
