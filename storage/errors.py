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
    └── DomainError                 tier 2: digests, repositories, manifests (mapped to wire codes above)
        ├── DigestInvalid           malformed digest, or content that does not match its digest
        ├── SizeInvalid             content whose length does not match what was declared
        ├── BlobUnknown             no such blob (in this repository)
        ├── BlobUploadUnknown       no such upload session
        ├── BlobUploadInvalid       an upload that cannot continue as asked (bad range, bad state)
        │   └── UploadOffsetMismatch    a write at an offset that is no longer the upload's end
        ├── NameInvalid             a repository name outside the grammar
        ├── NameUnknown             no such repository
        ├── TagInvalid              a tag outside the grammar
        ├── ManifestUnknown         no such manifest or tag
        ├── ManifestInvalid         unparseable or invalid manifest
        ├── ManifestBlobUnknown     a manifest that references content the repository lacks
        ├── Unsupported             a valid request the store will not do (e.g. delete disabled)
        ├── ImageUnknown            a reference that names no image in a local image layout
        ├── ImageAmbiguous          a short image id that is a prefix of more than one image's
        └── ArchiveInvalid          a tar that is not a readable docker or OCI image archive
"""

from __future__ import annotations


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
    pass


class BlobUploadUnknown(DomainError):
    pass


class BlobUploadInvalid(DomainError):
    pass


class UploadOffsetMismatch(BlobUploadInvalid):
    """Another writer moved the upload on (a duplicate PATCH): ``size`` is where it is now."""

    def __init__(self, expected: int, size: int) -> None:
        super().__init__(f"the upload is at offset {size}, not {expected}")
        self.expected, self.size = expected, size


class NameInvalid(DomainError):
    pass


class NameUnknown(DomainError):
    pass


class TagInvalid(DomainError):
    pass


class ManifestUnknown(DomainError):
    pass


class ManifestInvalid(DomainError):
    pass


class ManifestBlobUnknown(DomainError):
    pass


class Unsupported(DomainError):
    pass


class ImageUnknown(DomainError):
    pass


class ImageAmbiguous(DomainError):
    """A short id that more than one local image's id begins with; ``candidates`` names them."""

    def __init__(self, text: str, candidates: list[str]) -> None:
        super().__init__(f"{text!r} matches more than one image: {', '.join(candidates)} (give more of the ID)")
        self.text, self.candidates = text, candidates


class ArchiveInvalid(DomainError):
    pass
