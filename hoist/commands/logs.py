"""``hoist logs``: print a container's output (``-f`` follows it until the container exits)."""

from __future__ import annotations

import argparse
import sys
import time

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    parser.add_argument("container", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    try:
        container = ContainerStore(paths.containers_dir()).get(args.container)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    out = sys.stdout.buffer
    try:
        f = open(container.log_path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        while True:
            chunk = f.read(1 << 16)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not args.follow or not container.path.exists() or container.status()[0] != "running":
                # One last read: the container may have written just before it exited.
                out.write(f.read())
                out.flush()
                return 0
            time.sleep(0.1)
