"""Small helpers every handler uses: the repository name, digests, and the store."""

from __future__ import annotations

from aiohttp import web

from registry.server.errors import Code, RegistryError
from registry.server.state import STORE
from storage.digest import Digest
from storage.errors import DigestInvalid, NameInvalid
from storage.reference import validate_name
from storage.registry import RegistryStore

API_VERSION_HEADER = "Docker-Distribution-API-Version"
API_VERSION = "registry/2.0"
DIGEST_HEADER = "Docker-Content-Digest"
UPLOAD_UUID_HEADER = "Docker-Upload-UUID"
SESSION_ID_HEADER = "Blob-Upload-Session-ID"
SUBJECT_HEADER = "OCI-Subject"
TAG_HEADER = "OCI-Tag"
FILTERS_HEADER = "OCI-Filters-Applied"


def store(request: web.Request) -> RegistryStore:
    return request.app[STORE]


def repo_name(request: web.Request) -> str:
    name = request.match_info["name"]
    try:
        return validate_name(name)
    except NameInvalid:
        raise RegistryError(Code.NAME_INVALID, f"invalid repository name {name[:300]!r}",
                            {"name": name[:300]}) from None


def parse_digest(text: str | None, what: str = "digest") -> Digest:
    if not text:
        raise RegistryError(Code.DIGEST_INVALID, f"{what} is required")
    try:
        return Digest.parse(text)
    except DigestInvalid as e:
        raise RegistryError(Code.DIGEST_INVALID, str(e), {"digest": text[:200]}) from None


def content_length(request: web.Request) -> int | None:
    value = request.headers.get("Content-Length")
    if value is None:
        return None
    if not value.isdigit():
        raise RegistryError(Code.SIZE_INVALID, f"invalid Content-Length {value[:40]!r}")
    return int(value)
