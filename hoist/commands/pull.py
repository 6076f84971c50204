"""hoist pull REF: fetch an image (by tag or digest) into the local image store."""

from __future__ import annotations

import argparse
import asyncio
import os

from hoist.config import local_store, open_client, parse_platform, parse_ref, user_errors
from hoist.progress import ProgressDisplay
from registry.client.pull import DEFAULT_CONCURRENCY, pull


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
    with user_errors():
        async with open_client(ref.domain, args.insecure, max(args.max_concurrent_downloads, 1)) as client:
            result = await pull(client, ref, layout, platform=platform,
                                progress=(lambda e: None) if args.quiet else display,
                                concurrency=max(args.max_concurrent_downloads, 1))
    display.close()
    await asyncio.to_thread(_prepare_snapshots, str(ref))
    if not args.quiet:
        print(f"Digest: {result.named.digest}")
        state = "Downloaded newer image" if result.downloaded else "Image is up to date"
        print(f"Status: {state} for {ref.familiar()}")
    print(ref.familiar() if not args.quiet else str(ref))
    return 0


def _prepare_snapshots(ref: str) -> None:
    """Unpack the pulled layers into the runtime's snapshots now (after the download), so the
    first ``run`` starts as fast as later ones. Only where the runtime can run (root). A pull
    is also for images that are never run here (other platforms, artifacts whose layers are not
    tars): what cannot be unpacked is left as it was, and ``run`` reports it if it is ever run."""
    if os.geteuid() != 0:
        return
    from hoist import paths
    from runtime.errors import RuntimeFailure
    from runtime.image import load_image
    from runtime.snapshots import SnapshotStore

    try:
        image = load_image(paths.images_dir(), ref)
        SnapshotStore(paths.snapshots_dir()).ensure_chain(list(image.layer_blobs), list(image.diff_ids))
    except RuntimeFailure:
        return
