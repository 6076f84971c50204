"""Conformance — push: uploads (monolithic, streamed, chunked), mounts, manifests."""

from __future__ import annotations

import json

from registry import routes
from tests.registry.http import Client, digest_of, image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _start(client: Client, repo: str) -> str:
    r = client.request("POST", routes.upload_start(repo))
    assert r.status == 202
    assert r.header("Location")
    assert r.header("Range") == "0-0"
    assert r.header("Docker-Upload-UUID")
    return r.header("Location")


def test_post_then_put_monolithic(client: Client, repo: str) -> None:
    loc = _start(client, repo)
    data = b"monolithic put"
    d = digest_of(data)
    r = client.request("PUT", f"{loc}?digest={d}", data, {"Content-Type": "application/octet-stream"})
    assert r.status == 201
    assert r.header("Location") == routes.blob(repo, d)
    assert r.header("Docker-Content-Digest") == d
    assert client.request("GET", routes.blob(repo, d)).body == data


def test_single_post_monolithic(client: Client, repo: str) -> None:
    data = b"single post"
    d = digest_of(data)
    r = client.request("POST", routes.upload_start(repo, digest=d), data,
                       {"Content-Type": "application/octet-stream"})
    assert r.status == 201
    assert r.header("Location") == routes.blob(repo, d)
    assert client.request("HEAD", routes.blob(repo, d)).status == 200


def test_streamed_patch_without_content_range(client: Client, repo: str) -> None:
    loc = _start(client, repo)
    data = b"streamed " * 1000
    r = client.request("PATCH", loc, data, {"Content-Type": "application/octet-stream"})
    assert r.status == 202
    assert r.header("Range") == f"0-{len(data) - 1}"
    d = digest_of(data)
    r = client.request("PUT", f"{r.header('Location')}?digest={d}")
    assert r.status == 201
    assert client.request("GET", routes.blob(repo, d)).body == data


def test_chunked_upload_in_order_then_out_of_order_is_416(client: Client, repo: str) -> None:
    loc = _start(client, repo)
    data = bytes(range(256)) * 100
    a, b, c = data[:10000], data[10000:20000], data[20000:]
    r = client.request("PATCH", loc, a, {"Content-Range": f"0-{len(a) - 1}", "Content-Type": "application/octet-stream"})
    assert r.status == 202 and r.header("Range") == "0-9999"
    loc = r.header("Location")
    # Same range again: out of order.
    r = client.request("PATCH", loc, a, {"Content-Range": f"0-{len(a) - 1}"})
    assert r.status == 416
    assert r.header("Range") == "0-9999"
    assert r.header("Location")
    # A gap is out of order too.
    r = client.request("PATCH", loc, c, {"Content-Range": f"20000-{len(data) - 1}"})
    assert r.status == 416
    # Status: 204 with the offset.
    r = client.request("GET", loc)
    assert r.status == 204
    assert r.header("Range") == "0-9999"
    assert r.header("Location")
    r = client.request("PATCH", loc, b, {"Content-Range": "10000-19999"})
    assert r.status == 202 and r.header("Range") == "0-19999"
    # The last chunk travels with the PUT.
    d = digest_of(data)
    r = client.request("PUT", f"{r.header('Location')}?digest={d}", c, {"Content-Range": f"20000-{len(data) - 1}"})
    assert r.status == 201
    assert client.request("GET", routes.blob(repo, d)).body == data


def test_invalid_content_range_is_416(client: Client, repo: str) -> None:
    loc = _start(client, repo)
    for bad in ("bogus", "0-x", "5-1"):
        r = client.request("PATCH", loc, b"abcdef", {"Content-Range": bad})
        assert r.status == 416, bad
    # Range length must agree with the body.
    r = client.request("PATCH", loc, b"abcdef", {"Content-Range": "0-9"})
    assert r.status == 416


def test_upload_status_and_cancel(client: Client, repo: str) -> None:
    loc = _start(client, repo)
    r = client.request("GET", loc)
    assert r.status == 204 and r.header("Range") == "0-0"
    r = client.request("DELETE", loc)
    assert r.status == 204
    r = client.request("GET", loc)
    assert r.status == 404
    assert r.error_codes() == ["BLOB_UPLOAD_UNKNOWN"]


def test_unknown_upload_is_404(client: Client, repo: str) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        path = routes.upload(repo, "00000000-0000-0000-0000-000000000000", digest=digest_of(b""))
        r = client.request(method, path, b"" if method in ("PATCH", "PUT") else None)
        assert r.status == 404, method
        assert r.error_codes() == ["BLOB_UPLOAD_UNKNOWN"]
    r = client.request("GET", routes.upload(repo, "not-a-uuid!"))
    assert r.status == 404


def test_put_with_wrong_digest_is_digest_invalid(client: Client, repo: str) -> None:
    loc = _start(client, repo)
    r = client.request("PUT", f"{loc}?digest={digest_of(b'other')}", b"content")
    assert r.status == 400
    assert r.error_codes() == ["DIGEST_INVALID"]
    assert client.request("HEAD", routes.blob(repo, digest_of(b"content"))).status == 404
    assert client.request("HEAD", routes.blob(repo, digest_of(b"other"))).status == 404


def test_put_without_digest_is_digest_invalid(client: Client, repo: str) -> None:
    loc = _start(client, repo)
    r = client.request("PUT", loc, b"content")
    assert r.status == 400
    assert r.error_codes() == ["DIGEST_INVALID"]


def test_cross_repository_mount(client: Client, repo: str) -> None:
    d = client.push_blob(repo, b"shared layer")
    other = repo + "-mount"
    r = client.request("POST", routes.upload_start(other, mount=d, from_repo=repo))
    assert r.status == 201
    assert r.header("Location") == routes.blob(other, d)
    assert r.header("Docker-Content-Digest") == d
    assert client.request("GET", routes.blob(other, d)).body == b"shared layer"


def test_mount_without_from(client: Client, repo: str) -> None:
    d = client.push_blob(repo, b"discoverable layer")
    other = repo + "-auto"
    r = client.request("POST", routes.upload_start(other, mount=d))
    assert r.status == 201
    assert client.request("HEAD", routes.blob(other, d)).status == 200


def test_failed_mount_falls_back_to_upload(client: Client, repo: str) -> None:
    r = client.request("POST", routes.upload_start(repo, mount=digest_of(b"absent"), from_repo="nowhere/repo"))
    assert r.status == 202
    assert r.header("Location")
    r = client.request("POST", routes.upload_start(repo, mount="sha256:bad", from_repo="nowhere"))
    assert r.status == 202


def test_manifest_put_returns_location_and_digest(client: Client, repo: str) -> None:
    doc, d, raw = image(client, repo, None)
    r = client.push_manifest(repo, "tagged", raw)
    assert r.status == 201
    assert r.header("Location") == routes.manifest(repo, d)
    assert r.header("Docker-Content-Digest") == d


def test_manifest_put_by_digest(client: Client, repo: str) -> None:
    _, d, raw = image(client, repo, None)
    assert client.request("GET", routes.manifest(repo, d)).body == raw
    # A digest that does not match the body is refused.
    r = client.push_manifest(repo, digest_of(b"something else"), raw)
    assert r.status == 400
    assert r.error_codes() == ["DIGEST_INVALID"]


def test_manifest_with_no_layers(client: Client, repo: str) -> None:
    config = b"{}"
    cd = client.push_blob(repo, config)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd, "size": 2},
           "layers": []}
    assert client.push_manifest(repo, "empty", doc).status == 201


def test_manifest_with_unknown_blob_is_manifest_blob_unknown(client: Client, repo: str) -> None:
    config = b"{}"
    cd = client.push_blob(repo, config)
    missing = digest_of(b"missing layer")
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing, "size": 13}]}
    r = client.push_manifest(repo, "broken", doc)
    assert r.status == 400
    assert r.error_codes() == ["MANIFEST_BLOB_UNKNOWN"]
    assert client.request("GET", routes.manifest(repo, "broken")).status == 404


def test_manifest_referencing_blob_of_another_repo_is_refused(client: Client, repo: str) -> None:
    doc, _, raw = image(client, repo, "v1")
    r = client.push_manifest(repo + "-elsewhere", "v1", raw)
    assert r.status == 400
    assert r.error_codes() == ["MANIFEST_BLOB_UNKNOWN"]


def test_index_with_unknown_child_is_refused(client: Client, repo: str) -> None:
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest_of(b"no such manifest"), "size": 16}]}
    r = client.push_manifest(repo, "idx", index, "application/vnd.oci.image.index.v1+json")
    assert r.status == 400
    assert r.error_codes() == ["MANIFEST_BLOB_UNKNOWN"]


def test_manifest_with_subject_returns_oci_subject(client: Client, repo: str) -> None:
    _, subject_digest, subject_raw = image(client, repo, "base")
    subject = {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject_raw)}
    _, d, _ = image(client, repo, None, seed="sig", artifact_type="application/vnd.example.sig", subject=subject)
    # Push it again to read the response headers of a PUT with subject.
    raw = client.request("GET", routes.manifest(repo, d)).body
    r = client.push_manifest(repo, d, raw)
    assert r.status == 201
    assert r.header("OCI-Subject") == subject_digest


def test_subject_may_be_absent_from_registry(client: Client, repo: str) -> None:
    subject = {"mediaType": OCI_MANIFEST, "digest": digest_of(b"not here yet"), "size": 12}
    _, d, _ = image(client, repo, None, seed="early", artifact_type="application/vnd.example.sbom", subject=subject)
    r = client.request("GET", routes.referrers(repo, subject["digest"]))
    assert [m["digest"] for m in r.json()["manifests"]] == [d]


def test_artifact_manifest_with_empty_config(client: Client, repo: str) -> None:
    empty = b"{}"
    ed = client.push_blob(repo, empty)
    blob = client.push_blob(repo, b"artifact payload")
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.thing",
           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": ed, "size": 2},
           "layers": [{"mediaType": "application/octet-stream", "digest": blob, "size": 16}]}
    assert client.push_manifest(repo, "artifact", doc).status == 201
    body = client.request("GET", routes.manifest(repo, "artifact")).json()
    assert body["artifactType"] == "application/vnd.example.thing"


def test_retagging_moves_the_tag(client: Client, repo: str) -> None:
    _, d1, _ = image(client, repo, "t", seed="one")
    _, d2, _ = image(client, repo, "t", seed="two")
    r = client.request("HEAD", routes.manifest(repo, "t"))
    assert r.header("Docker-Content-Digest") == d2
    # The old revision stays reachable by digest.
    assert client.request("HEAD", routes.manifest(repo, d1)).status == 200
    assert json.loads(client.request("GET", routes.tags(repo)).body)["tags"] == ["t"]


def test_push_by_digest_with_tag_parameters(client: Client, repo: str) -> None:
    _, d, raw = image(client, repo, None)
    r = client.request("PUT", routes.manifest(repo, d) + "?tag=a1&tag=b2", raw, {"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    assert r.headers.get_all("OCI-Tag") == ["a1", "b2"]
    assert client.request("GET", routes.tags(repo)).json()["tags"] == ["a1", "b2"]
    r = client.request("PUT", routes.manifest(repo, d) + "?tag=.bad", raw, {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.error_codes() == ["MANIFEST_INVALID"]
