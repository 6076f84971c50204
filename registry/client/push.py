"""Push: blobs first (checked with HEAD, mounted from a sibling repository when the local
store knows one, otherwise uploaded in parallel), then the manifest; an index's children
before the index.

Small blobs go up monolithically (POST, then PUT with the bytes); large ones in PATCH chunks. A
chunk whose connection drops is not sent again from zero: the upload's status (GET on its URL)
says how many bytes the registry kept, and the next PATCH starts there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from registry.client.client import RegistryClient, run_all
from registry.client.errors import ClientError, ContentInvalid, ProtocolError
from registry.client.events import EXISTS, MOUNTED, PUSHED, RETRYING, UPLOADING, WAITING, Progress, ProgressFn, ignore
from registry.client.retry import DEFAULT_POLICY, OnRetry, RetryPolicy
from storage.digest import Digest
from storage.layout import ImageLayout
from storage.manifest import Descriptor, Manifest
from storage.platform import Platform, select_platform
from storage.reference import Reference

MONOLITHIC_MAX = 16 << 20     # blobs up to this size go up in one PUT
CHUNK_BYTES = 32 << 20        # larger ones in PATCH chunks of this size
READ_BYTES = 1 << 20
DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True)
class PushResult:
    reference: Reference
    digest: Digest              # of the manifest (or index) pushed under the tag
    size: int
    uploaded: int               # blobs actually sent


def file_body(path: Path, start: int, length: int, on_bytes: Callable[[int], None] | None = None
              ) -> Callable[[], AsyncIterator[bytes]]:
    """A body factory for bytes [start, start+length) of a file, read in a thread."""
    async def chunks() -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(open, path, "rb")
        try:
            await asyncio.to_thread(f.seek, start)
            left = length
            while left > 0:
                block = await asyncio.to_thread(f.read, min(READ_BYTES, left))
                if not block:
                    raise ContentInvalid(f"{path} is shorter than its recorded size")
                left -= len(block)
                if on_bytes:
                    on_bytes(len(block))
                yield block
        finally:
            f.close()
    return chunks


class Pusher:
    def __init__(self, client: RegistryClient, ref: Reference, layout: ImageLayout,
                 progress: ProgressFn = ignore, concurrency: int = DEFAULT_CONCURRENCY,
                 chunk_bytes: int = CHUNK_BYTES, monolithic_max: int = MONOLITHIC_MAX,
                 retry: RetryPolicy = DEFAULT_POLICY) -> None:
        self.client, self.ref, self.layout, self.progress = client, ref, layout, progress
        self.name = ref.name
        self.slots = asyncio.Semaphore(concurrency)
        self.chunk_bytes, self.monolithic_max = chunk_bytes, monolithic_max
        self.retry = retry
        self.uploaded = 0

    async def push(self, desc: Descriptor, platform: Platform | None = None) -> PushResult:
        """Push the local image ``desc`` under ``self.ref``'s tag (or digest)."""
        manifest = self.layout.manifest(desc)
        target = str(self.ref.tag or self.ref.digest or desc.digest)
        if manifest.is_index:
            present = [d for d in manifest.manifests if self.layout.has_blob(d.digest)]
            if len(present) < len(manifest.manifests):
                # Only part of the index was pulled: push the platform image, as docker does.
                child = select_platform(Manifest(manifest.media_type, manifest.raw, manifest.doc,
                                                 manifests=tuple(present)), platform or Platform.host())
                if child is None:
                    raise ClientError(f"{self.ref}: the local store holds no image for "
                                      f"{platform or Platform.host()} of this index")
                return await self.push(child, platform)
            for child in manifest.manifests:
                await self._push_image(self.layout.manifest(child), str(child.digest))
            await self._put_manifest(manifest, desc, target)
        else:
            await self._push_image(manifest, None)
            await self._put_manifest(manifest, desc, target)
        return PushResult(self.ref, desc.digest, desc.size, self.uploaded)

    async def _push_image(self, manifest: Manifest, by_digest: str | None) -> None:
        blobs = list({b.digest: b for b in manifest.blob_references()}.values())  # a layer may repeat
        for blob in blobs:
            self.progress(Progress.of(blob.digest, WAITING, 0, blob.size))
        await run_all([self.push_blob(blob) for blob in blobs])
        if by_digest is not None:
            await self._put_manifest(manifest, None, by_digest)

    async def _put_manifest(self, manifest: Manifest, desc: Descriptor | None, reference: str) -> None:
        declared = await self.client.put_manifest(self.name, reference, manifest.raw, manifest.media_type)
        if declared and declared != str(manifest.digest):
            raise ProtocolError(f"{self.client.registry} stored the manifest as {declared}, "
                                f"not {manifest.digest}")
        digests = [manifest.digest] + [d.digest for d in manifest.blob_references()]
        await asyncio.to_thread(self.layout.record_sources, digests, self.ref.repository)

    async def push_blob(self, desc: Descriptor) -> None:
        async with self.slots:
            if await self.client.blob_exists(self.name, desc.digest):
                self.progress(Progress.of(desc.digest, EXISTS, desc.size, desc.size))
                return
            location = await self._try_mount(desc)
            if location == "":
                self.progress(Progress.of(desc.digest, MOUNTED, desc.size, desc.size))
                return
            path = self.layout.blob_path(desc.digest)
            if not path.is_file():
                raise ClientError(f"blob {desc.digest} is not in the local image store; pull the image again")
            if desc.size <= self.monolithic_max:
                await self._upload_monolithic(desc, path, location)
            else:
                await self._upload_chunked(desc, path, location)
            self.uploaded += 1
            self.progress(Progress.of(desc.digest, PUSHED, desc.size, desc.size))

    async def _try_mount(self, desc: Descriptor) -> str | None:
        """"" if mounted; an upload URL if the registry opened one instead; None if no source."""
        prefix = f"{self.client.registry}/"
        for source in self.layout.sources(desc.digest):
            if source.startswith(prefix) and source != self.ref.repository:
                location = await self.client.mount_blob(self.name, desc.digest, source[len(prefix):])
                return "" if location is None else location
        return None

    async def _upload_monolithic(self, desc: Descriptor, path: Path, location: str | None) -> None:
        """POST (unless a mount opened the upload) and PUT the whole blob; after a failure, in a
        new upload."""
        async def attempt() -> None:
            nonlocal location
            upload, location = location or await self.client.start_upload(self.name), None
            await self.client.finish_upload(upload, self.name, desc.digest,
                                            file_body(path, 0, desc.size, _Counter(self, desc)), desc.size)

        await self.retry.run(attempt, self._what(desc), self._retrying(desc, lambda: 0))

    async def _upload_chunked(self, desc: Descriptor, path: Path, location: str | None) -> None:
        """PATCH chunks; after a failure, ask the registry what it kept rather than sending the
        chunk again from its start, and go on from there."""
        upload = location or await self.client.start_upload(self.name)
        offset, resuming = 0, False

        async def attempt() -> None:
            nonlocal upload, offset, resuming
            if resuming:
                offset, upload = await self.client.upload_status(upload, self.name)
                self.progress(Progress.of(desc.digest, UPLOADING, offset, desc.size, f"resuming at {offset}"))
            resuming = True
            while offset < desc.size:
                length = min(self.chunk_bytes, desc.size - offset)
                body = file_body(path, offset, length, _Counter(self, desc, offset))
                upload = await self.client.upload_chunk(upload, self.name, body, offset, length)
                offset += length

        await self.retry.run(attempt, self._what(desc), self._retrying(desc, lambda: offset))
        await self.client.finish_upload(upload, self.name, desc.digest)

    def _what(self, desc: Descriptor) -> str:
        return f"upload of {desc.digest} to {self.ref.repository}"

    def _retrying(self, desc: Descriptor, offset: Callable[[], int]) -> OnRetry:
        def report(error: ClientError, retry: int, wait: float) -> None:
            self.progress(Progress.of(desc.digest, RETRYING, offset(), desc.size, str(error)))
        return report


class _Counter:
    """Turns bytes read for an upload into progress events."""

    def __init__(self, pusher: Pusher, desc: Descriptor, start: int = 0) -> None:
        self.pusher, self.desc, self.done = pusher, desc, start

    def __call__(self, n: int) -> None:
        self.done += n
        self.pusher.progress(Progress.of(self.desc.digest, UPLOADING, self.done, self.desc.size))


async def push(client: RegistryClient, ref: Reference, layout: ImageLayout, desc: Descriptor, *,
               progress: ProgressFn = ignore, concurrency: int = DEFAULT_CONCURRENCY,
               platform: Platform | None = None) -> PushResult:
    """Push the local image ``desc`` to ``ref`` (which names the registry and repository)."""
    return await Pusher(client, ref, layout, progress, concurrency).push(desc, platform)
