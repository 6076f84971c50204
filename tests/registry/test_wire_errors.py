"""Every domain error has one wire code, status and spec-shaped body; the server reads the errors'
fields (digest, reference, name), never their text. A new DomainError without a mapping fails here."""

from __future__ import annotations

import pytest

from registry import routes
from registry.server.errors import CONTEXT_CODES, DOMAIN_CODES, Code, RegistryError, from_domain
from storage import errors as se
from tests.registry.http import Client, digest_of

D1, D2 = "sha256:" + "a" * 64, "sha256:" + "b" * 64

# One instance of every DomainError class, and what it must be on the wire: code, status, detail.
EXPECTED: dict[type[se.DomainError], tuple[se.DomainError, str, int, object]] = {
    se.DigestInvalid: (se.DigestInvalid("invalid digest 'x'"), "DIGEST_INVALID", 400, None),
    se.SizeInvalid: (se.SizeInvalid("body has 3 bytes, Content-Length said 4"), "SIZE_INVALID", 400, None),
    se.BlobUnknown: (se.BlobUnknown(D1), "BLOB_UNKNOWN", 404, {"digest": D1}),
    se.BlobUploadUnknown: (se.BlobUploadUnknown("0f3c"), "BLOB_UPLOAD_UNKNOWN", 404, None),
    se.UploadOffsetMismatch: (se.UploadOffsetMismatch(0, 10), "BLOB_UPLOAD_INVALID", 416, None),
    se.NameInvalid: (se.NameInvalid("invalid repository name 'A'"), "NAME_INVALID", 400, None),
    se.NameUnknown: (se.NameUnknown("team/app"), "NAME_UNKNOWN", 404, {"name": "team/app"}),
    se.TagInvalid: (se.TagInvalid("invalid tag '-x'"), "MANIFEST_UNKNOWN", 404, None),
    se.ManifestUnknown: (se.ManifestUnknown("v1"), "MANIFEST_UNKNOWN", 404, {"reference": "v1"}),
    se.ManifestInvalid: (se.ManifestInvalid("layers is required"), "MANIFEST_INVALID", 400, None),
    se.ManifestBlobUnknown: (se.ManifestBlobUnknown([D1, D2]), "MANIFEST_BLOB_UNKNOWN", 400,
                             {"digest": f"{D1}, {D2}"}),
    se.ImageUnknown: (se.ImageUnknown("no image named x"), "MANIFEST_UNKNOWN", 404, None),
    se.ImageAmbiguous: (se.ImageAmbiguous("ab", ["abcdef", "abffff"]), "MANIFEST_UNKNOWN", 404, None),
    se.ArchiveInvalid: (se.ArchiveInvalid("not a tar"), "MANIFEST_INVALID", 400, None),
}

SPEC_CODES = {  # OCI distribution spec, "Error Codes"
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED",
    "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
}


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    subclasses: list[type] = cls.__subclasses__()
    for sub in subclasses:
        found |= {sub} | _all_subclasses(sub)
    return found


def test_every_domain_error_class_has_an_explicit_mapping() -> None:
    classes = {c for c in _all_subclasses(se.DomainError) if c.__module__ == se.__name__}
    assert classes == set(DOMAIN_CODES), "map each storage.errors.DomainError in registry/server/errors.py"
    assert classes == set(EXPECTED), "and give it a row in EXPECTED here"


CLASS_NAMES = sorted(c.__name__ for c in EXPECTED)


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_domain_error_on_the_wire(name: str) -> None:
    cls = getattr(se, name)
    exc, code, status, detail = EXPECTED[cls]
    assert type(exc) is cls
    err = from_domain(exc)
    assert (err.code.name, err.status, err.detail) == (code, status, detail)
    body = err.body()
    assert list(body) == ["errors"] and len(body["errors"]) == 1
    entry = body["errors"][0]
    assert set(entry) <= {"code", "message", "detail"} and entry["code"] == code
    assert isinstance(entry["message"], str) and entry["message"]
    # An error with fields gets the code's message and its fields as the detail; one without
    # (DigestInvalid, ManifestInvalid, ...) has its own reason as the message.
    fielded = not DOMAIN_CODES[cls].own_message
    assert entry["message"] == (Code[code].message if fielded else str(exc))
    assert entry.get("detail") == detail


def test_the_detail_is_read_from_fields_not_from_the_text() -> None:
    # A message that says something else does not leak into the detail.
    err = from_domain(se.BlobUnknown(D1, "blob is not in the image store"))
    assert err.detail == {"digest": D1}
    err = from_domain(se.ManifestUnknown("v2", "no such tag"))
    assert err.detail == {"reference": "v2"}


def test_context_picks_another_code_only_where_listed() -> None:
    assert from_domain(se.TagInvalid("invalid tag '-x'"), "manifest-put").code is Code.MANIFEST_INVALID
    for (context, cls), t in CONTEXT_CODES.items():
        assert from_domain(EXPECTED[cls][0], context).code is t.code
    assert from_domain(se.BlobUnknown(D1), "manifest-put").code is Code.BLOB_UNKNOWN


def test_codes_are_the_specs_plus_distributions_extras() -> None:
    names = {c.name for c in Code}
    assert SPEC_CODES <= names
    assert names - SPEC_CODES == {"UNKNOWN", "PAGINATION_NUMBER_INVALID"}
    assert all(100 <= c.status < 600 and c.message for c in Code)
    assert RegistryError(Code.SIZE_INVALID, status=413).status == 413


def test_fields_reach_the_wire_over_http(client: Client, repo: str) -> None:
    missing = digest_of(b"never pushed")
    r = client.request("GET", routes.blob(repo, missing))
    assert r.status == 404 and r.json() == {"errors": [{"code": "BLOB_UNKNOWN", "message": Code.BLOB_UNKNOWN.message,
                                                        "detail": {"digest": missing}}]}
    client.push_blob(repo, b"x")   # the repository exists from here on
    r = client.request("GET", routes.manifest(repo, "nope"))
    assert r.status == 404 and r.json()["errors"] == [
        {"code": "MANIFEST_UNKNOWN", "message": Code.MANIFEST_UNKNOWN.message, "detail": {"reference": "nope"}}]
    r = client.request("GET", routes.tags("never/pushed/here"))
    assert r.status == 404 and r.json()["errors"][0]["detail"] == {"name": "never/pushed/here"}
