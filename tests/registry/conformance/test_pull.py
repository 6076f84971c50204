"""Conformance — pull: /v2/, blobs and manifests by tag and by digest (OCI distribution-spec v1.1)."""

from __future__ import annotations

import json

from registry import routes
from tests.registry.http import Client, digest_of, image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def test_base_answers_200_with_api_version(client: Client) -> None:
    r = client.request("GET", routes.base())
    assert r.status == 200
    assert r.header("Docker-Distribution-API-Version") == "registry/2.0"


def test_get_blob(client: Client, repo: str) -> None:
    d = client.push_blob(repo, b"some blob bytes")
    r = client.request("GET", routes.blob(repo, d))
    assert r.status == 200
    assert r.body == b"some blob bytes"
    assert r.header("Docker-Content-Digest") == d
    assert r.header("Content-Length") == "15"


def test_head_blob(client: Client, repo: str) -> None:
    d = client.push_blob(repo, b"0123456789")
    r = client.request("HEAD", routes.blob(repo, d))
    assert r.status == 200
    assert r.body == b""
    assert r.header("Content-Length") == "10"
    assert r.header("Docker-Content-Digest") == d


def test_unknown_blob_is_404_blob_unknown(client: Client, repo: str) -> None:
    client.push_blob(repo, b"x")
    d = digest_of(b"never pushed")
    r = client.request("GET", routes.blob(repo, d))
    assert r.status == 404
    assert r.error_codes() == ["BLOB_UNKNOWN"]
    assert client.request("HEAD", routes.blob(repo, d)).status == 404


def test_blob_range_requests(client: Client, repo: str) -> None:
    data = bytes(range(256)) * 40
    d = client.push_blob(repo, data)
    r = client.request("GET", routes.blob(repo, d), headers={"Range": "bytes=100-199"})
    assert r.status == 206
    assert r.body == data[100:200]
    assert r.header("Content-Range") == f"bytes 100-199/{len(data)}"
    r = client.request("GET", routes.blob(repo, d), headers={"Range": "bytes=10000-"})
    assert r.status == 206 and r.body == data[10000:]
    r = client.request("GET", routes.blob(repo, d), headers={"Range": "bytes=-5"})
    assert r.status == 206 and r.body == data[-5:]
    r = client.request("GET", routes.blob(repo, d), headers={"Range": f"bytes={len(data)}-"})
    assert r.status == 416


def test_blob_of_other_repository_is_not_visible(client: Client, repo: str) -> None:
    d = client.push_blob(repo, b"private to repo")
    r = client.request("GET", routes.blob(repo + "-other", d))
    assert r.status == 404
    assert r.error_codes() == ["BLOB_UNKNOWN"]


def test_get_manifest_by_tag_and_digest(client: Client, repo: str) -> None:
    _, d, raw = image(client, repo, "v1")
    for ref in ("v1", d):
        r = client.request("GET", routes.manifest(repo, ref), headers={"Accept": OCI_MANIFEST})
        assert r.status == 200
        assert r.body == raw
        assert r.header("Content-Type") == OCI_MANIFEST
        assert r.header("Docker-Content-Digest") == d


def test_head_manifest_by_tag_and_digest(client: Client, repo: str) -> None:
    _, d, raw = image(client, repo, "v1")
    for ref in ("v1", d):
        r = client.request("HEAD", routes.manifest(repo, ref), headers={"Accept": OCI_MANIFEST})
        assert r.status == 200
        assert r.body == b""
        assert r.header("Content-Length") == str(len(raw))
        assert r.header("Docker-Content-Digest") == d
        assert r.header("Content-Type") == OCI_MANIFEST


def test_unknown_manifest_is_404(client: Client, repo: str) -> None:
    image(client, repo, "v1")
    for ref in ("nope", digest_of(b"nope")):
        r = client.request("GET", routes.manifest(repo, ref))
        assert r.status == 404
        assert r.error_codes() == ["MANIFEST_UNKNOWN"]
        assert client.request("HEAD", routes.manifest(repo, ref)).status == 404


def test_unknown_repository_manifest_is_404(client: Client) -> None:
    r = client.request("GET", routes.manifest("no/such/repo", "latest"))
    assert r.status == 404
    assert r.error_codes() == ["MANIFEST_UNKNOWN"]


def test_manifest_is_served_byte_for_byte(client: Client, repo: str) -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
    cd = client.push_blob(repo, config)
    # Odd but valid JSON formatting must survive: the digest is of these exact bytes.
    raw = ('{\n   "schemaVersion" : 2,  "mediaType": "%s",\n "config": {"mediaType": '
           '"application/vnd.oci.image.config.v1+json", "digest": "%s", "size": %d},\n'
           ' "layers": []\n}\n' % (OCI_MANIFEST, cd, len(config))).encode()
    r = client.push_manifest(repo, "weird", raw)
    assert r.status == 201
    assert r.header("Docker-Content-Digest") == digest_of(raw)
    assert client.request("GET", routes.manifest(repo, "weird")).body == raw


def test_docker_schema2_and_manifest_list(client: Client, repo: str) -> None:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    cd = client.push_blob(repo, config)
    layer = b"gzip-ish layer"
    ld = client.push_blob(repo, layer)
    m = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
         "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd, "size": len(config)},
         "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ld, "size": len(layer)}]}
    raw = json.dumps(m).encode()
    r = client.push_manifest(repo, "amd64", raw, DOCKER_MANIFEST)
    assert r.status == 201
    md = r.header("Docker-Content-Digest")
    lst = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": md, "size": len(raw),
         "platform": {"architecture": "amd64", "os": "linux"}}]}
    lraw = json.dumps(lst).encode()
    r = client.push_manifest(repo, "multi", lraw, DOCKER_LIST)
    assert r.status == 201
    r = client.request("GET", routes.manifest(repo, "multi"), headers={"Accept": f"{DOCKER_LIST}, {DOCKER_MANIFEST}"})
    assert r.status == 200 and r.header("Content-Type") == DOCKER_LIST and r.body == lraw
    # A client that only takes image manifests gets the linux/amd64 child, as from Distribution.
    r = client.request("GET", routes.manifest(repo, "multi"), headers={"Accept": DOCKER_MANIFEST})
    assert r.status == 200 and r.body == raw and r.header("Docker-Content-Digest") == md


def test_accept_negotiation_refuses_unacceptable_type(client: Client, repo: str) -> None:
    _, d, _ = image(client, repo, "v1")
    r = client.request("GET", routes.manifest(repo, "v1"), headers={"Accept": DOCKER_MANIFEST})
    assert r.status == 404
    assert r.error_codes() == ["MANIFEST_UNKNOWN"]
    r = client.request("GET", routes.manifest(repo, "v1"), headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"})
    assert r.status == 200
    r = client.request("GET", routes.manifest(repo, "v1"), headers={"Accept": "*/*"})
    assert r.status == 200


def test_oci_index(client: Client, repo: str) -> None:
    _, d1, raw1 = image(client, repo, None, seed="a")
    _, d2, raw2 = image(client, repo, None, seed="b")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d1, "size": len(raw1), "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI_MANIFEST, "digest": d2, "size": len(raw2), "platform": {"architecture": "arm64", "os": "linux"}}]}
    raw = json.dumps(index).encode()
    r = client.push_manifest(repo, "idx", raw, OCI_INDEX)
    assert r.status == 201
    r = client.request("GET", routes.manifest(repo, "idx"), headers={"Accept": OCI_INDEX})
    assert r.status == 200 and r.body == raw and r.header("Content-Type") == OCI_INDEX


def test_error_bodies_are_oci_json(client: Client, repo: str) -> None:
    r = client.request("GET", routes.manifest(repo, "sha256:totallywrong"))
    assert r.status == 400
    body = r.json()
    assert body["errors"][0]["code"] == "DIGEST_INVALID"
    assert isinstance(body["errors"][0]["message"], str)
    assert r.header("Content-Type").startswith("application/json")
