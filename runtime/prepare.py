"""Snapshots made ahead of the first run: ``hoist pull`` and ``hoist load`` unpack each layer
into its snapshot as soon as it is stored, so ``hoist run`` finds the whole chain ready.

A layer's snapshot is its diff alone, but unpacking it may hard-link into the layers below it
(``SnapshotStore.ensure``'s ``lowers``), so layers are unpacked lowest first: :class:`ChainPreparer`
unpacks layer N once layer N's blob is verified and layers below are unpacked, in a worker
thread, while the later blobs are still downloading. Each unpack is atomic (``.unpack-<hex>``
renamed into place), so a refused layer leaves no snapshot behind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from runtime.errors import ImageConfigInvalid
from runtime.snapshots import SnapshotStore, chain_ids
from storage.tarlimits import Budget


class ChainPreparer:
    """Unpacks an image's layers while they arrive: call :meth:`stored` for each verified blob
    digest, then await :meth:`run` (started with ``asyncio.create_task`` before the downloads)."""

    def __init__(self, store: SnapshotStore, blob_path: Callable[[str], Path], config_digest: str,
                 layer_digests: list[str]) -> None:
        self.store, self.blob_path = store, blob_path
        self.config_digest, self.layer_digests = config_digest, layer_digests
        self._ready: dict[str, asyncio.Event] = {}
        self.unpacked = 0

    def _event(self, digest: str) -> asyncio.Event:
        return self._ready.setdefault(digest, asyncio.Event())

    def stored(self, digest: str) -> None:
        self._event(digest).set()

    async def run(self) -> list[Path]:
        await self._event(self.config_digest).wait()
        config = await asyncio.to_thread(_read_config, self.blob_path(self.config_digest))
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise ImageConfigInvalid(f"image config {self.config_digest} has no rootfs.diff_ids list")
        if len(diff_ids) != len(self.layer_digests):
            raise ImageConfigInvalid(f"the image has {len(self.layer_digests)} layers but its config "
                                     f"lists {len(diff_ids)} diff_ids")
        budget = Budget()
        chain: list[Path] = []
        for digest, diff_id, chain_id in zip(self.layer_digests, diff_ids, chain_ids(diff_ids), strict=True):
            if self.store.has(chain_id):
                chain.append(self.store.path(chain_id))
                continue
            await self._event(digest).wait()
            chain.append(await asyncio.to_thread(self.store.ensure, self.blob_path(digest), diff_id,
                                                 chain_id, list(chain), budget))
            self.unpacked += 1
        return chain


def _read_config(path: Path) -> dict[str, object]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise ImageConfigInvalid(f"image config {path.name} is unreadable: {e}") from None
    if not isinstance(doc, dict):
        raise ImageConfigInvalid(f"image config {path.name} is not a JSON object")
    return doc


def prepare_image(store: SnapshotStore, images_dir: Path, ref: str) -> list[Path]:
    """Snapshots for every layer of the local image ``ref`` (what ``hoist load`` calls)."""
    from runtime.image import load_image

    image = load_image(images_dir, ref)
    return store.ensure_chain(list(image.layer_blobs), image.diff_ids)
