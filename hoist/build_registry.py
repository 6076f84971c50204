"""The registry side of ``hoist build``: the ``CacheRegistry`` the remote cache reads through,
and ``--push`` / ``--cache-to`` pushes, over the registry client.

The build runs in threads (stages at once); the client is async. One event loop runs in its own
thread for the whole build, with one client per registry kept open (one TLS and token
negotiation per registry, not per call); blocking callers hand it coroutines.

Pushes go through ``registry/client/push.py`` (HEAD first, mount from a sibling repository,
else upload). A blob the local store lacks (a remote cache hit nothing needed the files of) is
never downloaded to be uploaded again if it can be avoided: present in the target (HEAD) it is
skipped, in another repository of the same registry it is mounted; only otherwise is it fetched
from the cache it came from.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from builder.dispatch import LayerRef
from builder.remote_cache import CacheUnavailable, ImportedCache
from hoist.config import open_client, parse_ref
from hoist.errors import UserError
from registry.client.client import RegistryClient, run_all
from registry.client.errors import ClientError, ProtocolError
from registry.client.pull import BlobFetcher, fetch_manifest
from registry.client.push import PushResult, push
from storage.digest import Digest
from storage.errors import StorageError
from storage.layout import ImageLayout
from storage.manifest import Descriptor
from storage.reference import Reference

T = TypeVar("T")


class RegistryBridge:
    """Blocking access to registries for the build's threads (implements ``CacheRegistry``)."""

    def __init__(self, layout: ImageLayout) -> None:
        self.layout = layout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="registry", daemon=True)
        self.thread.start()
        self.clients: dict[str, RegistryClient] = {}

    def close(self) -> None:
        async def close_all() -> None:
            for client in self.clients.values():
                await client.close()
        try:
            self.call(close_all())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def __enter__(self) -> RegistryBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def client(self, domain: str) -> RegistryClient:
        """The registry's client (opened in the loop's thread, where aiohttp wants it)."""
        if domain not in self.clients:
            self.clients[domain] = open_client(domain)
        return self.clients[domain]

    # -- CacheRegistry --------------------------------------------------------------------------
    def _ref(self, ref: str) -> Reference:
        try:
            return parse_ref(ref)
        except UserError as e:
            raise CacheUnavailable(str(e)) from None

    def _run(self, fn: Callable[[RegistryClient, Reference], Coroutine[Any, Any, T]], ref: str) -> T:
        reference = self._ref(ref)

        async def go() -> T:
            return await fn(self.client(reference.domain), reference)
        try:
            return self.call(go())
        except ClientError as e:
            raise CacheUnavailable(str(e)) from None
        except UserError as e:
            raise CacheUnavailable(str(e)) from None

    def manifest(self, ref: str, digest: str | None = None) -> tuple[bytes, str]:
        async def get(client: RegistryClient, reference: Reference) -> tuple[bytes, str]:
            expected = Digest.parse(digest) if digest else reference.digest
            _, manifest = await fetch_manifest(client, reference.name,
                                                  str(expected or reference.tag), expected)
            return manifest.raw, manifest.media_type
        return self._run(get, ref)

    def blob(self, ref: str, digest: str, limit: int) -> bytes:
        async def get(client: RegistryClient, reference: Reference) -> bytes:
            expected = Digest.parse(digest)
            response = await client.open_blob(reference.name, expected)
            try:
                data = bytearray()
                async for chunk in response.chunks():
                    data += chunk
                    if len(data) > limit:
                        raise ProtocolError(f"blob {digest} is larger than {limit} bytes")
            finally:
                response.release()
            if Digest.of(bytes(data), expected.algorithm) != expected:
                raise ProtocolError(f"blob {digest} from {reference.repository} does not match its digest")
            return bytes(data)
        return self._run(get, ref)

    def missing(self, ref: str, digests: list[str]) -> set[str]:
        async def check(client: RegistryClient, reference: Reference) -> set[str]:
            slots = asyncio.Semaphore(8)

            async def one(digest: str) -> str | None:
                async with slots:
                    present = await client.blob_exists(reference.name, Digest.parse(digest))
                return None if present else digest
            return {d for d in await run_all([one(d) for d in digests]) if d is not None}
        return self._run(check, ref)

    def fetch_layer(self, ref: str, layer: LayerRef) -> None:
        async def fetch(client: RegistryClient, reference: Reference) -> None:
            desc = Descriptor(layer.media_type, Digest.parse(layer.digest), layer.size)
            with self.layout.lease():
                await BlobFetcher(client, reference.name, self.layout).fetch(desc)
            await asyncio.to_thread(self.layout.record_sources, [desc.digest], reference.repository)
        self._run(fetch, ref)

    # -- pushing ----------------------------------------------------------------------------------
    def push(self, ref: str, desc: Descriptor, remote: ImportedCache | None) -> PushResult:
        """Push the local manifest ``desc`` (and what it references) to ``ref``; raises
        ClientError with the registry's reason, or StorageError."""
        reference = parse_ref(ref)

        async def go() -> PushResult:
            client = self.client(reference.domain)
            await self._settle_absent_blobs(client, reference, desc, remote)
            return await push(client, reference, self.layout, desc)
        return self.call(go())

    async def _settle_absent_blobs(self, client: RegistryClient, ref: Reference, desc: Descriptor,
                                   remote: ImportedCache | None) -> None:
        """Blobs of ``desc`` the local store lacks: present in the target, mounted there from a
        repository of the same registry, or else fetched from their cache to be uploaded."""
        manifest = self.layout.manifest(desc)
        prefix = f"{client.registry}/"
        for blob in manifest.blob_references():
            if self.layout.has_blob(blob.digest) or await client.blob_exists(ref.name, blob.digest):
                continue
            mounted = False
            for source in self.layout.sources(blob.digest):
                if source.startswith(prefix) and source != ref.repository:
                    mounted = await client.mount_blob(ref.name, blob.digest, source[len(prefix):]) is None
                    if mounted:
                        break
            if mounted:
                continue
            if remote is None or not remote.has_source(str(blob.digest)):
                raise StorageError(f"blob {blob.digest} is neither in the local store nor in {ref.repository}")
            layer = LayerRef(str(blob.digest), "", blob.size, blob.media_type)
            try:
                await asyncio.to_thread(remote.fetch, layer)
            except CacheUnavailable as e:
                raise ClientError(f"cannot fetch cached layer {blob.digest} to push it: {e}") from None
