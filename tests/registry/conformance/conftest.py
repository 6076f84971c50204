"""The conformance checklist runs against hoist on the filesystem driver and on S3 (moto)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.registry.http import ServerProcess


@pytest.fixture(scope="session", params=["filesystem", "s3"])
def registry_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp(f"registry-{request.param}")
    if request.param == "filesystem":
        server = ServerProcess(root)
    else:
        moto = request.getfixturevalue("moto_s3")
        bucket = f"conf-{uuid.uuid4().hex[:12]}"
        moto.create_bucket(bucket)
        cfg = root / "s3.yml"
        cfg.write_text(json.dumps({"storage": {"s3": {
            "bucket": bucket, "regionendpoint": moto.endpoint, "accesskey": "test", "secretkey": "test"}}}))
        server = ServerProcess(root, config=cfg)
    try:
        yield server
    finally:
        server.stop()
