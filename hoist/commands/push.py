"""hoist push REF: send a local image to the registry its name points at. Uncompressed layers
(from ``docker save X | hoist load``) are gzipped first (``storage.archive.compress_layers``)."""

from __future__ import annotations

import argparse
import asyncio

from hoist.config import local_store, open_client, parse_platform, parse_ref, user_errors
from hoist.progress import ProgressDisplay
from registry.client.push import DEFAULT_CONCURRENCY, push
from storage.archive import compress_layers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", metavar="REF", help="the local image's name, which says where it goes")
    parser.add_argument("--platform", help="with a partly pulled index: which platform's image to push")
    parser.add_argument("--insecure", action="store_true",
                        help="use plain HTTP or unverified HTTPS for this registry")
    parser.add_argument("--max-concurrent-uploads", type=int, default=DEFAULT_CONCURRENCY, metavar="N",
                        help=f"blobs uploaded at once (default {DEFAULT_CONCURRENCY})")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the pushed digest")


async def run(args: argparse.Namespace) -> int:
    ref = parse_ref(args.ref)
    layout = local_store()
    with user_errors():
        _, desc = layout.find(args.ref)
        if not ref.digest:
            # Uncompressed layers (a docker-archive's) go up gzipped, as docker pushes them;
            # a push by digest must send the manifest it names, as it is.
            with layout.lease():
                compressed = await asyncio.to_thread(compress_layers, layout, desc)
            desc = compressed or desc
    display = ProgressDisplay()
    if not args.quiet:
        print(f"The push refers to repository [{ref.repository}]", flush=True)
    with user_errors():
        async with open_client(ref.domain, args.insecure) as client:
            result = await push(client, ref, layout, desc, progress=(lambda e: None) if args.quiet else display,
                                concurrency=max(args.max_concurrent_uploads, 1),
                                platform=parse_platform(args.platform))
    display.close()
    if args.quiet:
        print(result.digest)
    else:
        print(f"{ref.tag or 'latest'}: digest: {result.digest} size: {result.size}")
    return 0
