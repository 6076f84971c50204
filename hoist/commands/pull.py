"""hoist pull REF: fetch an image (by tag or digest) into the local image store."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from hoist.config import local_store, open_client, parse_platform, parse_ref, user_errors
from hoist.progress import ProgressDisplay
from registry.client.pull import DEFAULT_CONCURRENCY, pull
from storage.errors import StorageError
from storage.layout import ImageLayout
from storage.manifest import Descriptor, Manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", metavar="REF", help="image to pull: NAME[:TAG] or NAME@DIGEST")
    parser.add_argument("--platform", help="os/arch[/variant] to pick from an index (default: this host's)")
    parser.add_argument("--insecure", action="store_true",
                        help="use plain HTTP or unverified HTTPS for this registry")
    parser.add_argument("--max-concurrent-downloads", type=int, default=DEFAULT_CONCURRENCY,
                        metavar="N", help=f"blobs downloaded at once (default {DEFAULT_CONCURRENCY})")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image name")


async def run(args: argparse.Namespace) -> int:
    ref = parse_ref(args.ref)
    platform = parse_platform(args.platform)
    layout = local_store()
    display = ProgressDisplay()
    if not args.quiet:
        print(f"{ref.tag or ref.digest}: Pulling from {ref.repository}", flush=True)
    preparer = SnapshotPreparer(layout) if SnapshotPreparer.wanted() else None
    try:
        with user_errors():
            async with open_client(ref.domain, args.insecure, max(args.max_concurrent_downloads, 1)) as client:
                result = await pull(client, ref, layout, platform=platform,
                                    progress=(lambda e: None) if args.quiet else display,
                                    concurrency=max(args.max_concurrent_downloads, 1),
                                    on_manifest=preparer.on_manifest if preparer else None,
                                    on_blob=preparer.on_blob if preparer else None)
    except BaseException:
        if preparer is not None:
            preparer.finish(wait=False)
        raise
    if preparer is not None:
        await asyncio.to_thread(preparer.finish, True)
    display.close()
    if not args.quiet:
        print(f"Digest: {result.named.digest}")
        state = "Downloaded newer image" if result.downloaded else "Image is up to date"
        print(f"Status: {state} for {ref.familiar()}")
    print(ref.familiar() if not args.quiet else str(ref))
    return 0


class SnapshotPreparer:
    """Unpack each layer into its snapshot as soon as it and the layers below it are downloaded
    (and verified), while the rest download, so the first ``run`` unpacks nothing. Only where
    the runtime can run (root) and for this host's platform. A pull is also for images never run
    here (artifacts whose layers are not tars): what cannot be unpacked is left as it was, and
    ``run`` reports it if it is ever run."""

    def __init__(self, layout: ImageLayout) -> None:
        import threading

        self.layout = layout
        self.cond = threading.Condition()
        self.present: set[str] = set()
        self.image: Manifest | None = None
        self.ended = False
        self.thread = threading.Thread(target=self._work, name="unpack", daemon=True)

    @staticmethod
    def wanted() -> bool:
        return os.geteuid() == 0

    def on_manifest(self, image: Manifest) -> None:
        with self.cond:
            self.image = image
        self.thread.start()

    def on_blob(self, desc: Descriptor) -> None:
        with self.cond:
            self.present.add(str(desc.digest))
            self.cond.notify_all()

    def finish(self, wait: bool) -> None:
        """The download ended: when it succeeded (``wait``), unpack what is left and return; when
        it failed, the unpacking stops at the first layer that is missing (a layer being unpacked
        at exit leaves a temporary folder the next unpack removes)."""
        with self.cond:
            self.ended = True
            self.cond.notify_all()
        if wait and self.thread.is_alive():
            self.thread.join()

    def _wait_for(self, digest: str) -> bool:
        with self.cond:
            while digest not in self.present:
                if self.ended:
                    return False
                self.cond.wait()
            return True

    def _work(self) -> None:
        from hoist import paths
        from runtime.errors import RuntimeFailure
        from runtime.snapshots import SnapshotStore, chain_ids
        from storage.platform import Platform
        from storage.tarlimits import Budget

        image = self.image
        if image is None or image.config is None or not self._wait_for(str(image.config.digest)):
            return
        try:
            config = self.layout.config(image)
            if not Platform.host().matches(Platform.of(config)):
                return
            diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
            if len(diff_ids) != len(image.layers):
                return
            store, budget = SnapshotStore(paths.snapshots_dir()), Budget()
            lowers: list[Path] = []
            for layer, diff_id, chain_id in zip(image.layers, diff_ids, chain_ids(diff_ids), strict=True):
                if not self._wait_for(str(layer.digest)):
                    return
                lowers.append(store.ensure(self.layout.blob_path(layer.digest), diff_id, chain_id,
                                           list(lowers), budget))
        except (RuntimeFailure, StorageError, ValueError, TypeError, OSError):
            return
