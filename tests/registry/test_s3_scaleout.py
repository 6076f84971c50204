"""The scale-out path: several stateless registry processes on one S3 bucket (moto in server
mode), with blob GETs redirected to presigned URLs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from registry import routes
from tests.images import manifest_of, random_layers, write_image
from tests.peers import MotoS3, skopeo
from tests.registry.http import ServerProcess, image


def _s3_config(tmp_path: Path, moto: MotoS3, bucket: str, redirect: bool) -> Path:
    cfg = tmp_path / f"s3-{uuid.uuid4().hex[:6]}.yml"
    cfg.write_text(json.dumps({"storage": {"s3": {
        "bucket": bucket, "regionendpoint": moto.endpoint, "region": "us-east-1",
        "accesskey": "test", "secretkey": "test", "rootdirectory": "/registry", "redirect": redirect}}}))
    return cfg


def test_two_registries_share_one_bucket(moto_s3: MotoS3, tmp_path: Path) -> None:
    bucket = f"reg-{uuid.uuid4().hex[:12]}"
    moto_s3.create_bucket(bucket)
    a = ServerProcess(tmp_path / "a", config=_s3_config(tmp_path, moto_s3, bucket, redirect=False))
    b = ServerProcess(tmp_path / "b", config=_s3_config(tmp_path, moto_s3, bucket, redirect=True))
    try:
        src = tmp_path / "src"
        write_image(src, "app", random_layers(2, 6_000_000, seed=3) + [{"etc/x": b"x"}])
        skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:app", f"docker://{a.addr}/team/app:1")
        out = tmp_path / "out"
        # Pulled through the other process, blobs via presigned-URL redirects to the bucket.
        skopeo("copy", "--src-tls-verify=false", f"docker://{b.addr}/team/app:1", f"oci:{out}:app")
        assert manifest_of(out, "app") == manifest_of(src, "app")
        ca, cb = a.client(), b.client()
        doc = json.loads(manifest_of(src, "app")[1])
        layer = doc["layers"][0]["digest"]
        r = cb.request("GET", routes.blob("team/app", layer))
        assert r.status == 307 and r.header("Location").startswith(moto_s3.endpoint)
        assert ca.request("GET", routes.blob("team/app", layer)).status == 200
        # A chunked upload may move between processes mid-way.
        r = ca.request("POST", routes.upload_start("team/other"))
        loc = r.header("Location")
        assert ca.request("PATCH", loc, b"a" * 1000, {"Content-Range": "0-999"}).status == 202
        assert cb.request("PATCH", loc, b"b" * 1000, {"Content-Range": "1000-1999"}).status == 202
        assert ca.request("GET", loc).header("Range") == "0-1999"
        from tests.registry.http import digest_of
        d = digest_of(b"a" * 1000 + b"b" * 1000)
        assert cb.request("PUT", f"{loc}?digest={d}").status == 201
        assert ca.request("HEAD", routes.blob("team/other", d)).status == 200
        # Tags and catalog agree across processes.
        image(cb, "team/third", "v1")
        assert ca.request("GET", routes.tags("team/third")).json()["tags"] == ["v1"]
        # team/other holds only a blob: Distribution lists it too.
        assert ca.request("GET", routes.catalog()).json()["repositories"] == ["team/app", "team/other", "team/third"]
    finally:
        a.stop()
        b.stop()
