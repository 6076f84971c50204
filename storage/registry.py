"""The registry's domain layer over a driver: repositories, linked blobs, uploads, manifests,
tags and referrers, in the Distribution-compatible layout of ``storage.paths``.

Repositories see only the blobs linked into them, as in Distribution. A blob becomes visible
under its digest only after the bytes were hashed while streaming and matched the digest.
All state lives in the driver, so several processes can serve one store; the only
process-local state is a cache of upload hash states (an optimisation: a process that did
not see the earlier chunks re-hashes the upload from the store) and of immutable manifests.

Garbage collection runs while the store serves (``storage/gc.py``). Its half of the
protocol lives here: before it deletes a blob, gc writes ``_gc/deleting/<digest>`` and then
re-reads every repository's revisions and layer links. A writer that makes a blob reachable
does the mirror image: it first writes its link (a revision, a layer link), then looks for
that marker; while the marker is there it waits for gc to decide, and afterwards it checks
the blob's data itself. Whichever of the two writes comes first, the other side reads it, so
either gc sees the new reference and keeps the blob, or the writer sees the blob gone and
refuses (MANIFEST_BLOB_UNKNOWN) or re-supplies it (an upload of the same bytes); never a 201
for something gc then deletes. ``_gc/untagging/<digest>`` does the same for the manifest
revisions ``gc --delete-untagged`` removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from storage import mediatypes as mt
from storage import paths
from storage.digest import Digest, Hasher
from storage.drivers.base import FileInfo, StorageDriver
from storage.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestInvalid,
    DriverError,
    InvalidPath,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    PathNotFound,
    SizeInvalid,
    UploadOffsetMismatch,
)
from storage.manifest import Descriptor, Manifest, parse_manifest
from storage.reference import validate_name, validate_tag

_UPLOAD_ID_CHARS = set("0123456789abcdef-")
# How long a writer waits for a gc run to decide about a blob it references (the gc writes
# its markers, re-reads the repositories and deletes: seconds, even on large stores).
GC_WAIT = 300.0


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

    # -- the writer's half of the gc protocol (module docstring) --------------------------------
    async def _wait_for_gc(self, marker: str) -> None:
        """Return once no gc run holds ``marker`` (bounded: a gc killed mid-run leaves its
        markers, which the next run clears; until then this is an error, not a hang)."""
        deadline = time.monotonic() + GC_WAIT
        delay = 0.005
        while await self._exists(marker):
            if time.monotonic() > deadline:
                raise DriverError(f"garbage collection holds {marker}; retry later")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def _blob_survives_gc(self, d: Digest) -> bool:
        """Called after a reference to ``d`` was written: True if the blob's data is there
        and no gc run is deleting it."""
        await self._wait_for_gc(paths.gc_deleting(d))
        return await self._exists(paths.blob_data(d))

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
        if not await self._blob_survives_gc(d):
            await self._unlink_quietly(name, d)
            return False
        return True

    async def _unlink_quietly(self, name: str, d: Digest) -> None:
        try:
            await self.driver.delete(paths.layer_link(name, d).rsplit("/", 1)[0])
        except PathNotFound:
            pass

    # -- uploads ------------------------------------------------------------------------------
    def _check_upload_id(self, upload_id: str) -> None:
        if not upload_id or len(upload_id) > 64 or not set(upload_id) <= _UPLOAD_ID_CHARS:
            raise BlobUploadUnknown(upload_id)

    async def start_upload(self, name: str) -> Upload:
        upload_id = str(uuid.uuid4())
        now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
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

    @contextlib.asynccontextmanager
    async def upload_lock(self, upload: Upload) -> AsyncIterator[None]:
        """Serialises the writers of one upload (across processes on a filesystem root; see
        ``StorageDriver.lock``). Hold it around ``append_upload`` and ``finish_upload``."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(self.driver.lock(paths.upload_data(upload.name, upload.id)))
            except PathNotFound:
                raise BlobUploadUnknown(upload.id) from None
            yield

    async def append_upload(self, upload: Upload, body: AsyncIterator[bytes],
                            expected_length: int | None = None) -> Upload:
        """Append a request body to an upload, hashing as it streams. A short or broken body
        is rolled back: the upload keeps exactly the bytes it had before.

        ``upload.size`` is the offset the caller means to write at: if the stored upload has
        another size when the write starts (a concurrent duplicate PATCH got there first),
        UploadOffsetMismatch carries the current size and nothing is written. Call it holding
        ``upload_lock`` so the check and the write are one step."""
        current = await self.get_upload(upload.name, upload.id)
        if current.size != upload.size:
            raise UploadOffsetMismatch(upload.size, current.size)
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
        data = paths.upload_data(upload.name, upload.id)
        if await self._exists(paths.blob_data(expected)):
            # The bytes are already stored: link them, then make sure a concurrent gc did not
            # take them meanwhile; if it did, this upload holds the same verified bytes.
            await self.link_blob(upload.name, expected)
            if not await self._blob_survives_gc(expected):
                await self.driver.move(data, paths.blob_data(expected))
                await self.link_blob(upload.name, expected)
        else:
            await self.driver.move(data, paths.blob_data(expected))
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

    async def upload_started(self, name: str, upload_id: str) -> float | None:
        """When an upload started (its ``startedat``, RFC 3339), else its data file's mtime;
        None if the upload is gone."""
        try:
            text = (await self.driver.get_content(paths.upload_started_at(name, upload_id))).decode("ascii")
            return _parse_rfc3339(text)
        except (PathNotFound, UnicodeDecodeError, ValueError):
            pass
        try:
            return (await self.driver.stat(paths.upload_data(name, upload_id))).modified
        except PathNotFound:
            return None

    async def purge_uploads(self, older_than: float, dry_run: bool = False,
                            now: float | None = None) -> list[tuple[str, str]]:
        """Remove uploads started more than ``older_than`` seconds before ``now``, in every
        repository (with or without manifests); returns the (repository, upload id) pairs."""
        now = time.time() if now is None else now
        purged: list[tuple[str, str]] = []
        for name in await self.repository_names(("_uploads",)):
            try:
                entries = await self.driver.list(paths.uploads_root(name))
            except PathNotFound:
                continue
            for path in entries:
                upload_id = path.rsplit("/", 1)[1]
                started = await self.upload_started(name, upload_id)
                if started is None or now - started <= older_than:
                    continue
                purged.append((name, upload_id))
                if not dry_run:
                    self._hashers.pop(upload_id)
                    try:
                        await self.driver.delete(path)
                    except PathNotFound:
                        pass
        return purged

    # -- manifests ----------------------------------------------------------------------------
    async def resolve(self, name: str, reference: str) -> Digest:
        """A tag or digest to the digest of a manifest in ``name``; ManifestUnknown if none."""
        if ":" in reference:
            d = Digest.parse(reference)
            if await self._read_link(paths.revision_link(name, d)) != d:
                raise ManifestUnknown(reference)
            return d
        validate_tag(reference)
        target = await self._read_link(paths.tag_current_link(name, reference))
        if target is None:
            raise ManifestUnknown(reference)
        return target

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
        """What ``m`` references that ``name`` lacks: a blob needs its link in the repository
        and its data in the store (a gc killed mid-sweep can leave the first without the
        second), a child manifest its revision."""
        missing: list[Digest] = []
        for desc in m.blob_references():
            if (await self._read_link(paths.layer_link(name, desc.digest)) != desc.digest
                    or not await self._exists(paths.blob_data(desc.digest))):
                missing.append(desc.digest)
        for desc in m.manifests:
            if (await self._read_link(paths.revision_link(name, desc.digest)) != desc.digest
                    or not await self._exists(paths.blob_data(desc.digest))):
                missing.append(desc.digest)
        return missing

    async def _confirm_references(self, name: str, d: Digest, m: Manifest) -> list[Digest]:
        """After the revision of ``d`` was written: what a concurrent gc run removed (or is
        removing) of what ``m`` needs, itself included."""
        missing: list[Digest] = []
        for blob in [d, *(desc.digest for desc in m.blob_references())]:
            if not await self._blob_survives_gc(blob):
                missing.append(blob)
        for desc in m.manifests:
            await self._wait_for_gc(paths.gc_untagging(desc.digest))
            if (await self._read_link(paths.revision_link(name, desc.digest)) != desc.digest
                    or not await self._blob_survives_gc(desc.digest)):
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
            raise ManifestBlobUnknown([str(m) for m in missing])
        if not await self._exists(paths.blob_data(d)):
            await self.driver.put_content(paths.blob_data(d), raw)
        revision = paths.revision_link(name, d)
        existed = await self._read_link(revision) == d
        await self._write_link(revision, d)
        if m.subject is not None:
            await self._write_link(paths.referrer_link(name, m.subject.digest, d), d)
        tags = ([reference] if digest_ref is None else []) + list(extra_tags)
        # The gc protocol (module docstring): the revision is written, now confirm that
        # nothing it needs is being swept; then tags, and confirm `gc --delete-untagged` did
        # not take the revision before it saw them.
        for _ in range(3):
            missing = await self._confirm_references(name, d, m)
            if missing:
                if not existed:
                    await self._drop_revision(name, d, m)
                raise ManifestBlobUnknown([str(m) for m in missing])
            for tag in tags:
                await self._write_link(paths.tag_current_link(name, tag), d)
                await self._write_link(paths.tag_index_link(name, tag, d), d)
            await self._wait_for_gc(paths.gc_untagging(d))
            if await self._read_link(revision) == d:
                break
            await self._write_link(revision, d)
        else:
            raise DriverError(f"garbage collection keeps removing {name}@{d}; retry later")
        self._media_types.put(d, m.media_type)
        return d, m

    async def _drop_revision(self, name: str, d: Digest, m: Manifest | None) -> None:
        """Remove a revision link and its referrer entry (tags are the caller's business)."""
        if m is not None and m.subject is not None:
            try:
                await self.driver.delete(paths.referrer_link(name, m.subject.digest, d).rsplit("/", 1)[0])
            except PathNotFound:
                pass
        try:
            await self.driver.delete(paths.revision_link(name, d).rsplit("/", 1)[0])
        except PathNotFound:
            pass

    async def delete_manifest(self, name: str, d: Digest) -> None:
        """Delete a manifest revision, every tag pointing at it, and its referrer entry."""
        link = paths.revision_link(name, d)
        if await self._read_link(link) != d:
            raise ManifestUnknown(str(d))
        for tag in await self.tags(name):
            if await self._read_link(paths.tag_current_link(name, tag)) == d:
                await self.driver.delete(paths.tag_dir(name, tag))
        await self._drop_revision(name, d, await self.read_manifest(d))

    async def delete_tag(self, name: str, tag: str) -> None:
        validate_tag(tag)
        if await self._read_link(paths.tag_current_link(name, tag)) is None:
            raise ManifestUnknown(tag)
        await self.driver.delete(paths.tag_dir(name, tag))

    # -- listing ------------------------------------------------------------------------------
    async def tags(self, name: str, after: str | None = None, limit: int | None = None) -> list[str]:
        """Tags of ``name`` sorted, only those after ``after``, at most ``limit`` of them;
        NameUnknown if the repository does not exist. Only the returned tags are read."""
        try:
            entries = await self.driver.list(paths.tags_root(name))
        except PathNotFound:
            if await self._exists(paths.repository(name)):
                return []
            raise NameUnknown(name) from None
        out: list[str] = []
        for tag in sorted(path.rsplit("/", 1)[1] for path in entries):
            if limit is not None and len(out) >= limit:
                break
            if after is not None and tag <= after:
                continue
            # A tag folder without `current` is a half-deleted tag: not a tag.
            if await self._exists(paths.tag_current_link(name, tag)):
                out.append(tag)
        return out

    async def tag_targets(self, name: str) -> dict[str, Digest]:
        """Every tag of ``name`` and the manifest it points at (storage errors propagate)."""
        out: dict[str, Digest] = {}
        for tag in await self.tags(name):
            d = await self._read_link(paths.tag_current_link(name, tag))
            if d is not None:
                out[tag] = d
        return out

    async def repository_exists(self, name: str) -> bool:
        return await self._exists(paths.repository(name))

    async def repository_names(self, kinds: tuple[str, ...] = ("_layers", "_manifests")) -> list[str]:
        """Repositories holding any of ``kinds`` (folder names such as ``_layers``), sorted.
        Storage errors other than a folder vanishing mid-walk propagate."""
        root = paths.repositories_root()
        prefix = len(root) + 1
        found: list[str] = []

        async def walk(path: str) -> None:
            try:
                children = await self.driver.list(path)
            except PathNotFound:
                return
            bases = [child.rsplit("/", 1)[1] for child in children]
            if path != root and any(b in kinds for b in bases):
                found.append(path[prefix:])
            for child, base in zip(children, bases, strict=True):
                # A repository can hold nested ones (team/app and team/app/sub). Listing a
                # file is PathNotFound on every driver, so no stat is needed to tell.
                if not base.startswith("_"):
                    await walk(child)

        await walk(root)
        return sorted(found)

    async def repositories(self) -> AsyncIterator[str]:
        """Every repository with blobs or manifests, in lexical order (as Distribution's catalog,
        which lists a repository holding only a cross-mounted layer too)."""
        for n in await self.repository_names():
            yield n

    async def _digests_under(self, root: str, fanout: bool = False) -> list[Digest]:
        """Digests of ``<root>/<alg>/<hex>`` entries (links, markers), or with ``fanout`` of
        ``<root>/<alg>/<2 hex>/<hex>`` ones (the global blob store)."""
        out: list[Digest] = []
        try:
            algos = await self.driver.list(root)
        except PathNotFound:
            return out
        for algo_dir in algos:
            algo = algo_dir.rsplit("/", 1)[1]
            folders = [algo_dir]
            if fanout:
                try:
                    folders = await self.driver.list(algo_dir)
                except PathNotFound:
                    continue
            for folder in folders:
                try:
                    entries = await self.driver.list(folder)
                except PathNotFound:
                    continue
                for entry in entries:
                    try:
                        out.append(Digest.parse(f"{algo}:{entry.rsplit('/', 1)[1]}"))
                    except DigestInvalid:
                        continue
        return out

    async def revisions(self, name: str) -> list[Digest]:
        """Manifest revisions of ``name`` (storage errors propagate)."""
        return await self._digests_under(paths.revisions_root(name))

    async def linked_layers(self, name: str) -> list[Digest]:
        """Blobs linked into ``name`` (storage errors propagate)."""
        return await self._digests_under(paths.layers_root(name))

    async def _info(self, path: str) -> FileInfo | None:
        try:
            return await self.driver.stat(path)
        except PathNotFound:
            return None

    async def revision_info(self, name: str, d: Digest) -> FileInfo | None:
        return await self._info(paths.revision_link(name, d))

    async def layer_link_info(self, name: str, d: Digest) -> FileInfo | None:
        return await self._info(paths.layer_link(name, d))

    async def blob_info(self, d: Digest) -> FileInfo | None:
        """Size and mtime of a blob's data, None if absent."""
        return await self._info(paths.blob_data(d))

    async def all_blobs(self) -> list[Digest]:
        """Every blob in the global store (storage errors propagate)."""
        return await self._digests_under(paths.blobs_root(), fanout=True)

    async def read_manifest(self, d: Digest) -> Manifest | None:
        """The manifest stored as blob ``d``; None if absent or not a manifest (storage errors
        propagate: a reader that cannot tell must not guess)."""
        try:
            return parse_manifest(await self.driver.get_content(paths.blob_data(d)))
        except (PathNotFound, ManifestInvalid):
            return None

    # -- the collector's half of the gc protocol (module docstring; driven by storage/gc.py) -----
    async def store_clock(self) -> float:
        """Now, by the store's own clock (the mtime of a file just written), so gc compares
        mtimes with mtimes even when this machine's clock and the store's differ."""
        await self.driver.put_content(paths.gc_clock(), str(uuid.uuid4()).encode())
        return (await self.driver.stat(paths.gc_clock())).modified

    async def mark_deleting(self, d: Digest) -> None:
        await self.driver.put_content(paths.gc_deleting(d), b"")

    async def mark_untagging(self, d: Digest) -> None:
        await self.driver.put_content(paths.gc_untagging(d), b"")

    async def clear_gc_marker(self, d: Digest, untagging: bool = False) -> None:
        try:
            await self.driver.delete(paths.gc_untagging(d) if untagging else paths.gc_deleting(d))
        except PathNotFound:
            pass

    async def clear_all_gc_markers(self) -> None:
        """Drop every marker (what a killed gc run left; only while no other gc runs)."""
        for root in (paths.gc_deleting_root(), paths.gc_untagging_root()):
            try:
                await self.driver.delete(root)
            except PathNotFound:
                pass

    async def sweep_blob(self, d: Digest, linked_in: list[str]) -> None:
        """Unlink ``d`` from the given repositories, then delete its data (gc, holding the marker)."""
        for name in linked_in:
            await self._unlink_quietly(name, d)
        try:
            await self.driver.delete(paths.blob_dir(d))
        except PathNotFound:
            pass

    async def drop_untagged(self, name: str, d: Digest) -> None:
        """Remove an untagged revision (gc, holding the untagging marker)."""
        await self._drop_revision(name, d, await self.read_manifest(d))

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


def _parse_rfc3339(text: str) -> float:
    """``startedat``: RFC 3339 as Distribution and hoist write it (Z or an offset, optional
    fraction); ValueError otherwise."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Go writes nanoseconds; Python parses at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    t = datetime.datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError("startedat without a time zone")
    return t.timestamp()


async def _update(h: Hasher, chunk: bytes) -> None:
    # Big chunks are hashed off the loop; small ones are cheaper inline than a thread hop.
    if len(chunk) >= 1 << 20:
        await asyncio.to_thread(h.update, chunk)
    else:
        h.update(chunk)
