"""``hoist kill``: send a signal (default SIGKILL) to running containers."""

from __future__ import annotations

import argparse

from hoist.commands._each_container import for_each_container
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--signal", default="KILL", help="signal name or number (default KILL)")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.spec import parse_signal

    try:
        sig = parse_signal(args.signal)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    return for_each_container(args.containers, lambda rt, c: rt.kill(c, sig))
