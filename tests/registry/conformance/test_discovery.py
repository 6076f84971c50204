"""Conformance — content discovery: tag lists with pagination, the referrers API, the catalog."""

from __future__ import annotations

from registry import routes
from tests.registry.http import Client, digest_of, image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _tag_all(client: Client, repo: str, tags: list[str]) -> None:
    _, d, raw = image(client, repo, tags[0])
    for t in tags[1:]:
        assert client.push_manifest(repo, t, raw).status == 201


def test_tags_list(client: Client, repo: str) -> None:
    _tag_all(client, repo, ["b", "a", "c", "latest", "1.0"])
    r = client.request("GET", routes.tags(repo))
    assert r.status == 200
    body = r.json()
    assert body["name"] == repo
    assert body["tags"] == sorted(["b", "a", "c", "latest", "1.0"])
    assert r.header("Link") is None


def test_tags_list_n(client: Client, repo: str) -> None:
    _tag_all(client, repo, ["t1", "t2", "t3", "t4", "t5"])
    r = client.request("GET", routes.tags(repo, n=2))
    assert r.status == 200
    assert r.json()["tags"] == ["t1", "t2"]
    assert r.header("Link") == f'<{routes.tags(repo, 2, "t2")}>; rel="next"'
    r = client.request("GET", routes.tags(repo, n=10))
    assert r.json()["tags"] == ["t1", "t2", "t3", "t4", "t5"]
    assert r.header("Link") is None


def test_tags_list_n_and_last_follow_link(client: Client, repo: str) -> None:
    _tag_all(client, repo, ["t1", "t2", "t3", "t4", "t5"])
    seen, path = [], routes.tags(repo, n=2)
    while path:
        r = client.request("GET", path)
        seen += r.json()["tags"]
        link = r.header("Link")
        path = link[1:link.index(">")] if link else None
    assert seen == ["t1", "t2", "t3", "t4", "t5"]
    r = client.request("GET", routes.tags(repo, n=1, last="t3"))
    assert r.json()["tags"] == ["t4"]
    r = client.request("GET", routes.tags(repo, last="t4"))
    assert r.json()["tags"] == ["t5"]


def test_tags_list_n_zero_is_empty(client: Client, repo: str) -> None:
    _tag_all(client, repo, ["a"])
    r = client.request("GET", routes.tags(repo, n=0))
    assert r.status == 200
    assert r.json()["tags"] == []


def test_tags_list_bad_n(client: Client, repo: str) -> None:
    _tag_all(client, repo, ["a"])
    r = client.request("GET", routes.tags(repo) + "?n=-1")
    assert r.status == 400
    r = client.request("GET", routes.tags(repo) + "?n=abc")
    assert r.status == 400


def test_tags_of_unknown_repository_is_name_unknown(client: Client) -> None:
    r = client.request("GET", routes.tags("never/pushed"))
    assert r.status == 404
    assert r.error_codes() == ["NAME_UNKNOWN"]


def _referrers_setup(client: Client, repo: str) -> tuple[str, str, str]:
    _, subject, raw = image(client, repo, "subject")
    desc = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(raw)}
    _, sig, _ = image(client, repo, None, seed="sig", artifact_type="application/vnd.example.signature", subject=desc)
    _, sbom, _ = image(client, repo, None, seed="sbom", subject=desc,
                       config_type="application/vnd.example.sbom.config")
    return subject, sig, sbom


def test_referrers(client: Client, repo: str) -> None:
    subject, sig, sbom = _referrers_setup(client, repo)
    r = client.request("GET", routes.referrers(repo, subject))
    assert r.status == 200
    assert r.header("Content-Type") == OCI_INDEX
    body = r.json()
    assert body["schemaVersion"] == 2 and body["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in body["manifests"]}
    assert set(by_digest) == {sig, sbom}
    assert by_digest[sig]["artifactType"] == "application/vnd.example.signature"
    # Without artifactType in the manifest, the config's media type stands in.
    assert by_digest[sbom]["artifactType"] == "application/vnd.example.sbom.config"
    assert all(m["mediaType"] == OCI_MANIFEST and m["size"] > 0 for m in body["manifests"])
    assert r.header("OCI-Filters-Applied") is None


def test_referrers_filtered_by_artifact_type(client: Client, repo: str) -> None:
    subject, sig, _ = _referrers_setup(client, repo)
    r = client.request("GET", routes.referrers(repo, subject, artifact_type="application/vnd.example.signature"))
    assert r.status == 200
    assert [m["digest"] for m in r.json()["manifests"]] == [sig]
    assert r.header("OCI-Filters-Applied") == "artifactType"


def test_referrers_of_unknown_subject_is_empty_index(client: Client, repo: str) -> None:
    image(client, repo, "x")
    r = client.request("GET", routes.referrers(repo, digest_of(b"nothing refers to me")))
    assert r.status == 200
    assert r.json()["manifests"] == []


def test_referrers_bad_digest(client: Client, repo: str) -> None:
    r = client.request("GET", routes.referrers(repo, "sha256:short"))
    assert r.status == 400
    assert r.error_codes() == ["DIGEST_INVALID"]


def test_referrer_deleted_disappears(client: Client, repo: str) -> None:
    subject, sig, sbom = _referrers_setup(client, repo)
    assert client.request("DELETE", routes.manifest(repo, sig)).status == 202
    r = client.request("GET", routes.referrers(repo, subject))
    assert [m["digest"] for m in r.json()["manifests"]] == [sbom]


def test_catalog_lists_repositories_with_pagination(client: Client, repo: str) -> None:
    names = [f"{repo}/c{i}" for i in range(3)]
    for n in names:
        image(client, n, "x")
    r = client.request("GET", routes.catalog())
    assert r.status == 200
    repos = r.json()["repositories"]
    assert all(n in repos for n in names)
    assert repos == sorted(repos)
    r = client.request("GET", routes.catalog(n=1, last=names[0]))
    assert r.json()["repositories"] == [names[1]]
    assert r.header("Link") == f'<{routes.catalog(1, names[1])}>; rel="next"'
