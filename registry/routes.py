"""The V2 API's URLs, declared once: the server registers these patterns, and the client and
the tests build URLs with the functions below. Nothing else writes ``/v2/...`` by hand."""

from __future__ import annotations

from urllib.parse import quote, urlencode

# Route name -> (aiohttp path pattern). ``name`` may contain slashes; handlers validate it.
PATTERNS: dict[str, str] = {
    "base": "/v2/",
    "catalog": "/v2/_catalog",
    "tags": "/v2/{name:.+}/tags/list",
    "manifest": "/v2/{name:.+}/manifests/{reference}",
    "blob": "/v2/{name:.+}/blobs/{digest:[^/]+}",
    "upload_start": "/v2/{name:.+}/blobs/uploads/",
    "upload": "/v2/{name:.+}/blobs/uploads/{uuid}",
    "referrers": "/v2/{name:.+}/referrers/{digest}",
    "token": "/token",
    "metrics": "/metrics",
    "health": "/healthz",
}


def _q(params: dict[str, object]) -> str:
    clean = {k: v for k, v in params.items() if v is not None}
    return f"?{urlencode(clean)}" if clean else ""


def base() -> str:
    return "/v2/"


def catalog(n: int | None = None, last: str | None = None) -> str:
    return "/v2/_catalog" + _q({"n": n, "last": last})


def tags(name: str, n: int | None = None, last: str | None = None) -> str:
    return f"/v2/{name}/tags/list" + _q({"n": n, "last": last})


def manifest(name: str, reference: str) -> str:
    return f"/v2/{name}/manifests/{quote(reference, safe=':')}"


def blob(name: str, digest: str) -> str:
    return f"/v2/{name}/blobs/{digest}"


def upload_start(name: str, digest: str | None = None, mount: str | None = None,
                 from_repo: str | None = None) -> str:
    return f"/v2/{name}/blobs/uploads/" + _q({"digest": digest, "mount": mount, "from": from_repo})


def upload(name: str, uuid: str, digest: str | None = None) -> str:
    return f"/v2/{name}/blobs/uploads/{uuid}" + _q({"digest": digest})


def referrers(name: str, digest: str, artifact_type: str | None = None) -> str:
    return f"/v2/{name}/referrers/{digest}" + _q({"artifactType": artifact_type})


def token(service: str | None = None, scopes: list[str] | None = None) -> str:
    query = [("service", service)] if service else []
    query += [("scope", s) for s in scopes or []]
    return "/token" + (f"?{urlencode(query)}" if query else "")
