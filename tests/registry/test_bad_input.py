"""Bad input gets the spec's error code and status: never a 500, never a change to stored data."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest

from registry import routes
from tests.registry.http import Client, ServerProcess, digest_of, image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _blob_files(root: Path) -> set[str]:
    base = root / "docker/registry/v2/blobs"
    return {str(p.relative_to(base)) for p in base.rglob("data")} if base.exists() else set()


@pytest.mark.parametrize("name", ["Upper/case", "a/../x", "-leading", "trailing-", "a//b", "a__b___c",
                                  "a" * 256, "/".join(["abcdefghij"] * 24), "a.-b", "ok/_hidden"])
def test_invalid_repository_names(client: Client, name: str) -> None:
    for method, path in [("GET", routes.manifest(name, "latest")), ("GET", routes.tags(name)),
                         ("POST", routes.upload_start(name)), ("HEAD", routes.blob(name, digest_of(b"x")))]:
        r = client.request(method, path)
        assert r.status in (400, 404), (method, path, r.status)
        if r.status == 400 and method != "HEAD":
            assert r.error_codes() == ["NAME_INVALID"]


def test_dot_dot_never_escapes(client: Client, registry_server: ServerProcess) -> None:
    before = sorted(p.name for p in registry_server.root.parent.iterdir())
    for raw in ["/v2/../../etc/manifests/latest", "/v2/%2e%2e/x/manifests/latest",
                "/v2/a/%2e%2e/%2e%2e/b/blobs/uploads/", "/v2/..%2f..%2fx/tags/list"]:
        r = client.request("POST" if raw.endswith("uploads/") else "GET", raw)
        assert r.status in (400, 404), (raw, r.status)
    assert sorted(p.name for p in registry_server.root.parent.iterdir()) == before


def test_name_of_255_chars_is_fine_and_256_is_not(client: Client) -> None:
    ok = "n/" + "a" * 253
    assert client.request("POST", routes.upload_start(ok)).status == 202
    bad = "n/" + "a" * 254
    r = client.request("POST", routes.upload_start(bad))
    assert r.status == 400 and r.error_codes() == ["NAME_INVALID"]


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "G" * 64, "md5:" + "a" * 32,
                                    "sha256:" + "A" * 64, "notadigest", "sha512:" + "a" * 64])
def test_malformed_digests(client: Client, repo: str, digest: str) -> None:
    client.push_blob(repo, b"anything")
    r = client.request("GET", routes.blob(repo, digest))
    assert r.status == 400 and r.error_codes() == ["DIGEST_INVALID"]
    r = client.request("POST", routes.upload_start(repo, digest=digest), b"x")
    assert r.status == 400 and r.error_codes() == ["DIGEST_INVALID"]
    r = client.request("GET", routes.referrers(repo, digest))
    assert r.status == 400 and r.error_codes() == ["DIGEST_INVALID"]


def test_sha512_digest_is_accepted(client: Client, repo: str) -> None:
    data = b"sha512 content"
    d = "sha512:" + hashlib.sha512(data).hexdigest()
    r = client.request("POST", routes.upload_start(repo, digest=d), data)
    assert r.status == 201
    assert client.request("GET", routes.blob(repo, d)).body == data


def test_monolithic_body_with_wrong_digest_stores_nothing(client: Client, repo: str,
                                                          registry_server: ServerProcess) -> None:
    before = _blob_files(registry_server.root)
    r = client.request("POST", routes.upload_start(repo, digest=digest_of(b"expected")), b"actual")
    assert r.status == 400 and r.error_codes() == ["DIGEST_INVALID"]
    assert _blob_files(registry_server.root) == before


def _raw_send(server: ServerProcess, head: str, body: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(head.encode() + body)
        time.sleep(0.2)


def _wait_range(client: Client, loc: str, expected: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = client.request("GET", loc)
        if r.header("Range") == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"upload range stayed {r.header('Range')}, expected {expected}")


def test_disconnect_mid_patch_rolls_the_chunk_back(client: Client, repo: str,
                                                   registry_server: ServerProcess) -> None:
    r = client.request("POST", routes.upload_start(repo))
    loc = r.header("Location")
    r = client.request("PATCH", loc, b"A" * 1000, {"Content-Range": "0-999"})
    assert r.status == 202
    before = _blob_files(registry_server.root)
    _raw_send(registry_server,
              f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\nContent-Range: 1000-4000999\r\n\r\n",
              b"B" * 1_500_000)
    _wait_range(client, loc, "0-999")
    assert _blob_files(registry_server.root) == before
    # The upload continues from where it was.
    r = client.request("PATCH", loc, b"C" * 10, {"Content-Range": "1000-1009"})
    assert r.status == 202 and r.header("Range") == "0-1009"
    d = digest_of(b"A" * 1000 + b"C" * 10)
    assert client.request("PUT", f"{loc}?digest={d}").status == 201


def test_disconnect_mid_monolithic_upload_leaves_no_blob(client: Client, repo: str,
                                                         registry_server: ServerProcess) -> None:
    data = os.urandom(2_000_000)
    before = _blob_files(registry_server.root)
    path = routes.upload_start(repo, digest=digest_of(data))
    _raw_send(registry_server, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n",
              data[:700_000])
    time.sleep(0.3)
    assert _blob_files(registry_server.root) == before
    assert client.request("HEAD", routes.blob(repo, digest_of(data))).status == 404
    uploads = registry_server.root / "docker/registry/v2/repositories" / repo / "_uploads"
    deadline = time.monotonic() + 5
    while uploads.exists() and any(uploads.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not uploads.exists() or not any(uploads.iterdir())


def test_content_length_shorter_than_body_is_refused(client: Client, repo: str) -> None:
    data = b"0123456789"
    r = client.request("POST", routes.upload_start(repo, digest=digest_of(data)), data,
                       {"Content-Length": "5"})
    # The first five bytes fail the digest; the rest is an unparseable next request. Either way: 400.
    assert r.status == 400
    assert client.request("HEAD", routes.blob(repo, digest_of(data))).status == 404
    assert client.request("HEAD", routes.blob(repo, digest_of(data[:5]))).status == 404


def test_bad_content_length_header(client: Client, repo: str) -> None:
    r = client.request("POST", routes.upload_start(repo))
    with socket.create_connection(("127.0.0.1", client.port)) as s:
        s.sendall(f"PATCH {r.header('Location')} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".encode())
        reply = s.recv(4096)
    assert reply.split(b" ", 2)[1] == b"400"


def test_oversized_manifest_is_413(client: Client, repo: str) -> None:
    big = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"pad": "x" * (4 << 20)},
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(b""), "size": 0},
           "layers": []}
    r = client.push_manifest(repo, "big", big)
    assert r.status == 413
    assert r.error_codes() == ["SIZE_INVALID"]
    assert client.request("GET", routes.manifest(repo, "big")).status == 404


@pytest.mark.parametrize("body,why", [
    (b"{not json", "invalid JSON"),
    (b"[]", "not an object"),
    (b'{"schemaVersion": 1}', "schema 1"),
    (b'{"schemaVersion": 2, "mediaType": "application/x-unknown", "config": {}, "layers": []}', "unknown type"),
    (b'{"schemaVersion": 2, "mediaType": "%s", "layers": []}' % OCI_MANIFEST.encode(), "no config"),
    (b'{"schemaVersion": 2, "mediaType": "%s", "config": {"mediaType": "a/b", "digest": "sha256:00", "size": 1},'
     b' "layers": []}' % OCI_MANIFEST.encode(), "bad config digest"),
    (b'{"schemaVersion": 2, "mediaType": "%s", "config": {"mediaType": "a/b", "digest": "%s", "size": -1},'
     b' "layers": []}' % (OCI_MANIFEST.encode(), digest_of(b"").encode()), "negative size"),
    (b"\xff\xfe\x00garbage", "binary"),
])
def test_invalid_manifests(client: Client, repo: str, body: bytes, why: str) -> None:
    r = client.request("PUT", routes.manifest(repo, "bad"), body, {"Content-Type": OCI_MANIFEST})
    assert r.status == 400, why
    assert r.error_codes() == ["MANIFEST_INVALID"], why
    assert client.request("GET", routes.manifest(repo, "bad")).status == 404


def test_media_type_must_match_content_type(client: Client, repo: str) -> None:
    doc, _, raw = image(client, repo, "v1")
    r = client.request("PUT", routes.manifest(repo, "v2"), raw,
                       {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.status == 400 and r.error_codes() == ["MANIFEST_INVALID"]


def test_invalid_tag(client: Client, repo: str) -> None:
    _, _, raw = image(client, repo, "v1")
    r = client.request("PUT", routes.manifest(repo, ".bad-tag"), raw, {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.error_codes() == ["MANIFEST_INVALID"]
    r = client.request("PUT", routes.manifest(repo, "t" * 129), raw, {"Content-Type": OCI_MANIFEST})
    assert r.status == 400


def test_bad_input_never_changes_stored_data(client: Client, repo: str, registry_server: ServerProcess) -> None:
    _, d, raw = image(client, repo, "v1")
    for body in (b"{", b"[]", b'{"schemaVersion":2}'):
        client.request("PUT", routes.manifest(repo, "v1"), body, {"Content-Type": OCI_MANIFEST})
        client.request("PUT", routes.manifest(repo, d), body, {"Content-Type": OCI_MANIFEST})
    r = client.request("GET", routes.manifest(repo, "v1"))
    assert r.body == raw and r.header("Docker-Content-Digest") == d


def test_no_request_gets_a_500(client: Client, repo: str) -> None:
    image(client, repo, "v1")
    weird = ["/v2/x/manifests/", "/v2/x/blobs/", "/v2/x/blobs/uploads", "/v2//manifests/a",
             "/v2/x/manifests/%00", "/v2/x/tags/list?n=99999999999999999999", "/v2/_catalog?n=x",
             "/v2/x/blobs/uploads/../../../etc", "/v2/x/referrers/", "/v2/" + "a/" * 200 + "tags/list"]
    for path in weird:
        for method in ("GET", "HEAD", "PUT", "DELETE", "PATCH", "POST"):
            r = client.request(method, path, b"" if method in ("PUT", "PATCH", "POST") else None)
            assert r.status < 500, (method, path, r.status, r.body[:200])


def _manifest(**changes: object) -> dict:
    doc: dict = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                 "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(b"{}"),
                            "size": 2},
                 "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(b"l"),
                             "size": 1}]}
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = doc
        for k in parents:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[int(last) if isinstance(node, list) else last] = value
    return doc


def _json(doc: dict) -> bytes:
    return json.dumps(doc).encode()


OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_INDEX_CHILD = {"mediaType": OCI_MANIFEST, "digest": digest_of(b"m"), "size": 1}

# Each body breaks one rule of the image spec's JSON schema (or of strict JSON): 400 MANIFEST_INVALID.
SCHEMA_VIOLATIONS = [
    (b"[" * 100_000 + b"]" * 100_000, "nested 100,000 levels"),
    (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "objects nested 100,000 levels"),
    (_json(_manifest(annotations={"x": json.dumps(0)})).replace(b'"0"', b"[" * 70 + b"]" * 70), "nested 70 levels"),
    (_json(_manifest()).decode().encode("utf-16"), "UTF-16 with BOM"),
    (b"\xef\xbb\xbf" + _json(_manifest()), "UTF-8 BOM"),
    (_json(_manifest()).replace(b'"layers"', b'"l\xe9yers"'), "Latin-1 byte"),
    (_json(_manifest(schemaVersion=2.0)).replace(b'"schemaVersion": 2', b'"schemaVersion": 2.0'), "float version"),
    (_json(_manifest(schemaVersion="2")), "string version"),
    (_json(_manifest(schemaVersion=True)), "boolean version"),
    (_json(_manifest(layers__0__size=1 << 63)), "size over 2^63-1"),
    (_json(_manifest(layers__0__size=-1)), "negative size"),
    (_json(_manifest(layers__0__size=1.0)).replace(b'"size": 1.0', b'"size": 1.0'), "float size"),
    (_json(_manifest(layers__0__size="1")), "string size"),
    (_json(_manifest()).replace(b'"size": 1}', b'"size": NaN}'), "NaN"),
    (_json(_manifest()).replace(b'"size": 1}', b'"size": 1, "size": 1}'), "duplicate key"),
    (_json(_manifest(layers__0__mediaType="application/vnd.oci.image.layer.v1.tar; x=y")), "media type parameter"),
    (_json(_manifest(layers__0__mediaType="/tar")), "empty type"),
    (_json(_manifest(layers__0__mediaType=7)), "numeric media type"),
    (_json(_manifest(layers__0__digest="sha256:" + "A" * 64)), "uppercase hex digest"),
    (_json(_manifest(layers__0__digest=7)), "numeric digest"),
    (_json(_manifest(layers__0__urls="http://x")), "urls not a list"),
    (_json(_manifest(layers__0__annotations={"a": 1})), "annotation value not a string"),
    (_json(_manifest(layers__0__data="not base64!")), "data not base64"),
    (_json(_manifest(annotations={"a": ["b"]})), "top annotation value not a string"),
    (_json(_manifest(annotations=[])), "annotations a list"),
    (_json(_manifest(layers={})), "layers an object"),
    (_json(_manifest(config=[])), "config a list"),
    (_json(_manifest(artifactType="nope")), "artifactType without subtype"),
    (_json(_manifest(annotations={"a": "\ud800"})).replace(b"\\\\ud800", b"\\ud800"), "lone surrogate"),
    (_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}}), "index manifests an object"),
    (_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{**_INDEX_CHILD, "platform": {"os": "linux", "architecture": 64}}]}), "architecture a number"),
    (_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{**_INDEX_CHILD, "platform": {"os": "linux", "architecture": "amd64",
                                                         "os.features": "x"}}]}), "os.features a string"),
    (_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{**_INDEX_CHILD, "size": 1 << 64}]}), "index child size over int64"),
]


@pytest.mark.parametrize("body,why", SCHEMA_VIOLATIONS, ids=[why for _, why in SCHEMA_VIOLATIONS])
def test_manifests_breaking_the_schema_are_refused(client: Client, repo: str, body: bytes, why: str) -> None:
    r = client.request("PUT", routes.manifest(repo, "bad"), body, {"Content-Type": OCI_MANIFEST
                       if b"index" not in body[:200] else OCI_INDEX})
    assert r.status == 400, (why, r.status, r.body[:300])
    assert r.error_codes() == ["MANIFEST_INVALID"], why


def test_schema_edge_values_that_are_valid(client: Client, repo: str) -> None:
    config = client.push_blob(repo, b"{}")
    layer = client.push_blob(repo, b"l")
    doc = _manifest(config__digest=config, layers__0__digest=layer,
                    layers__0__annotations={"k": "v"}, annotations={"org.opencontainers.image.title": "é"})
    doc["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(b"far"),
                          "size": (1 << 63) - 1, "urls": ["https://example.invalid/far"]})
    r = client.push_manifest(repo, "edge", doc)
    assert r.status == 201, r.body


RANGE_CASES = [
    ("bytes=-0", None, 416, None),
    ("bytes=10-", None, 416, None),
    ("bytes=99-200", None, 416, None),
    ("bytes=5-2", None, 416, None),
    ("bytes=-", None, 416, None),
    ("bytes=x-1", None, 416, None),
    ("bytes=-20", None, 206, (0, 9)),
    ("bytes=-3", None, 206, (7, 9)),
    ("bytes=3-100", None, 206, (3, 9)),
    ("bytes=0-0", None, 206, (0, 0)),
    ("bytes=9-", None, 206, (9, 9)),
    ("bytes=0-1,4-5", None, 200, None),
    ("items=0-1", None, 200, None),
    ("bytes=2-4", '"sha256:other"', 200, None),
    ("bytes=2-4", "Wed, 21 Oct 2015 07:28:00 GMT", 200, None),
    ("bytes=2-4", "ETAG", 206, (2, 4)),
]


@pytest.mark.parametrize("rng,if_range,status,span", RANGE_CASES, ids=[f"{c[0]}|{c[1]}" for c in RANGE_CASES])
def test_range_requests_follow_rfc_9110(client: Client, repo: str, rng: str, if_range: str | None,
                                        status: int, span: tuple[int, int] | None) -> None:
    data = b"0123456789"
    d = client.push_blob(repo, data)
    headers = {"Range": rng}
    if if_range:
        headers["If-Range"] = f'"{d}"' if if_range == "ETAG" else if_range
    r = client.request("GET", routes.blob(repo, d), headers=headers)
    assert r.status == status, (rng, r.status, r.body[:100])
    if status == 416:
        assert r.header("Content-Range") == "bytes */10"
    elif status == 200:
        assert r.body == data and r.header("Content-Range") is None
    else:
        start, end = span
        assert r.body == data[start:end + 1] and r.header("Content-Range") == f"bytes {start}-{end}/10"
