"""The registry's domain layer over a driver: repositories, linked blobs, uploads, manifests,
tags and referrers, in the Distribution-compatible layout of ``storage.paths``.

Repositories see only the blobs linked into them, as in Distribution. A blob becomes visible
under its digest only after the bytes were hashed while streaming and matched the digest.
All state lives in the driver, so several processes can serve one store; the only
process-local state is a cache of upload hash states (an optimisation: a process that did
not see the earlier chunks re-hashes the upload from the store) and of immutable manifests.
"""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import AsyncIterator

from storage import mediatypes as mt
from storage import paths
from storage.digest import Digest, Hasher
from storage.drivers.base import StorageDriver
from storage.errors import (
    BlobUnknown, BlobUploadUnknown, DigestInvalid, DriverError, InvalidPath, ManifestBlobUnknown,
    ManifestInvalid, ManifestUnknown, NameUnknown, PathNotFound, SizeInvalid,
)
from storage.manifest import Descriptor, Manifest, parse_manifest
from storage.reference import validate_name, validate_tag

_UPLOAD_ID_CHARS = set("0123456789abcdef-")


@dataclass(frozen=True)
class Upload:
    name: str
    id: str
    size: int


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    media_type: str
    raw: bytes


class _LRU:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: OrderedDict[object, object] = OrderedDict()

    def get(self, key: object) -> object | None:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: object, value: object) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.limit:
            self.items.popitem(last=False)

    def pop(self, key: object) -> object | None:
        return self.items.pop(key, None)


class RegistryStore:
    def __init__(self, driver: StorageDriver, max_manifest_bytes: int = 4 << 20,
                 automatic_crossmount: bool = True) -> None:
        self.driver = driver
        self.automatic_crossmount = automatic_crossmount
        self.max_manifest_bytes = max_manifest_bytes
        # upload id -> Hasher over exactly the bytes in that upload's data file.
        self._hashers = _LRU(256)
        # manifest digest -> media type (manifests are immutable under their digest).
        self._media_types = _LRU(4096)

    # -- links --------------------------------------------------------------------------------
    async def _read_link(self, path: str) -> Digest | None:
        try:
            text = (await self.driver.get_content(path)).decode("ascii", "replace").strip()
        except PathNotFound:
            return None
        try:
            return Digest.parse(text)
        except DigestInvalid:
            return None

    async def _write_link(self, path: str, d: Digest) -> None:
        await self.driver.put_content(path, str(d).encode())

    async def _exists(self, path: str) -> bool:
        try:
            await self.driver.stat(path)
        except PathNotFound:
            return False
        return True

    # -- blobs --------------------------------------------------------------------------------
    async def blob_size(self, d: Digest) -> int:
        """Size of a blob in the global store; BlobUnknown if absent."""
        try:
            info = await self.driver.stat(paths.blob_data(d))
        except PathNotFound:
            raise BlobUnknown(str(d)) from None
        return info.size

    async def stat_blob(self, name: str, d: Digest) -> int:
        """Size of a blob linked into ``name``; BlobUnknown if it is not."""
        if await self._read_link(paths.layer_link(name, d)) != d:
            # Distribution also answers blob requests for manifests of the repository.
            if await self._read_link(paths.revision_link(name, d)) != d:
                raise BlobUnknown(str(d))
        return await self.blob_size(d)

    def blob_reader(self, d: Digest, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.driver.reader(paths.blob_data(d), offset, length)

    def blob_local_path(self, d: Digest) -> str | None:
        return self.driver.local_path(paths.blob_data(d))

    async def blob_redirect(self, d: Digest) -> str | None:
        return await self.driver.redirect_url(paths.blob_data(d))

    async def read_blob(self, d: Digest) -> bytes:
        try:
            return await self.driver.get_content(paths.blob_data(d))
        except PathNotFound:
            raise BlobUnknown(str(d)) from None

    async def link_blob(self, name: str, d: Digest) -> None:
        await self._write_link(paths.layer_link(name, d), d)

    async def delete_blob(self, name: str, d: Digest) -> None:
        """Unlink a blob from a repository (the bytes stay for other repositories; GC removes them)."""
        path = paths.layer_link(name, d)
        if await self._read_link(path) != d:
            raise BlobUnknown(str(d))
        await self.driver.delete(path.rsplit("/", 1)[0])

    async def mount_blob(self, name: str, d: Digest, from_name: str | None) -> bool:
        """Link ``d`` into ``name`` if ``from_name`` has it (or, without from, if the store has it
        and automatic cross-mounting is on)."""
        if from_name is None and not self.automatic_crossmount:
            return False
        if from_name is not None:
            try:
                validate_name(from_name)
            except Exception:
                return False
            if await self._read_link(paths.layer_link(from_name, d)) != d:
                return False
        try:
            await self.blob_size(d)
        except BlobUnknown:
            return False
        await self.link_blob(name, d)
        return True

    # -- uploads ------------------------------------------------------------------------------
    def _check_upload_id(self, upload_id: str) -> None:
        if not upload_id or len(upload_id) > 64 or not set(upload_id) <= _UPLOAD_ID_CHARS:
            raise BlobUploadUnknown(upload_id)

    async def start_upload(self, name: str) -> Upload:
        upload_id = str(uuid.uuid4())
        now = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        await self.driver.put_content(paths.upload_started_at(name, upload_id), now.encode())
        await self.driver.put_content(paths.upload_data(name, upload_id), b"")
        self._hashers.put(upload_id, Hasher())
        return Upload(name, upload_id, 0)

    async def get_upload(self, name: str, upload_id: str) -> Upload:
        self._check_upload_id(upload_id)
        try:
            info = await self.driver.stat(paths.upload_data(name, upload_id))
        except (PathNotFound, InvalidPath):
            raise BlobUploadUnknown(upload_id) from None
        return Upload(name, upload_id, info.size)

    async def _hasher_for(self, upload: Upload) -> Hasher:
        cached = self._hashers.get(upload.id)
        if isinstance(cached, Hasher) and cached.size == upload.size:
            return cached
        # Another process took the earlier chunks (or this one restarted): hash what is stored.
        h = Hasher()
        async for chunk in self.driver.reader(paths.upload_data(upload.name, upload.id)):
            await _update(h, chunk)
        self._hashers.put(upload.id, h)
        return h

    async def append_upload(self, upload: Upload, body: AsyncIterator[bytes],
                            expected_length: int | None = None) -> Upload:
        """Append a request body to an upload, hashing as it streams. A short or broken body
        is rolled back: the upload keeps exactly the bytes it had before."""
        h = (await self._hasher_for(upload)).copy()
        writer = await self.driver.writer(paths.upload_data(upload.name, upload.id), append=True)
        received = 0
        try:
            async for chunk in body:
                received += len(chunk)
                if expected_length is not None and received > expected_length:
                    raise SizeInvalid("body longer than Content-Length")
                await _update(h, chunk)
                await writer.write(chunk)
            if expected_length is not None and received != expected_length:
                raise SizeInvalid(f"body has {received} bytes, Content-Length said {expected_length}")
            await writer.commit()
        except BaseException:
            await writer.cancel()
            raise
        self._hashers.put(upload.id, h)
        return Upload(upload.name, upload.id, upload.size + received)

    async def finish_upload(self, upload: Upload, expected: Digest) -> Digest:
        """Verify the upload against ``expected`` and move it into the blob store, linked into
        the repository. On mismatch the upload is discarded (DigestInvalid)."""
        h = await self._hasher_for(upload)
        if expected.algorithm != "sha256":
            # Hashed as sha256 while streaming; verify other algorithms with one more pass.
            h = Hasher(expected.algorithm)
            async for chunk in self.driver.reader(paths.upload_data(upload.name, upload.id)):
                await _update(h, chunk)
        got = h.digest()
        if got != expected:
            await self.cancel_upload(upload.name, upload.id)
            raise DigestInvalid(f"upload hashes to {got}, not {expected}")
        if not await self._exists(paths.blob_data(expected)):
            await self.driver.move(paths.upload_data(upload.name, upload.id), paths.blob_data(expected))
        await self.link_blob(upload.name, expected)
        await self._drop_upload(upload.name, upload.id)
        return expected

    async def _drop_upload(self, name: str, upload_id: str) -> None:
        self._hashers.pop(upload_id)
        try:
            await self.driver.delete(paths.upload_dir(name, upload_id))
        except PathNotFound:
            pass

    async def cancel_upload(self, name: str, upload_id: str) -> None:
        await self.get_upload(name, upload_id)
        await self._drop_upload(name, upload_id)

    async def purge_uploads(self, older_than: float) -> int:
        """Remove uploads started more than ``older_than`` seconds ago; returns how many."""
        removed = 0
        async for name in self.repositories():
            try:
                ids = await self.driver.list(paths.uploads_root(name))
            except PathNotFound:
                continue
            for path in ids:
                try:
                    info = await self.driver.stat(path)
                except PathNotFound:
                    continue
                if info.modified and time.time() - info.modified > older_than:
                    await self.driver.delete(path)
                    removed += 1
        return removed

    # -- manifests ----------------------------------------------------------------------------
    async def resolve(self, name: str, reference: str) -> Digest:
        """A tag or digest to the digest of a manifest in ``name``; ManifestUnknown if none."""
        if ":" in reference:
            d = Digest.parse(reference)
            if await self._read_link(paths.revision_link(name, d)) != d:
                raise ManifestUnknown(reference)
            return d
        validate_tag(reference)
        d = await self._read_link(paths.tag_current_link(name, reference))
        if d is None:
            raise ManifestUnknown(reference)
        return d

    async def get_manifest(self, name: str, reference: str) -> StoredManifest:
        d = await self.resolve(name, reference)
        try:
            raw = await self.driver.get_content(paths.blob_data(d))
        except PathNotFound:
            raise ManifestUnknown(reference) from None
        media_type = self._media_types.get(d)
        if not isinstance(media_type, str):
            try:
                media_type = parse_manifest(raw).media_type
            except ManifestInvalid:
                media_type = mt.OCI_MANIFEST
            self._media_types.put(d, media_type)
        return StoredManifest(d, media_type, raw)

    async def _check_references(self, name: str, m: Manifest) -> list[Digest]:
        missing: list[Digest] = []
        for desc in m.blob_references():
            if await self._read_link(paths.layer_link(name, desc.digest)) != desc.digest:
                missing.append(desc.digest)
        for desc in m.manifests:
            if await self._read_link(paths.revision_link(name, desc.digest)) != desc.digest:
                missing.append(desc.digest)
        return missing

    async def put_manifest(self, name: str, reference: str, raw: bytes, content_type: str | None,
                           extra_tags: tuple[str, ...] = ()) -> tuple[Digest, Manifest]:
        """Validate and store a manifest exactly as given; tag it when ``reference`` is a tag,
        and with every one of ``extra_tags`` (the ``?tag=`` of a push by digest)."""
        for tag in extra_tags:
            validate_tag(tag)
        if len(raw) > self.max_manifest_bytes:
            raise SizeInvalid(f"manifest is {len(raw)} bytes; the limit is {self.max_manifest_bytes}")
        digest_ref: Digest | None = None
        if ":" in reference:
            digest_ref = Digest.parse(reference)
        else:
            validate_tag(reference)
        m = parse_manifest(raw, content_type)
        d = Digest.of(raw, digest_ref.algorithm if digest_ref else "sha256")
        if digest_ref is not None and d != digest_ref:
            raise DigestInvalid(f"manifest hashes to {d}, not {digest_ref}")
        missing = await self._check_references(name, m)
        if missing:
            raise ManifestBlobUnknown(", ".join(map(str, missing)))
        if not await self._exists(paths.blob_data(d)):
            await self.driver.put_content(paths.blob_data(d), raw)
        await self._write_link(paths.revision_link(name, d), d)
        self._media_types.put(d, m.media_type)
        if m.subject is not None:
            await self._write_link(paths.referrer_link(name, m.subject.digest, d), d)
        for tag in ([reference] if digest_ref is None else []) + list(extra_tags):
            await self._write_link(paths.tag_index_link(name, tag, d), d)
            await self._write_link(paths.tag_current_link(name, tag), d)
        return d, m

    async def delete_manifest(self, name: str, d: Digest) -> None:
        """Delete a manifest revision, every tag pointing at it, and its referrer entry."""
        link = paths.revision_link(name, d)
        if await self._read_link(link) != d:
            raise ManifestUnknown(str(d))
        for tag in await self.tags(name):
            if await self._read_link(paths.tag_current_link(name, tag)) == d:
                await self.driver.delete(paths.tag_dir(name, tag))
        try:
            m = parse_manifest(await self.driver.get_content(paths.blob_data(d)))
        except (PathNotFound, ManifestInvalid):
            m = None
        if m is not None and m.subject is not None:
            try:
                await self.driver.delete(paths.referrer_link(name, m.subject.digest, d).rsplit("/", 1)[0])
            except PathNotFound:
                pass
        await self.driver.delete(link.rsplit("/", 1)[0])

    async def delete_tag(self, name: str, tag: str) -> None:
        validate_tag(tag)
        if await self._read_link(paths.tag_current_link(name, tag)) is None:
            raise ManifestUnknown(tag)
        await self.driver.delete(paths.tag_dir(name, tag))

    # -- listing ------------------------------------------------------------------------------
    async def tags(self, name: str) -> list[str]:
        """Tags of ``name``, sorted; NameUnknown if the repository does not exist."""
        try:
            entries = await self.driver.list(paths.tags_root(name))
        except PathNotFound:
            if await self._exists(paths.repository(name)):
                return []
            raise NameUnknown(name) from None
        out = []
        for path in entries:
            tag = path.rsplit("/", 1)[1]
            if await self._exists(paths.tag_current_link(name, tag)):
                out.append(tag)
        return sorted(out)

    async def repository_exists(self, name: str) -> bool:
        return await self._exists(paths.repository(name))

    async def repositories(self) -> AsyncIterator[str]:
        """Every repository with manifests, in lexical order (as Distribution's catalog walk)."""
        root = paths.repositories_root()
        prefix = len(root) + 1

        async def walk(path: str) -> AsyncIterator[str]:
            try:
                children = await self.driver.list(path)
            except (PathNotFound, DriverError):
                return
            found: list[str] = []
            for child in children:
                base = child.rsplit("/", 1)[1]
                if base == "_manifests":
                    found.append(path[prefix:])
                elif not base.startswith("_"):
                    info = await self.driver.stat(child)
                    if info.is_dir:
                        found.append(child)
            for item in found:
                if item.startswith("/"):
                    async for sub in walk(item):
                        yield sub
                else:
                    yield item

        names = [n async for n in walk(root)]
        for n in sorted(names):
            yield n

    async def referrers(self, name: str, subject: Digest) -> list[Descriptor]:
        """Descriptors of the manifests in ``name`` whose subject is ``subject``."""
        try:
            algos = await self.driver.list(paths.referrers_dir(name, subject))
        except PathNotFound:
            return []
        out: list[Descriptor] = []
        for algo_dir in algos:
            for entry in await self.driver.list(algo_dir):
                d = await self._read_link(entry + "/link")
                if d is None or await self._read_link(paths.revision_link(name, d)) != d:
                    continue
                try:
                    raw = await self.driver.get_content(paths.blob_data(d))
                    m = parse_manifest(raw)
                except (PathNotFound, ManifestInvalid):
                    continue
                out.append(Descriptor(m.media_type, d, len(raw), dict(m.annotations),
                                      artifact_type=m.effective_artifact_type()))
        return out

    async def repositories_linking(self, d: Digest) -> AsyncIterator[str]:
        """Every repository that has blob ``d`` linked into its layers (repositories holding only
        blobs included), depth first; nothing when the store lacks ``d``.
        For choosing the origin of an automatic cross-repository mount the caller may read.
        Raises DriverError on a storage failure (never a partial answer read as "nowhere")."""
        if not await self._exists(paths.blob_data(d)):
            return
        root = paths.repositories_root()
        pending = [root]
        while pending:
            path = pending.pop()
            try:
                children = sorted(await self.driver.list(path), reverse=True)
            except PathNotFound:
                continue
            subdirs: list[str] = []
            for child in children:
                base = child.rsplit("/", 1)[1]
                if base == "_layers":
                    name = path[len(root) + 1:]
                    if await self._read_link(paths.layer_link(name, d)) == d:
                        yield name
                elif not base.startswith("_"):
                    try:
                        if (await self.driver.stat(child)).is_dir:
                            subdirs.append(child)
                    except PathNotFound:
                        continue
            pending.extend(subdirs)


async def _update(h: Hasher, chunk: bytes) -> None:
    # Big chunks are hashed off the loop; small ones are cheaper inline than a thread hop.
    if len(chunk) >= 1 << 20:
        await asyncio.to_thread(h.update, chunk)
    else:
        h.update(chunk)
