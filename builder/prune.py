"""The build cache's accounting and pruning (``hoist builder prune``, ``hoist system df``).

A cache record is one entry of ``builder.cache`` (``<root>/cache/build/<key>.json``, its layer
kept by ``images/gc-roots/build-<key>``); its last use is the entry file's mtime (the executor
touches it on every hit). Cache mounts are the directories under ``<root>/cache/mounts/`` (or
``cachemounts/``: see MOUNT_DIRS).

Pruning removes an entry file first and its gc root second, so a record is never half there
in the dangerous direction (a root without an entry only keeps a blob one gc longer). The
blobs themselves go in the image store's gc afterwards, which deletes only what no ref and no
remaining root reaches. The caller holds the image store's gc lock exclusively while it
prunes: running builds hold it shared, so nothing a running build uses is evicted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from builder.cache import _CHAIN_ID, BuildCache
from builder.dispatch import LayerRef
from builder.errors import BuilderError
from storage.fsutil import atomic_write

CONTEXT_HASHES = "context-hashes.json"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


class PruneError(BuilderError):
    """A prune option hoist cannot use."""


def parse_size(text: str) -> int:
    """Bytes in ``text`` as docker's ``--keep-storage`` reads it (go-units RAMInBytes: 512, 10k,
    1.5GB, 2GiB; multiples of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise PruneError(f"invalid size {text!r}: expected a number with an optional unit (k, m, g, t)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass(frozen=True)
class CacheRecord:
    key: str
    layer: LayerRef
    entry: Path
    last_used: float
    size: int                 # the layer blob's bytes in the store (0 if it is gone); lazy: its tar's
    snapshot: str | None = None   # a lazy entry's snapshot (chain id): what holds its layer

    @property
    def holds(self) -> str:
        """What the entry keeps on disk: its blob's digest, or a lazy one's snapshot."""
        return self.snapshot or self.layer.digest


def cache_records(root: Path, blob_path: Callable[[str], Path]) -> list[CacheRecord]:
    """Every build cache entry under ``root`` (``$HOIST_ROOT``); ``blob_path(digest)`` is the
    image store's path of a blob.

    Entries are read through ``RECORDS_INDEX``, what the last call read from each, kept under
    the entry file's inode, ctime and size: an entry is replaced by rename (a new inode) and
    touched on each hit (a new ctime), so only new and used entries are opened again. Reading
    every entry cost a build that grew the cache ~0.35 ms an entry (``bound_build_cache``:
    ~0.35 s on a host with a thousand)."""
    cache = BuildCache(root / "cache", root / "images" / "gc-roots")
    records = []
    base = root / "cache" / "build"
    try:
        scan = sorted(os.scandir(base), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    index = _read_index(base)
    seen: dict[str, list[object]] = {}
    for item in scan:
        name = item.name
        if not name.endswith(".json") or name == CONTEXT_HASHES or name.startswith("."):
            continue
        key = name[:-len(".json")]
        try:
            st = item.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        stamp: list[object] = [st.st_ino, st.st_ctime_ns, st.st_size]
        known = index.get(key)
        found = _from_index(known[3]) if isinstance(known, list) and len(known) == 4 and known[:3] == stamp \
            else _UNKNOWN
        if found is _UNKNOWN:
            found = cache.entry(key)
        seen[key] = stamp + [_for_index(found)]
        if found is None or found is _UNKNOWN:
            continue
        assert isinstance(found, tuple)
        layer, snapshot = found
        entry = base / name
        if snapshot is not None:
            records.append(CacheRecord(key, layer, entry, st.st_mtime, layer.size, snapshot))
            continue
        try:
            size = os.stat(blob_path(layer.digest)).st_size
        except (FileNotFoundError, ValueError):
            size = 0
        records.append(CacheRecord(key, layer, entry, st.st_mtime, size))
    if seen != index:
        with contextlib.suppress(OSError):      # only the next call's shortcut is lost
            atomic_write(base / RECORDS_INDEX, json.dumps(seen, separators=(",", ":")).encode(), durable=False)
    return records


RECORDS_INDEX = ".records-index"     # not *.json: never taken for an entry
_UNKNOWN = object()     # not in the index (read the entry)


def _read_index(base: Path) -> dict[str, object]:
    try:
        doc = json.loads((base / RECORDS_INDEX).read_bytes())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _for_index(found: object) -> dict[str, object] | None:
    if not isinstance(found, tuple):
        return None
    layer, snapshot = found
    return {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size, "media_type": layer.media_type,
            "created": layer.created, "snapshot": snapshot}


def _from_index(doc: object) -> object:
    """The entry ``_for_index`` recorded (None: not an entry); _UNKNOWN for anything else."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        return _UNKNOWN
    digest, diff_id, size, media_type = doc.get("digest"), doc.get("diff_id"), doc.get("size"), doc.get("media_type")
    created, snapshot = doc.get("created"), doc.get("snapshot")
    if not (isinstance(digest, str) and isinstance(diff_id, str) and type(size) is int and isinstance(media_type, str)
            and (created is None or isinstance(created, str))
            and (snapshot is None or (isinstance(snapshot, str) and _CHAIN_ID.fullmatch(snapshot)))):
        return _UNKNOWN     # as BuildCache.entry checks a lazy entry's snapshot: never a path
    layer = LayerRef(digest, diff_id, size, media_type, created=created)
    if (snapshot is not None) != layer.lazy:
        return _UNKNOWN
    return layer, snapshot


def select(records: Iterable[CacheRecord], *, everything: bool, in_use: set[str], until: float | None,
           keep_storage: int | None, now: float | None = None) -> list[CacheRecord]:
    """The records to remove: without ``everything`` only those whose layer no local image uses
    (docker's dangling cache); with ``until`` only those last used that many seconds ago or
    more; with ``keep_storage`` least recently used first, only while the cache holds more than
    that many bytes."""
    now = time.time() if now is None else now
    records = sorted(records, key=lambda r: r.last_used)
    candidates = [r for r in records
                  if (everything or r.holds not in in_use)
                  and (until is None or now - r.last_used >= until)]
    if keep_storage is None:
        return candidates
    total = cache_size(records)
    chosen: list[CacheRecord] = []
    for record in candidates:
        if total <= keep_storage:
            break
        chosen.append(record)
        total = cache_size([r for r in records if r not in chosen])
    return chosen


def cache_size(records: Iterable[CacheRecord]) -> int:
    """Bytes the records' blobs take (a blob several entries share counted once; a lazy entry's
    snapshot counted as its tar's length, which is its files' bytes and ~1 KiB a file more)."""
    return sum({r.holds: r.size for r in records}.values())


def remove_records(records: Iterable[CacheRecord], gc_roots: Path) -> None:
    for record in records:
        record.entry.unlink(missing_ok=True)
        (gc_roots / f"build-{record.key}").unlink(missing_ok=True)


@dataclass(frozen=True)
class CacheMount:
    path: Path
    size: int
    last_used: float


# Where RUN --mount=type=cache directories live: one child per cache (``mounts/<sha256 of id>``,
# or ``cachemounts/<sha256 of key>/`` holding that cache's instances).
MOUNT_DIRS = ("mounts", "cachemounts")


def cache_mounts(root: Path) -> list[CacheMount]:
    out = []
    for name in MOUNT_DIRS:
        try:
            entries = sorted(os.scandir(root / "cache" / name), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                out.append(CacheMount(Path(entry.path), tree_size(Path(entry.path)),
                                      entry.stat(follow_symlinks=False).st_mtime))
    return out


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def tree_size(path: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """Apparent bytes under ``path`` (``du -sb``'s count: each inode once, symlinks as their own
    length, nothing followed); iterative, so any depth."""
    seen = set() if seen is None else seen
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            continue
        seen.add(ident)
        total += st.st_size
        if stat.S_ISDIR(st.st_mode):
            try:
                stack.extend(Path(e.path) for e in os.scandir(current))
            except OSError:
                continue
    return total
