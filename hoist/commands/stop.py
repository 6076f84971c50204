"""``hoist stop``: send each container its stop signal, then SIGKILL after a grace period."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-t", "--time", type=float, default=10.0, help="seconds before SIGKILL (default 10)")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime

    runtime = Runtime(paths.hoist_root())
    failed = []
    for ref in args.containers:
        try:
            runtime.stop(runtime.containers.get(ref), args.time)
            print(ref)
        except RuntimeFailure as e:
            failed.append(str(e))
    if failed:
        raise UserError("; ".join(failed))
    return 0
