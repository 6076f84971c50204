"""Conformance — content management: deleting tags, manifests and blobs."""

from __future__ import annotations

from registry import routes
from tests.registry.http import Client, image


def test_delete_tag(client: Client, repo: str) -> None:
    _, d, _ = image(client, repo, "doomed")
    image(client, repo, "kept", seed="k")
    r = client.request("DELETE", routes.manifest(repo, "doomed"))
    assert r.status == 202
    assert client.request("GET", routes.manifest(repo, "doomed")).status == 404
    # The manifest itself stays, by digest.
    assert client.request("GET", routes.manifest(repo, d)).status == 200
    assert client.request("GET", routes.tags(repo)).json()["tags"] == ["kept"]
    r = client.request("DELETE", routes.manifest(repo, "doomed"))
    assert r.status == 404
    assert r.error_codes() == ["MANIFEST_UNKNOWN"]


def test_delete_manifest_by_digest(client: Client, repo: str) -> None:
    _, d, _ = image(client, repo, "t1")
    r = client.request("DELETE", routes.manifest(repo, d))
    assert r.status == 202
    assert client.request("GET", routes.manifest(repo, d)).status == 404
    # Tags that pointed at it are gone too.
    assert client.request("GET", routes.manifest(repo, "t1")).status == 404
    r = client.request("DELETE", routes.manifest(repo, d))
    assert r.status == 404
    assert r.error_codes() == ["MANIFEST_UNKNOWN"]


def test_delete_blobs(client: Client, repo: str) -> None:
    doc, _, _ = image(client, repo, "t", layers=2)
    for desc in [doc["config"], *doc["layers"]]:
        r = client.request("DELETE", routes.blob(repo, desc["digest"]))
        assert r.status == 202
        assert client.request("GET", routes.blob(repo, desc["digest"])).status == 404
    r = client.request("DELETE", routes.blob(repo, doc["config"]["digest"]))
    assert r.status == 404
    assert r.error_codes() == ["BLOB_UNKNOWN"]


def test_deleting_blob_in_one_repo_keeps_it_in_another(client: Client, repo: str) -> None:
    d = client.push_blob(repo, b"shared")
    other = repo + "-b"
    assert client.request("POST", routes.upload_start(other, mount=d, from_repo=repo)).status == 201
    assert client.request("DELETE", routes.blob(repo, d)).status == 202
    assert client.request("GET", routes.blob(other, d)).body == b"shared"
