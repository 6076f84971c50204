"""Pull: manifest negotiation, platform selection, and parallel, verified, resumable blob
downloads into the local image layout.

Each blob streams into ``ImageLayout.writer`` (a partial file in ``ingest/``); it becomes visible
under its digest only once its bytes hash to it. A dropped connection is retried with backoff and
resumed with ``Range`` from the partial's length, in this run or the next one (after Ctrl-C).
Hashing and file writes run in threads, pipelined with the network reads.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from registry.client.client import RegistryClient, run_all
from registry.client.errors import ClientError, ContentInvalid, PlatformNotFound, ProtocolError, StoreFull
from registry.client.events import DONE, DOWNLOADING, EXISTS, RETRYING, VERIFYING, WAITING, Progress, ProgressFn, ignore
from registry.client.retry import DEFAULT_POLICY, RetryPolicy
from registry.client.transport import Response
from storage.digest import Digest
from storage.errors import DigestInvalid, ManifestInvalid, SizeInvalid
from storage.layout import BlobWriter, ImageLayout
from storage.manifest import Descriptor, Manifest, parse_manifest
from storage.platform import Platform, select_platform
from storage.reference import Reference

# A write that fails with one of these means the disk is full: partials are removed, not kept.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

# Buffer this much before handing bytes to the writer thread (fewer, larger thread hops).
FLUSH_BYTES = 4 << 20
DEFAULT_CONCURRENCY = 6


@dataclass(frozen=True)
class PullResult:
    reference: Reference
    named: Descriptor          # what the reference names (an index, or the image manifest)
    image: Descriptor          # the platform's image manifest
    manifest: Manifest
    downloaded: int            # blobs fetched (not already present)


async def fetch_manifest(client: RegistryClient, name: str, reference: str,
                         expected: Digest | None = None) -> tuple[Descriptor, Manifest]:
    """GET a manifest, check it against the digest asked for (or the one the registry declares)."""
    raw, ctype, declared = await client.get_manifest(name, reference)
    got = Digest.of(raw, expected.algorithm if expected else "sha256")
    if expected is not None and got != expected:
        raise ContentInvalid(f"manifest {expected} from {client.registry}/{name} hashes to {got}: refused")
    if expected is None and declared and declared.startswith("sha256:") and declared != str(got):
        raise ContentInvalid(f"manifest {name}:{reference} from {client.registry} hashes to {got}, "
                             f"not the {declared} the registry declared: refused")
    try:
        manifest = parse_manifest(raw, ctype)
    except ManifestInvalid as e:
        raise ProtocolError(f"manifest {name}:{reference} from {client.registry} is invalid: {e}") from None
    return Descriptor(manifest.media_type, got, len(raw)), manifest


def _available(index: Manifest) -> str:
    names = sorted({str(Platform.of(d.platform)) for d in index.manifests if d.platform})
    return ", ".join(names) or "none"


async def resolve(client: RegistryClient, ref: Reference, platform: Platform
                  ) -> tuple[Descriptor, Manifest, Descriptor, Manifest]:
    """(named descriptor, named manifest, image descriptor, image manifest) for ``ref``."""
    named, manifest = await fetch_manifest(client, ref.name, str(ref.digest or ref.tag), ref.digest)
    if not manifest.is_index:
        return named, manifest, named, manifest
    child = select_platform(manifest, platform)
    if child is None:
        raise PlatformNotFound(f"{ref} has no image for {platform} (it has: {_available(manifest)}); "
                               f"choose one with --platform")
    image_desc, image = await fetch_manifest(client, ref.name, str(child.digest), child.digest)
    if image.is_index:
        raise ProtocolError(f"{ref}: nested indexes are not supported")
    return named, manifest, Descriptor(image_desc.media_type, child.digest, child.size,
                                       platform=child.platform), image


async def pull(client: RegistryClient, ref: Reference, layout: ImageLayout, *,
               platform: Platform | None = None, progress: ProgressFn = ignore,
               concurrency: int = DEFAULT_CONCURRENCY,
               on_image: Callable[[Manifest], None] | None = None,
               on_blob: Callable[[Descriptor], None] | None = None,
               before_tag: Callable[[], Awaitable[None]] | None = None) -> PullResult:
    """Pull ``ref`` into ``layout`` and tag it there with its full name. ``on_image`` is told the
    platform's image manifest before its blobs are fetched, ``on_blob`` each blob once it is
    stored and verified (or was already present): ``hoist pull`` unpacks layers from there;
    ``before_tag`` is awaited once every blob is stored, before the image is tagged (its failure
    fails the pull, leaving the image untagged)."""
    wanted = platform or Platform.host()
    await asyncio.to_thread(layout.init)
    named, named_manifest, image_desc, image = await resolve(client, ref, wanted)
    blobs = list(image.blob_references())
    if on_image is not None:
        on_image(image)
    with layout.lease():
        fetcher = BlobFetcher(client, ref.name, layout, progress, concurrency, on_blob=on_blob)
        if platform is not None and not named_manifest.is_index and image.config is not None:
            # A single-platform image says its platform only in its config: check it before the layers.
            await fetcher.fetch(image.config)
            _check_platform(ref, layout, image, platform)
        results = await fetcher.fetch_all(blobs)
        if before_tag is not None:
            await before_tag()
        try:
            await asyncio.to_thread(_commit_manifests, layout, ref, named, named_manifest, image_desc, image)
        except OSError as e:
            if e.errno not in DISK_FULL:
                raise
            raise StoreFull(f"no space left on the device of {layout.root} while storing the manifest "
                            f"of {ref}: free some space and pull again") from None
    return PullResult(ref, named, image_desc, image, sum(results))


def _check_platform(ref: Reference, layout: ImageLayout, image: Manifest, wanted: Platform) -> None:
    try:
        actual = Platform.of(layout.config(image))
    except (ValueError, ManifestInvalid):
        return
    if not wanted.matches(actual):
        raise PlatformNotFound(f"{ref} is a {actual} image, not {wanted} (it is not a multi-platform index)")


def _commit_manifests(layout: ImageLayout, ref: Reference, named: Descriptor, named_manifest: Manifest,
                      image_desc: Descriptor, image: Manifest) -> None:
    layout.put_blob(image.raw, image_desc.digest)
    if named_manifest.is_index:
        layout.put_blob(named_manifest.raw, named.digest)
    layout.record_sources([image_desc.digest, named.digest] + [d.digest for d in image.blob_references()],
                          ref.repository)
    layout.tag(str(ref), Descriptor(named.media_type, named.digest, named.size))


class BlobFetcher:
    """Downloads blobs of one repository into a layout, ``concurrency`` at a time."""

    def __init__(self, client: RegistryClient, name: str, layout: ImageLayout,
                 progress: ProgressFn = ignore, concurrency: int = DEFAULT_CONCURRENCY,
                 retry: RetryPolicy = DEFAULT_POLICY,
                 on_blob: Callable[[Descriptor], None] | None = None) -> None:
        self.client, self.name, self.layout, self.progress = client, name, layout, progress
        self.on_blob = on_blob
        self.slots = asyncio.Semaphore(concurrency)
        self.retry = retry
        self.disk_full = False  # set by the first blob whose write fails for lack of space

    async def fetch_all(self, blobs: list[Descriptor]) -> list[bool]:
        """Fetch every blob; True for each one downloaded. The first failure cancels the rest."""
        unique = list({desc.digest: desc for desc in blobs}.values())  # a layer may repeat
        for desc in unique:
            self.progress(Progress.of(desc.digest, WAITING, 0, desc.size))
        return await run_all([self.fetch(desc) for desc in unique])

    async def fetch(self, desc: Descriptor) -> bool:
        fetched = await self._fetch(desc)
        if self.on_blob is not None:
            self.on_blob(desc)
        return fetched

    async def _fetch(self, desc: Descriptor) -> bool:
        if self.layout.has_blob(desc.digest):
            self.progress(Progress.of(desc.digest, EXISTS, desc.size, desc.size))
            return False
        async with self.slots:
            writer = await asyncio.to_thread(self.layout.writer, desc.digest, desc.size, True)
            if writer.present:
                # Another pull committed it while this one waited for the blob's lock.
                writer.close()
                self.progress(Progress.of(desc.digest, EXISTS, desc.size, desc.size))
                return False
            try:
                await self._download(desc, writer)
                self.progress(Progress.of(desc.digest, VERIFYING, desc.size, desc.size))
                await self._commit(desc, writer)
            except ContentInvalid:
                await asyncio.to_thread(writer.discard)
                raise
            except OSError as e:
                if e.errno not in DISK_FULL:
                    raise
                # A partial on a full disk helps nobody: remove it, and the others' (below).
                self.disk_full = True
                writer.discard()
                raise StoreFull(f"no space left on the device of {self.layout.root} while pulling "
                                f"{desc.digest} from {self.client.registry}/{self.name}: partial downloads "
                                "removed; free some space and pull again") from None
            except asyncio.CancelledError:
                if self.disk_full:  # cancelled because another blob filled the disk
                    writer.discard()
                raise
            finally:
                writer.close()
        self.progress(Progress.of(desc.digest, DONE, desc.size, desc.size))
        return True

    async def _download(self, desc: Descriptor, writer: BlobWriter) -> None:
        """Download, retrying and resuming from the partial's length after each failure."""
        def retrying(error: ClientError, retry: int, wait: float) -> None:
            self.progress(Progress.of(desc.digest, RETRYING, writer.offset, desc.size, str(error)))

        async def attempt() -> None:
            if writer.offset < desc.size:
                await self._download_once(desc, writer)

        await self.retry.run(attempt, f"blob {desc.digest} of {self.client.registry}/{self.name}", retrying)

    async def _download_once(self, desc: Descriptor, writer: BlobWriter) -> None:
        offset = writer.offset
        response = await self.client.open_blob(self.name, desc.digest, offset)
        try:
            if response.status == 416:
                # The partial already holds every byte the registry has; let the digest decide.
                return
            if response.status == 200 and offset:
                # The registry ignored Range: start over rather than append the head again.
                await asyncio.to_thread(writer.reset)
            elif response.status == 206 and not _starts_at(response.headers.get("Content-Range"), offset):
                raise ProtocolError(f"blob {desc.digest}: asked for bytes from {offset}, "
                                    f"got {response.headers.get('Content-Range')!r}")
            await self._stream(desc, writer, response)
        finally:
            response.release()

    async def _stream(self, desc: Descriptor, writer: BlobWriter, response: Response) -> None:
        pending: asyncio.Future[None] | None = None
        chunks: list[bytes] = []
        buffered = 0
        position = writer.offset
        try:
            async for chunk in response.chunks():
                chunks.append(chunk)
                buffered += len(chunk)
                position += len(chunk)
                if position > desc.size:
                    raise ContentInvalid(f"blob {desc.digest} from {self.client.registry}/{self.name} "
                                         f"is longer than its {desc.size} bytes: refused")
                if buffered >= FLUSH_BYTES:
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(asyncio.to_thread(writer.write_all, chunks))
                    chunks, buffered = [], 0
                    self.progress(Progress.of(desc.digest, DOWNLOADING, position, desc.size))
        finally:
            # Keep every byte that arrived, even on a drop or Ctrl-C: the next try resumes after it.
            if pending is not None:
                await pending
            if chunks:
                await asyncio.to_thread(writer.write_all, chunks)
        self.progress(Progress.of(desc.digest, DOWNLOADING, writer.offset, desc.size))

    async def _commit(self, desc: Descriptor, writer: BlobWriter) -> None:
        try:
            await asyncio.to_thread(writer.commit)
        except (DigestInvalid, SizeInvalid) as e:
            raise ContentInvalid(f"blob {desc.digest} from {self.client.registry}/{self.name} "
                                 f"does not match its digest ({e}): refused, nothing stored") from None


def _starts_at(content_range: str | None, offset: int) -> bool:
    """Content-Range ``bytes <start>-<end>/<size>`` begins at ``offset``."""
    if not content_range:
        return False
    try:
        return int(content_range.split()[-1].split("-")[0]) == offset
    except ValueError:
        return False
