"""``hoist rm``: remove stopped containers (running ones too with ``-f``)."""

from __future__ import annotations

import argparse

from hoist.commands._each_container import for_each_container


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    parser.add_argument("-v", "--volumes", action="store_true", help="remove its anonymous volumes too")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    return for_each_container(args.containers,
                              lambda rt, c: rt.remove(c, force=args.force, anonymous_volumes=args.volumes))
