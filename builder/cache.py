"""The build cache: what a step produced, keyed by everything that decides its result.

Keys (sha256 of a canonical JSON document, see ``builder.execute``):

- RUN: the parent chain id and the full definition: argv (SHELL included), env with the
  declared ARGs, workdir, user, network, the mounts' definitions (never a cache mount's or a
  secret's contents);
- COPY/ADD: the parent chain id, a content digest of the selected files (paths, types, modes,
  owners, link targets, contents; never mtimes) and the instruction's options;
- WORKDIR's mkdir: the parent chain id, the path and the user;
- FROM: the base's resolved manifest digest (the chain of its layers follows from it).

Metadata-only instructions (ENV, LABEL, CMD...) are not steps: they change no key after them
except through what a RUN really sees (its env, user, workdir, shell).

Every key carries ``KEY_VERSION``: it is hashed into the key and prefixes its name
(``v2-<hex>``). A hoist whose key derivation (the documents above, what they hold, their
encoding) differs from an earlier one's bumps it, so an entry an older hoist wrote is never a hit
for a step it would now describe differently; the old entries are simply never looked up
again (their names say which version wrote them).

Layout: ``<cache>/build/<key>.json`` holds ``{"layer": {digest, diff_id, size, media_type, created}}``
(``created``: when the step first made the layer; it dates the image as BuildKit's does);
each is written atomically (temp file, fsync, rename), so two builds at once never see half an
entry and the last writer wins with an equal answer. The layer blob of every entry is a GC root
of the local image store: ``<images>/gc-roots/build-<key>`` lists it (``hoist rmi``'s gc keeps
it).

A lazy entry (a step of a stage no output of its build needed) has no blob: ``digest`` is
empty, ``size`` is its tar's length and ``snapshot`` the chain id of the snapshot that holds
the layer. It is a hit only while that snapshot exists; the snapshot is kept for it as a gc
root keeps a blob (``hoist.disk_usage``), and the blob is made from it when an output needs
it (``BuildBackend.with_blobs``), the entry then rewritten with the blob.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.fsutil import atomic_write, private_dir

if TYPE_CHECKING:
    from builder.dispatch import LayerRef

_CHAIN_ID = re.compile(r"sha256:[0-9a-f]{64}")

# Bump when what goes into a key, or how it is encoded, changes (see the module doc).
KEY_VERSION = 2


def cache_key(doc: dict[str, Any], version: int = KEY_VERSION) -> str:
    """The key of a step described by ``doc``: ``v<version>-<sha256 hex>``, the version hashed
    in as well as shown."""
    body = json.dumps({"key_version": version, "step": doc}, sort_keys=True, separators=(",", ":"))
    return f"v{version}-" + hashlib.sha256(body.encode()).hexdigest()


class BuildCache:
    def __init__(self, cache_dir: str | os.PathLike[str], gc_roots: str | os.PathLike[str]) -> None:
        self.root = Path(cache_dir) / "build"
        self.gc_roots = Path(gc_roots)
        self.written = 0            # entries this process added (the cache grew: bound it)
        self.used: set[str] = set()  # keys this build found or wrote (the build memo's entries)

    def entry(self, key: str) -> tuple[LayerRef, str | None] | None:
        """The entry's layer, and for a lazy one (no blob: ``LayerRef.lazy``) the chain id of
        the snapshot that holds it; None when there is no entry or it is damaged."""
        from builder.dispatch import LayerRef     # not at import: mark_used serves the build memo

        try:
            doc = json.loads((self.root / f"{key}.json").read_bytes())
            layer = doc["layer"]
            created = layer.get("created")
            found = LayerRef(str(layer["digest"]), str(layer["diff_id"]), int(layer["size"]),
                             str(layer["media_type"]), created=created if isinstance(created, str) else None)
            snapshot = layer.get("snapshot") if found.lazy else None
            if found.lazy and not (isinstance(snapshot, str) and _CHAIN_ID.fullmatch(snapshot)):
                return None      # a damaged entry: a miss (and never a path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return found, snapshot

    def put(self, key: str, layer: LayerRef, snapshot: str | None = None) -> None:
        """Record ``layer`` as what the step ``key`` made; a lazy layer needs ``snapshot``, the
        chain id of the snapshot that holds it (the entry is a hit only while that exists)."""
        if layer.lazy and not snapshot:
            raise ValueError("a lazy layer's cache entry needs its snapshot")
        private_dir(self.root.parent)
        private_dir(self.root)
        self.gc_roots.mkdir(parents=True, exist_ok=True)
        root = self.gc_roots / f"build-{key}"
        doc: dict[str, Any] = {"layer": {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size,
                                         "media_type": layer.media_type}}
        if layer.lazy:
            doc["layer"]["snapshot"] = snapshot
        else:
            # The root first: a blob a cache entry names is never collectable.
            atomic_write(root, (layer.digest + "\n").encode(), durable=False)
        if layer.created:
            doc["layer"]["created"] = layer.created
        atomic_write(self.root / f"{key}.json", json.dumps(doc, sort_keys=True).encode(), durable=False)
        if layer.lazy:
            root.unlink(missing_ok=True)   # an older entry's blob, no longer named by this key
        self.written += 1
        self.used.add(key)


# BuildKit's default: the build cache keeps to 10 % of the disk it is on.
DEFAULT_BOUND_PERCENT = 10
BOUND_ENV = "HOIST_BUILD_CACHE_MAX"


def build_cache_bound(root: Path) -> int | None:
    """The bytes the build cache (entries' layer blobs and cache mounts) may hold: ``$HOIST_BUILD_
    CACHE_MAX`` (a size as ``--keep-storage`` reads it, or ``none`` for no bound), else 10 % of the
    filesystem ``root`` is on. Raises PruneError for a value that is neither."""
    text = os.environ.get(BOUND_ENV)
    if text is not None and text.strip():
        if text.strip().lower() == "none":
            return None
        from builder.prune import PruneError, parse_size     # only when set: a build imports little

        try:
            return parse_size(text)
        except PruneError as e:
            raise PruneError(f"{BOUND_ENV}: {e}") from None
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return st.f_blocks * st.f_frsize * DEFAULT_BOUND_PERCENT // 100


def mark_used(entry: Path) -> None:
    """A cache hit: the entry's mtime is its last use (for least-recently-used pruning)."""
    try:
        os.utime(entry)
    except OSError:
        pass                     # a read-only or vanished entry still gave its answer
