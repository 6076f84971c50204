"""Which unpacked snapshots (``$HOIST_ROOT/snapshots``) nothing uses, for ``hoist builder prune``
and ``hoist system df``.

A snapshot is a cache of a layer blob unpacked onto its chain: removing one costs an unpack
the next time it is needed, never data, as long as the blob is kept. Kept are the chains of
every local image (passed in as chain ids), every snapshot a container's root names (its
overlay's lowerdirs, or the flattened one; a container whose spec cannot be read keeps
everything, since what it needs is unknown) and the store's own ``empty`` and ``.locks``.
Running builds are not read here: the caller holds the image store's gc lock exclusively,
which a build holds shared for as long as it runs.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from runtime.snapshots import SnapshotStore, remove_tree

_KEEP = frozenset({"empty", ".locks"})
_LOWERDIR = re.compile(r"(?:^|,)lowerdir=([^,]*)")


@dataclass(frozen=True)
class SnapshotUse:
    name: str
    path: Path
    used: bool


def container_snapshots(containers_root: Path) -> set[str] | None:
    """Snapshot names the containers' roots use; None when a container's spec is unreadable."""
    names: set[str] = set()
    try:
        entries = list(os.scandir(containers_root))
    except FileNotFoundError:
        return names
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            doc = json.loads((Path(entry.path) / "config.json").read_text())
        except FileNotFoundError:
            continue                          # being created or removed: it has no root yet
        except (OSError, ValueError):
            return None
        rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
        if not isinstance(rootfs, dict):
            continue
        match = _LOWERDIR.search(str(rootfs.get("options", "")))
        if match:
            names.update(Path(p).name for p in match.group(1).split(":") if p)
    return names


def snapshot_uses(store: SnapshotStore, image_chains: set[str], containers_root: Path) -> list[SnapshotUse]:
    """Every snapshot directory and whether something uses it."""
    wanted = {store.path(chain_id).name for chain_id in image_chains}
    by_containers = container_snapshots(containers_root)
    everything = by_containers is None
    wanted |= by_containers or set()
    out = []
    try:
        entries = sorted(os.scandir(store.root), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name in _KEEP or entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        used = everything or entry.name in wanted
        out.append(SnapshotUse(entry.name, Path(entry.path), used))
    return out


def remove_snapshot(use: SnapshotUse) -> None:
    remove_tree(use.path)
