"""Storage errors, in two tiers. Backend exceptions (OSError, botocore) never leak past a driver.

::

    StorageError
    ├── TreeError                   a directory tree that cannot be walked as asked (storage/tree.py)
    │   ├── TreeEscape              a path that goes through a symlink
    │   └── TreeConflict            a non-directory where a directory must be; a tree moved meanwhile
    ├── DriverError                 a driver could not do what was asked (tier 1: paths and bytes)
    │   ├── PathNotFound            no object at that path
    │   ├── InvalidPath             a path outside the driver's grammar
    │   └── InvalidOffset           a read or resumed write at an impossible offset
    └── DomainError                 tier 2: digests, repositories, manifests (registry/server/errors.py
        │                           maps each class to a wire code, reading the fields named here)
        ├── DigestInvalid           malformed digest, or content that does not match its digest
        ├── SizeInvalid             content whose length does not match what was declared
        ├── BlobUnknown(digest)     no such blob (in this repository)
        ├── BlobUploadUnknown(upload_id)    no such upload session
        ├── UploadOffsetMismatch(expected, size)    a write at an offset that is no longer the upload's end
        ├── NameInvalid             a repository name outside the grammar
        ├── NameUnknown(name)       no such repository
        ├── TagInvalid              a tag outside the grammar
        ├── ManifestUnknown(reference)      no such manifest or tag
        ├── ManifestInvalid         unparseable or invalid manifest
        ├── ManifestBlobUnknown(digests)    a manifest that references content the repository lacks
        ├── ImageUnknown            a reference that names no image in a local image layout
        ├── ImageAmbiguous          a short image id that is a prefix of more than one image's
        └── ArchiveInvalid          a tar that is not a readable docker or OCI image archive

The errors without fields carry their reason as the message. Those with fields take the field
first and an optional message; without one, the message is the field's text (as it always was).
"""

from __future__ import annotations

from collections.abc import Sequence


class StorageError(Exception):
    """Base of every error raised by ``storage``."""


class TreeError(StorageError):
    pass


class TreeEscape(TreeError):
    pass


class TreeConflict(TreeError):
    pass


class DriverError(StorageError):
    pass


class PathNotFound(DriverError):
    def __init__(self, path: str) -> None:
        super().__init__(f"path not found: {path}")
        self.path = path


class InvalidPath(DriverError):
    def __init__(self, path: str) -> None:
        super().__init__(f"invalid path: {path!r}")
        self.path = path


class InvalidOffset(DriverError):
    def __init__(self, path: str, offset: int) -> None:
        super().__init__(f"invalid offset {offset} for {path}")
        self.path, self.offset = path, offset


class DomainError(StorageError):
    pass


class DigestInvalid(DomainError):
    pass


class SizeInvalid(DomainError):
    pass


class BlobUnknown(DomainError):
    def __init__(self, digest: str, message: str | None = None) -> None:
        super().__init__(message or digest)
        self.digest = digest


class BlobUploadUnknown(DomainError):
    def __init__(self, upload_id: str, message: str | None = None) -> None:
        super().__init__(message or upload_id)
        self.upload_id = upload_id


class UploadOffsetMismatch(DomainError):
    """Another writer moved the upload on (a duplicate PATCH): ``size`` is where it is now."""

    def __init__(self, expected: int, size: int) -> None:
        super().__init__(f"the upload is at offset {size}, not {expected}")
        self.expected, self.size = expected, size


class NameInvalid(DomainError):
    pass


class NameUnknown(DomainError):
    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or name)
        self.name = name


class TagInvalid(DomainError):
    pass


class ManifestUnknown(DomainError):
    """``reference`` is the tag or digest asked for."""

    def __init__(self, reference: str, message: str | None = None) -> None:
        super().__init__(message or reference)
        self.reference = reference


class ManifestInvalid(DomainError):
    pass


class ManifestBlobUnknown(DomainError):
    """``digests``: what the manifest references and the repository lacks, in manifest order."""

    def __init__(self, digests: Sequence[str], message: str | None = None) -> None:
        super().__init__(message or ", ".join(digests))
        self.digests = tuple(digests)


class ImageUnknown(DomainError):
    pass


class ImageAmbiguous(DomainError):
    """A short id that more than one local image's id begins with; ``candidates`` names them."""

    def __init__(self, text: str, candidates: list[str]) -> None:
        super().__init__(f"{text!r} matches more than one image: {', '.join(candidates)} (give more of the ID)")
        self.text, self.candidates = text, candidates


class ArchiveInvalid(DomainError):
    pass
