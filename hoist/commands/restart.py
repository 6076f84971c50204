"""``hoist restart``: stop (stop signal, SIGKILL after ``-t``) and start each container."""

from __future__ import annotations

import argparse

from hoist.commands._each_container import for_each_container


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-t", "--time", type=float, default=10.0, help="seconds before SIGKILL (default 10)")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    return for_each_container(args.containers, lambda rt, c: rt.restart(c, args.time))
