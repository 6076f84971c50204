"""Wire errors: the distribution spec's JSON error codes, and the translation from domain errors.

::

    RegistryError(code, status)          raised by handlers, rendered as {"errors": [...]}
    ├── by code: BLOB_UNKNOWN 404, BLOB_UPLOAD_INVALID 400, BLOB_UPLOAD_UNKNOWN 404,
    │   DIGEST_INVALID 400, MANIFEST_BLOB_UNKNOWN 400, MANIFEST_INVALID 400,
    │   MANIFEST_UNKNOWN 404, NAME_INVALID 400, NAME_UNKNOWN 404, SIZE_INVALID 400,
    │   UNAUTHORIZED 401, DENIED 403, UNSUPPORTED 405, TOOMANYREQUESTS 429
    └── status overrides where the spec asks for one: 416 (bad chunk range), 413 (manifest too big)

Domain errors (storage.errors) become wire errors only here, at the HTTP boundary.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from storage import errors as se

# code -> (default HTTP status, default message)
CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "UNKNOWN": (500, "unknown error"),
}


class RegistryError(Exception):
    def __init__(self, code: str, message: str | None = None, detail: Any = None,
                 status: int | None = None, headers: dict[str, str] | None = None) -> None:
        default_status, default_message = CODES[code]
        super().__init__(message or default_message)
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.status = status or default_status
        self.headers = headers or {}

    def response(self) -> web.Response:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return web.Response(status=self.status, body=json.dumps({"errors": [err]}).encode(),
                            content_type="application/json", headers=self.headers)


def from_domain(exc: se.DomainError, context: str = "") -> RegistryError:
    """Translate a domain error; ``context`` ("manifest", "blob") picks codes where they differ."""
    msg = str(exc) or None
    match exc:
        case se.DigestInvalid():
            return RegistryError("DIGEST_INVALID", msg)
        case se.SizeInvalid():
            return RegistryError("SIZE_INVALID", msg)
        case se.BlobUnknown():
            return RegistryError("BLOB_UNKNOWN", None, {"digest": msg})
        case se.BlobUploadUnknown():
            return RegistryError("BLOB_UPLOAD_UNKNOWN")
        case se.BlobUploadInvalid():
            return RegistryError("BLOB_UPLOAD_INVALID", msg)
        case se.NameInvalid():
            return RegistryError("NAME_INVALID", msg)
        case se.NameUnknown():
            return RegistryError("NAME_UNKNOWN", None, {"name": msg})
        case se.TagInvalid():
            if context == "manifest-put":
                return RegistryError("MANIFEST_INVALID", msg)
            return RegistryError("MANIFEST_UNKNOWN", msg)
        case se.ManifestUnknown():
            return RegistryError("MANIFEST_UNKNOWN", None, {"reference": msg} if msg else None)
        case se.ManifestInvalid():
            return RegistryError("MANIFEST_INVALID", msg)
        case se.ManifestBlobUnknown():
            return RegistryError("MANIFEST_BLOB_UNKNOWN", None, {"digest": msg})
        case se.Unsupported():
            return RegistryError("UNSUPPORTED", msg)
    return RegistryError("UNKNOWN", msg)
