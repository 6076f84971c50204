"""``hoist container prune``: remove every stopped container (docker's ``container prune``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    prune = sub.add_parser("prune", help="remove all stopped containers")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask (hoist never asks)")
    prune.add_argument("--filter", action="append", default=[], metavar="until=TIME|label=K[=V]")


def run(args: argparse.Namespace) -> int:
    from hoist.commands import prune

    gone, freed = prune.prune_containers(args.filter)
    prune.report("Deleted Containers", gone)
    prune.total(freed)
    return 0
