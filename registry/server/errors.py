"""Wire errors: the distribution spec's JSON error codes, and the translation from domain errors.

::

    Code                                 one member per wire code: its default HTTP status and message
    RegistryError(code, message, detail, status, headers)
                                         raised by handlers, rendered as {"errors": [{code, message, detail}]}
    DOMAIN_CODES                         storage.errors class -> Translation(code, detail from its fields, status)
    from_domain(exc, context)            a domain error as a RegistryError

Status overrides where the spec asks for one: 416 (an upload chunk out of order), 413 (a manifest
over the size limit). Domain errors (storage.errors) become wire errors only here, at the HTTP boundary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, unique
from typing import Any

from aiohttp import web

from storage import errors as se


@unique
class Code(Enum):
    """The wire codes: ``name`` is the code on the wire; each has its default status and message."""

    BLOB_UNKNOWN = 404, "blob unknown to registry"
    BLOB_UPLOAD_INVALID = 400, "blob upload invalid"
    BLOB_UPLOAD_UNKNOWN = 404, "blob upload unknown to registry"
    DIGEST_INVALID = 400, "provided digest did not match uploaded content"
    MANIFEST_BLOB_UNKNOWN = 400, "manifest references a manifest or blob unknown to registry"
    MANIFEST_INVALID = 400, "manifest invalid"
    MANIFEST_UNKNOWN = 404, "manifest unknown to registry"
    NAME_INVALID = 400, "invalid repository name"
    NAME_UNKNOWN = 404, "repository name not known to registry"
    SIZE_INVALID = 400, "provided length did not match content length"
    UNAUTHORIZED = 401, "authentication required"
    DENIED = 403, "requested access to the resource is denied"
    UNSUPPORTED = 405, "the operation is unsupported"
    TOOMANYREQUESTS = 429, "too many requests"
    PAGINATION_NUMBER_INVALID = 400, "invalid number of results requested"
    UNKNOWN = 500, "unknown error"

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class RegistryError(Exception):
    def __init__(self, code: Code, message: str | None = None, detail: Any = None,
                 status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or code.message)
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.status = status or code.status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return {"errors": [err]}

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=json.dumps(self.body()).encode(),
                            content_type="application/json", headers=self.headers)


@dataclass(frozen=True)
class Translation:
    """How one domain error class goes on the wire: its code, the detail read from the error's
    fields, a status other than the code's, and whether the error's text is the message (errors
    that carry a reason) or the code's default is (errors that carry a digest, name or reference)."""

    code: Code
    detail: Callable[[Any], Any] | None = None
    status: int | None = None
    own_message: bool = True


# Every storage.errors.DomainError class, by exact class (tests/registry/test_wire_errors.py
# fails for a class missing here).
DOMAIN_CODES: dict[type[se.DomainError], Translation] = {
    se.DigestInvalid: Translation(Code.DIGEST_INVALID),
    se.SizeInvalid: Translation(Code.SIZE_INVALID),
    se.BlobUnknown: Translation(Code.BLOB_UNKNOWN, lambda e: {"digest": e.digest}, own_message=False),
    se.BlobUploadUnknown: Translation(Code.BLOB_UPLOAD_UNKNOWN, own_message=False),
    se.UploadOffsetMismatch: Translation(Code.BLOB_UPLOAD_INVALID, status=416),
    se.NameInvalid: Translation(Code.NAME_INVALID),
    se.NameUnknown: Translation(Code.NAME_UNKNOWN, lambda e: {"name": e.name}, own_message=False),
    se.TagInvalid: Translation(Code.MANIFEST_UNKNOWN),
    se.ManifestUnknown: Translation(Code.MANIFEST_UNKNOWN,
                                    lambda e: {"reference": e.reference} if e.reference else None, own_message=False),
    se.ManifestInvalid: Translation(Code.MANIFEST_INVALID),
    se.ManifestBlobUnknown: Translation(Code.MANIFEST_BLOB_UNKNOWN, lambda e: {"digest": ", ".join(e.digests)},
                                        own_message=False),
    # The local image store's errors never reach the wire today; mapped so a future use cannot 500.
    se.ImageUnknown: Translation(Code.MANIFEST_UNKNOWN),
    se.ImageAmbiguous: Translation(Code.MANIFEST_UNKNOWN),
    se.ArchiveInvalid: Translation(Code.MANIFEST_INVALID),
}
# Where a request's context picks another code: an invalid tag in a manifest PUT is a bad
# manifest push, not a lookup that found nothing.
CONTEXT_CODES: dict[tuple[str, type[se.DomainError]], Translation] = {
    ("manifest-put", se.TagInvalid): Translation(Code.MANIFEST_INVALID),
}


def translation(exc: se.DomainError, context: str = "") -> Translation:
    for cls in type(exc).__mro__:
        if issubclass(cls, se.DomainError):
            found = CONTEXT_CODES.get((context, cls)) or DOMAIN_CODES.get(cls)
            if found is not None:
                return found
    return Translation(Code.UNKNOWN)


def from_domain(exc: se.DomainError, context: str = "") -> RegistryError:
    """Translate a domain error; ``context`` ("manifest-put") picks codes where they differ."""
    t = translation(exc, context)
    message = (str(exc) or None) if t.own_message else None
    return RegistryError(t.code, message, t.detail(exc) if t.detail else None, status=t.status)
