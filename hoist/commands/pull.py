"""hoist pull REF: fetch an image (by tag or digest) into the local image store."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from hoist import paths
from hoist.config import local_store, open_client, parse_platform, parse_ref, user_errors
from hoist.errors import UserError
from hoist.progress import ProgressDisplay
from registry.client.pull import DEFAULT_CONCURRENCY, PullResult, pull
from runtime.errors import RuntimeFailure
from runtime.prepare import ChainPreparer
from runtime.snapshots import SnapshotStore
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
    with user_errors():
        async with open_client(ref.domain, args.insecure, max(args.max_concurrent_downloads, 1)) as client:
            result = await pull_and_prepare(
                layout, lambda on_image, on_blob, before_tag: pull(
                    client, ref, layout, platform=platform,
                    progress=(lambda e: None) if args.quiet else display,
                    concurrency=max(args.max_concurrent_downloads, 1),
                    on_image=on_image, on_blob=on_blob, before_tag=before_tag), ref.familiar())
    display.close()
    if not args.quiet:
        print(f"Digest: {result.named.digest}")
        state = "Downloaded newer image" if result.downloaded else "Image is up to date"
        print(f"Status: {state} for {ref.familiar()}")
    print(ref.familiar() if not args.quiet else str(ref))
    return 0


OnImage = Callable[[Manifest], None]
OnBlob = Callable[[Descriptor], None]
BeforeTag = Callable[[], Awaitable[None]]


async def pull_and_prepare(layout: ImageLayout, start: Callable[[OnImage, OnBlob, BeforeTag], Awaitable[PullResult]],
                           name: str) -> PullResult:
    """Run ``start(on_image, on_blob, before_tag)`` (a pull) while unpacking each layer into its snapshot as
    soon as its blob is verified (runtime.prepare): the first ``hoist run`` unpacks nothing.
    An unpack failure (a layer runtime/unpack.py refuses) cancels the downloads and fails the pull."""
    store = SnapshotStore(paths.snapshots_dir())
    tasks: list[asyncio.Task[object]] = []
    preparer: list[ChainPreparer] = []

    def on_image(image: Manifest) -> None:
        if os.geteuid() != 0:
            return  # only root runs containers (and can make the whiteouts' device nodes)
        if image.config is None or any(layer.urls for layer in image.layers):
            return  # foreign layers are not downloaded: the first run unpacks what it finds
        prep = ChainPreparer(store, lambda d: layout.blob_path(d), str(image.config.digest),
                             [str(layer.digest) for layer in image.layers])
        preparer.append(prep)
        tasks.append(asyncio.ensure_future(prep.run()))

    def on_blob(desc: Descriptor) -> None:
        if preparer:
            preparer[0].stored(str(desc.digest))

    async def before_tag() -> None:
        # The image is tagged only once its snapshots are ready: a refused layer fails the pull.
        for task in tasks:
            await asyncio.shield(task)

    pulling: asyncio.Task[PullResult] = asyncio.ensure_future(start(on_image, on_blob, before_tag))
    try:
        while True:
            waiting: set[asyncio.Future[object]] = {pulling, *tasks}  # type: ignore[arg-type]
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = task.exception()
                if isinstance(error, RuntimeFailure):
                    raise UserError(f"cannot unpack {name}: {error}") from None
                if error is not None:
                    raise error
            if pulling.done() and all(t.done() for t in tasks):
                return pulling.result()
    finally:
        for task in [pulling, *tasks]:
            if not task.done():
                task.cancel()
        for task in [pulling, *tasks]:
            try:
                await task
            except BaseException:
                pass


def pull_for_run(image: str, policy: str) -> None:
    """The pull of ``hoist run --pull POLICY`` once the policy says to (``run.pull_by_policy``:
    ``always``, or ``missing`` and the image is not local). Progress goes to stderr."""
    if policy == "missing":
        print(f"Unable to find image '{image}' locally", file=sys.stderr, flush=True)
    ref = parse_ref(image)

    async def go() -> PullResult:
        layout = local_store()
        with user_errors():
            async with open_client(ref.domain, False, DEFAULT_CONCURRENCY) as client:
                return await pull_and_prepare(
                    layout, lambda on_image, on_blob, before_tag: pull(
                        client, ref, layout, progress=lambda e: None,
                        on_image=on_image, on_blob=on_blob, before_tag=before_tag), ref.familiar())

    try:
        result = asyncio.run(go())
    except UserError as e:
        local = "is not in the local image store" if policy == "missing" else "was not pulled"
        raise UserError(f"no image {image!r}: it {local} and pulling it failed: {e}", exit_code=125) from None
    state = "Downloaded newer image" if result.downloaded else "Image is up to date"
    print(f"Digest: {result.named.digest}\nStatus: {state} for {ref.familiar()}", file=sys.stderr, flush=True)
