"""``hoist rm``: remove stopped containers (running ones too with ``-f``)."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime

    runtime = Runtime(paths.hoist_root())
    failed = []
    for ref in args.containers:
        try:
            runtime.remove(runtime.containers.get(ref), force=args.force)
            print(ref)
        except RuntimeFailure as e:
            failed.append(str(e))
    if failed:
        raise UserError("; ".join(failed))
    return 0
