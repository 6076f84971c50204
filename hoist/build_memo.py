"""``hoist build``'s side of the build memo (``builder.memo``): which invocations may use it,
what it is keyed by, how a hit is answered and what a finished build records.

A hit checks, under the store's lease (no gc between the check and the tags): the context as
walked now, each base image still named as it was, every blob of the image in the store and
every cache entry the build used still there. Then it tags the image under each ``-t`` and
prints what a build whose every step was cached prints: the build checks, each step CACHED,
the image id. Anything else is a miss, and the build runs as it would have.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.memo import ContextWalk, MemoStore, TooLarge, memo_key, walk_context
from hoist.paths import hoist_root
from storage.errors import StorageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from builder.dockerignore import PatternMatcher
    from builder.progress import Progress
    from storage.layout import ImageLayout
    from storage.manifest import Descriptor

# A context found too large to memoise is not walked again for the same key for this long.
TOO_LARGE_SECONDS = 24 * 3600


def memoisable(args: argparse.Namespace) -> bool:
    """Whether this invocation's result can come from (and go into) the memo: a plain build
    into the local store, with the cache, and no input the memo does not see."""
    return not (args.check or args.no_cache or args.pull or args.secrets or args.ssh or args.outputs or args.push
                or args.cache_from or args.cache_to)


class MemoRun:
    """One memoisable build: its key, and the context as it was before the build began."""

    def __init__(self, key: str, context: Path | None, ignore: PatternMatcher | None) -> None:
        self.key = key
        self.context = context
        self.ignore = ignore
        self.store = MemoStore(hoist_root() / "cache" / "build" / "memo")
        self._walk: ContextWalk | None = None
        self._walked = False
        self.too_large = False

    @classmethod
    def open(cls, args: argparse.Namespace, data: bytes, context: Path | None, build_args: dict[str, str],
             ignore: PatternMatcher | None, ignore_bytes: bytes | None) -> MemoRun | None:
        if not memoisable(args):
            return None
        try:
            root = context.resolve() if context is not None else None
        except OSError:
            return None
        inputs: dict[str, Any] = {
            "context": os.fspath(root) if root is not None else None,
            "dockerfile": hashlib.sha256(data).hexdigest(),
            "ignore": hashlib.sha256(ignore_bytes).hexdigest() if ignore_bytes is not None else None,
            "target": args.target, "build_args": build_args, "platform": args.platform, "labels": args.labels,
            "format": args.format, "compression": args.compression, "network": args.network,
            "env": {k: v for k, v in os.environ.items() if k.startswith("HOIST_") or k == "SOURCE_DATE_EPOCH"},
            "uid": os.getuid(),
        }
        return cls(memo_key(inputs), root, ignore)

    def walk(self) -> ContextWalk | None:
        """The context as it is now, walked once (None: it cannot be memoised)."""
        if not self._walked and not self.too_large:
            self._walked = True
            try:
                self._walk = walk_context(self.context, self.ignore)
            except TooLarge:
                self.too_large = True
                self.store.save(self.key, {"too_large": True})
        return self._walk

    # -- a hit ------------------------------------------------------------------------------------
    def answer(self, name: str, tags: list[str], progress: Callable[[], Progress]) -> str | None:
        """The image id, when the memo answers this build (the tags are then set and the steps
        shown through the display ``progress`` makes); None when the build must run."""
        doc = self.store.load(self.key)
        if doc is None:
            return None
        if doc.get("too_large") is True:
            self.too_large = time.time() - self.store.written(self.key) < TOO_LARGE_SECONDS
            return None
        memo = _Memo.read(doc)
        walked = self.walk() if memo is not None else None
        if memo is None or walked is None or walked.digest(memo.taken) != memo.context:
            return None
        from hoist.config import local_store

        layout = local_store()
        from runtime.unsynced import recover

        recover(hoist_root() / "snapshots")     # what a crash cut short is no answer (runtime.unsynced)
        try:
            with layout.lease():
                manifest = memo.still_valid(layout, hoist_root() / "cache" / "build", hoist_root() / "snapshots")
                if manifest is None:
                    self.store.forget(self.key)
                    return None
                for tag in tags:
                    layout.tag(tag, manifest)
        except (OSError, ValueError, StorageError):
            return None             # the build runs, and reports what is wrong as it would
        self.store.used(self.key)
        from builder.progress import replay

        for warning in memo.warnings:
            print(f"{name}: warning: {warning}", file=sys.stderr)
        display = progress()
        replay(display, memo.steps)
        display.close()
        for warning in memo.late:
            print(f"{name}: warning: {warning}", file=sys.stderr)
        return memo.image_id

    # -- a finished build -------------------------------------------------------------------------
    def record(self, layout: ImageLayout, *, images: list[tuple[str, str]], entries: set[str],
               snapshots: set[str], manifest: Descriptor, config: Descriptor, layers: list[str], image_id: str,
               steps: list[list], warnings: list[str], late: list[str]) -> None:
        """Keep the answer of a build that succeeded, when each base it resolved is named
        exactly so in the store."""
        walked = self._walk
        digest = walked.digest(walked.started_ns) if walked is not None else None
        if walked is None or digest is None:
            return
        named = []
        for ref, resolved in images:
            desc = layout.named(ref)
            if desc is None:
                return          # found by another rule (a digest, a short id): not memoised
            named.append([ref, str(desc.digest), resolved])
        self.store.save(self.key, {
            "context": digest, "taken": walked.started_ns, "images": named, "entries": sorted(entries),
            "snapshots": sorted(s.removeprefix("sha256:") for s in snapshots),
            "blobs": [str(manifest.digest), str(config.digest), *layers], "manifest": manifest.to_json(),
            "image_id": image_id, "steps": steps, "warnings": warnings, "late": late,
        })


class _Memo:
    """A memo's fields, checked for their types (a damaged memo is a miss, never an error)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.context: str = doc["context"]
        self.taken: int = doc["taken"]
        self.images: list[list[str]] = doc["images"]
        self.entries: list[str] = doc["entries"]
        self.snapshots: list[str] = doc["snapshots"]      # what lazy entries hold (builder.cache)
        self.blobs: list[str] = doc["blobs"]
        self.manifest: dict[str, Any] = doc["manifest"]
        self.image_id: str = doc["image_id"]
        self.steps: list[list] = doc["steps"]
        self.warnings: list[str] = doc["warnings"]
        self.late: list[str] = doc["late"]

    @classmethod
    def read(cls, doc: dict[str, Any]) -> _Memo | None:
        try:
            memo = cls(doc)
        except (KeyError, TypeError):
            return None
        strings = [memo.context, memo.image_id, *memo.entries, *memo.snapshots, *memo.blobs, *memo.warnings,
                   *memo.late]
        ok = (isinstance(memo.taken, int) and isinstance(memo.manifest, dict)
              and all(isinstance(v, list) for v in (memo.images, memo.entries, memo.snapshots, memo.blobs,
                                                     memo.steps, memo.warnings, memo.late))
              and all(isinstance(v, str) for v in strings)
              and all(isinstance(i, list) and len(i) == 3 and all(isinstance(v, str) for v in i) for i in memo.images)
              and all(isinstance(s, list) and len(s) == 3 and all(isinstance(v, str) for v in s) for s in memo.steps)
              and all("/" not in key and key not in ("", ".", "..") for key in memo.entries + memo.snapshots))
        return memo if ok else None

    def still_valid(self, layout: ImageLayout, cache: Path, snapshots: Path) -> Descriptor | None:
        """The image's manifest descriptor, when every base is still named as it was, every
        blob is in the store and every cache entry still exists, a lazy one's snapshot too
        (those are then marked used, as a cached build marks what it hits)."""
        from builder.cache import mark_used
        from storage.manifest import Descriptor

        try:
            for ref, named, resolved in self.images:
                now = layout.named(ref)
                if now is None or str(now.digest) != named or not layout.has_blob(resolved):
                    return None
            if not all(layout.has_blob(d) for d in self.blobs):
                return None
            manifest = Descriptor.from_json(self.manifest, "the build memo")
        except StorageError:
            return None
        if str(manifest.digest) not in self.blobs:
            return None
        paths = [cache / f"{key}.json" for key in self.entries]
        if not all(p.is_file() for p in paths) or not all((snapshots / s).is_dir() for s in self.snapshots):
            return None
        for p in paths:
            mark_used(p)
        return manifest
