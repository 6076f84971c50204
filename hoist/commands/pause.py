"""``hoist pause``: freeze every process of each container (cgroup freezer)."""

from __future__ import annotations

import argparse

from hoist.commands._each_container import for_each_container


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    return for_each_container(args.containers, lambda rt, c: rt.pause(c))
