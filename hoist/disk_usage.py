"""What ``$HOIST_ROOT`` holds and what can go: the wiring behind ``hoist system df`` and
``hoist builder prune`` over ``builder/prune.py`` (the build cache), ``runtime/snapshot_prune.py``
(snapshots) and the image store.

Sizes are apparent bytes, each inode once (``du -sb``'s count). "Active" and "reclaimable":

- images: every local ref's blobs; active = used by a container; reclaimable = the blobs of
  images no container uses (as docker counts it);
- containers: their directories (upper dirs, logs); active = running; reclaimable = stopped ones;
- snapshots: unpacked layers; active = used by an image or container; reclaimable = the others;
- build cache: the layer blobs cache entries keep, and the snapshots lazy entries keep
  (``builder.cache``: layers no output needed have no blob, their snapshot holds them; counted
  here, not under snapshots); active = also a layer of a local image; reclaimable = the others
  (what ``hoist builder prune`` removes);
- cache mounts: ``RUN --mount=type=cache`` directories; all reclaimable (``prune --all``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from builder.prune import (
    MOUNT_DIRS,
    CacheMount,
    CacheRecord,
    cache_mounts,
    cache_records,
    cache_size,
    remove_records,
    remove_tree,
    select,
    tree_size,
)
from runtime.snapshot_prune import SnapshotUse, remove_snapshot, snapshot_uses
from runtime.errors import RuntimeFailure
from runtime.snapshots import SnapshotStore, chain_ids
from storage.errors import StorageError
from storage.fsutil import file_lock, try_file_lock
from storage.layout import ImageLayout


@dataclass
class Usage:
    kind: str
    total: int = 0
    active: int = 0
    size: int = 0
    reclaimable: int = 0

    def to_json(self) -> dict[str, object]:
        return {"Type": self.kind, "TotalCount": self.total, "Active": self.active, "Size": self.size,
                "Reclaimable": self.reclaimable}


@dataclass
class PruneResult:
    keys: list[str] = field(default_factory=list)
    reclaimed: int = 0


def _images(layout: ImageLayout) -> list[tuple[str, list[str], list[str], int]]:
    """Per local ref: (manifest digest, its blobs, its diff_ids, ...)."""
    out = []
    for _, desc in layout.refs():
        try:
            image_desc, manifest = layout.platform_image(desc)
            config = json.loads(layout.read_blob(manifest.config.digest)) if manifest.config else {}
        except (StorageError, ValueError):
            continue
        blobs = [str(desc.digest), str(image_desc.digest)] + [str(d.digest) for d in manifest.blob_references()]
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or []) if isinstance(config, dict) else []
        out.append((str(layout.image_id(desc)), blobs, [str(d) for d in diff_ids], 0))
    return out


def _image_chains(images: list[tuple[str, list[str], list[str], int]]) -> set[str]:
    chains: set[str] = set()
    for _, _, diff_ids, _ in images:
        chains.update(chain_ids(diff_ids))
    return chains


def _lazy_chains(records: list[CacheRecord]) -> set[str]:
    """The snapshots lazy cache entries hold their layers in: kept as gc roots keep blobs."""
    return {r.snapshot for r in records if r.snapshot}


def _blob_sizes(layout: ImageLayout, digests: set[str]) -> int:
    total = 0
    for digest in digests:
        try:
            total += layout.blob_path(digest).stat().st_size
        except (FileNotFoundError, ValueError):
            continue
    return total


def disk_usage(root: Path) -> list[Usage]:
    from runtime.containers import ContainerStore

    layout = ImageLayout(root / "images")
    images = _images(layout)
    containers = ContainerStore(root / "containers").all() if (root / "containers").is_dir() else []
    used_by_containers: set[str] = set()
    container_usage = Usage("Containers", total=len(containers))
    for container in containers:
        status, _ = container.status()
        size = tree_size(container.path)
        container_usage.size += size
        if status == "running":
            container_usage.active += 1
        else:
            container_usage.reclaimable += size
        try:
            used_by_containers.add(container.spec.image_id)
        except Exception:  # a half-written or foreign container: counted, not matched
            continue
    image_usage = Usage("Images", total=len({ident for ident, *_ in images}))
    all_blobs = {b for _, blobs, _, _ in images for b in blobs}
    kept_blobs = {b for ident, blobs, _, _ in images if ident in used_by_containers for b in blobs}
    image_usage.active = len({ident for ident, *_ in images if ident in used_by_containers})
    image_usage.size = _blob_sizes(layout, all_blobs)
    image_usage.reclaimable = _blob_sizes(layout, all_blobs - kept_blobs)

    records = cache_records(root, layout.blob_path)
    image_chains = _image_chains(images)
    store = SnapshotStore(root / "snapshots")
    # A lazy entry's snapshot is the build cache's (unless an image's chain is the same).
    by_cache = {store.path(c).name for c in _lazy_chains(records) - image_chains}
    uses = snapshot_uses(store, image_chains, root / "containers")
    seen: set[tuple[int, int]] = set()
    lazy_sizes: dict[str, int] = {}
    for use in uses:
        if use.name in by_cache:
            lazy_sizes[use.name] = tree_size(use.path, seen)
    uses = [u for u in uses if u.name not in by_cache]
    snapshots = Usage("Snapshots", total=len(uses), active=sum(1 for u in uses if u.used))
    for use in uses:
        size = tree_size(use.path, seen)
        snapshots.size += size
        if not use.used:
            snapshots.reclaimable += size

    # Measured as du counts them: a blob's bytes, a lazy entry's snapshot's tree.
    records = [dataclasses.replace(r, size=lazy_sizes.get(store.path(r.snapshot).name, 0)) if r.snapshot else r
               for r in records]
    in_images = {b for _, blobs, _, _ in images for b in blobs} | image_chains
    cache = Usage("Build Cache", total=len(records),
                  active=sum(1 for r in records if r.holds in in_images),
                  size=cache_size(records),
                  reclaimable=cache_size([r for r in records if r.holds not in in_images]))
    mounts = cache_mounts(root)
    mount_usage = Usage("Cache mounts", total=len(mounts), size=sum(m.size for m in mounts),
                        reclaimable=sum(m.size for m in mounts))
    return [image_usage, container_usage, snapshots, cache, mount_usage]


def _measured(root: Path) -> int:
    seen: set[tuple[int, int]] = set()
    parts = ["images/blobs", "snapshots", "cache/build"] + [f"cache/{d}" for d in MOUNT_DIRS]
    return sum(tree_size(root / p, seen) for p in parts)


def remove_unused_snapshots(root: Path) -> int:
    """Remove the snapshots no local image and no container uses (``rmi``, ``image prune``):
    a derived cache, each unpacked again from its layer blob when something needs it. Under the
    store's gc lock, which running builds and pulls hold shared, so nothing they use goes. The
    number removed."""
    layout = ImageLayout(root / "images")
    if not (root / "images").is_dir() or not (root / "snapshots").is_dir():
        return 0
    with file_lock(layout.root / ".gc.lock"):
        store = SnapshotStore(root / "snapshots")
        kept = _image_chains(_images(layout)) | _lazy_chains(cache_records(root, layout.blob_path))
        unused = [u for u in snapshot_uses(store, kept, root / "containers") if not u.used]
        for use in unused:
            remove_snapshot(use)
    return len(unused)


def prune(root: Path, *, everything: bool, until: float | None, keep_storage: int | None) -> PruneResult:
    """Remove build cache (see ``hoist/commands/builder.py``); what was removed and the bytes freed."""
    layout = ImageLayout(root / "images")
    if not (root / "images").is_dir():
        return PruneResult()
    before = _measured(root)
    result = PruneResult()
    # Exclusive: waits for running builds and pulls (they hold it shared) and keeps new ones out.
    with file_lock(layout.root / ".gc.lock"):
        images = _images(layout)
        in_use = {b for _, blobs, _, _ in images for b in blobs} | _image_chains(images)
        records: list[CacheRecord] = cache_records(root, layout.blob_path)
        chosen = select(records, everything=everything, in_use=in_use, until=until, keep_storage=keep_storage)
        remove_records(chosen, layout.root / "gc-roots")
        store = SnapshotStore(root / "snapshots")
        removed = {r.key for r in chosen}
        kept = _image_chains(images) | _lazy_chains([r for r in records if r.key not in removed])
        # What the removed lazy entries held goes with them, whatever the filters.
        gone = {store.path(c).name for c in _lazy_chains(chosen) - kept}
        for use in snapshot_uses(store, kept, root / "containers"):
            if use.name in gone and not use.used:
                remove_snapshot(use)
        result.keys = [r.key for r in chosen]
        if chosen or (everything and until is None and keep_storage is None):
            from builder.memo import MemoStore

            MemoStore(root / "cache" / "build" / "memo").clear()    # what they answered may be gone
        if everything:
            now = time.time()
            for mount in cache_mounts(root):
                if until is None or now - mount.last_used >= until:
                    remove_tree(mount.path)
        # Unused snapshots are a derived cache: they go unless the prune was asked to keep some.
        if until is None and keep_storage is None:
            unused: list[SnapshotUse] = [u for u in snapshot_uses(store, kept, root / "containers") if not u.used]
            for use in unused:
                remove_snapshot(use)
            _forget_copies_of_gone_snapshots(root / "cache" / "build" / "copies", store)
    layout.gc()
    result.reclaimed = max(0, before - _measured(root))
    return result


def _forget_copies_of_gone_snapshots(copies: Path, store: SnapshotStore) -> None:
    """The copy records (builder.copy.PreviousCopy) whose snapshot the prune removed."""
    try:
        names = os.listdir(copies)
    except FileNotFoundError:
        return
    for name in names:
        path = copies / name
        try:
            chain_id = json.loads(path.read_bytes()).get("snapshot")
            gone = not isinstance(chain_id, str) or not store.has(chain_id)
        except (OSError, ValueError, AttributeError, RuntimeFailure):
            gone = True
        if gone:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# -- the automatic bound ------------------------------------------------------------------------------
def bound_build_cache(root: Path, bound: int) -> PruneResult | None:
    """Evict build cache, least recently used first (cache entries and cache mounts in one
    order), until what it holds is at most ``bound`` bytes; then the snapshots no image or
    container uses, and the blobs nothing keeps. Only when no build or pull is running (they
    hold the store's gc lock shared): None when one is, and the next build that grows the cache
    tries again. Nothing a running build uses can go."""
    layout = ImageLayout(root / "images")
    if not layout.root.is_dir():
        return PruneResult()
    result = PruneResult()
    with try_file_lock(layout.root / ".gc.lock") as taken:
        if not taken:
            return None
        records = cache_records(root, layout.blob_path)
        mounts = cache_mounts(root)
        users = Counter(r.holds for r in records)
        sizes = {r.holds: r.size for r in records}
        total = sum(sizes.values()) + sum(m.size for m in mounts)
        if total <= bound:
            return result
        items: list[CacheRecord | CacheMount] = [*records, *mounts]
        items.sort(key=lambda item: item.last_used)
        gone: list[CacheRecord] = []
        for item in items:
            if total <= bound:
                break
            if isinstance(item, CacheMount):
                remove_tree(item.path)
                total -= item.size
                result.reclaimed += item.size
                continue
            gone.append(item)
            users[item.holds] -= 1
            if users[item.holds] == 0:       # a blob shared by entries goes with the last
                total -= sizes[item.holds]
        remove_records(gone, layout.root / "gc-roots")
        result.keys = [r.key for r in gone]
        # The unpacked snapshots of what went (and of anything else no image, container or
        # lazy entry uses: a derived cache, unpacked again when needed) go too, as prune
        # removes them; a lazy entry's snapshot goes with its last entry.
        store = SnapshotStore(root / "snapshots")
        evicted = {r.key for r in gone}
        kept = _image_chains(_images(layout)) | _lazy_chains([r for r in records if r.key not in evicted])
        lazy_gone = {store.path(c).name: sizes[c] for c in _lazy_chains(gone) - kept}
        for use in snapshot_uses(store, kept, root / "containers"):
            if not use.used:
                remove_snapshot(use)
                result.reclaimed += lazy_gone.get(use.name, 0)
        freed = layout.collect()
        result.reclaimed += sum(sizes.get(str(d), 0) for d in freed)
    return result
