"""``hoist wait``: block until each container's command exits; print its exit code."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime

    runtime = Runtime(paths.hoist_root())
    failed = []
    for ref in args.containers:
        try:
            print(runtime.wait_container(runtime.containers.get(ref)), flush=True)
        except RuntimeFailure as e:
            failed.append(str(e))
    if failed:
        raise UserError("; ".join(failed))
    return 0
