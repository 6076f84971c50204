"""``hoist kill``: send a signal (default SIGKILL) to running containers."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--signal", default="KILL", help="signal name or number (default KILL)")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime
    from runtime.spec import parse_signal

    runtime = Runtime(paths.hoist_root())
    failed = []
    try:
        sig = parse_signal(args.signal)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    for ref in args.containers:
        try:
            runtime.kill(runtime.containers.get(ref), sig)
            print(ref)
        except RuntimeFailure as e:
            failed.append(str(e))
    if failed:
        raise UserError("; ".join(failed))
    return 0
