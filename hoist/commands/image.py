"""``hoist image prune``: remove dangling images (``-a``: every image no container uses)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    prune = sub.add_parser("prune", help="remove untagged images (-a: all images no container uses)")
    prune.add_argument("-a", "--all", action="store_true", help="every image no container uses")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask (hoist never asks)")
    prune.add_argument("--filter", action="append", default=[], metavar="until=TIME|label=K[=V]")


def run(args: argparse.Namespace) -> int:
    from hoist.commands import prune

    lines, freed = prune.prune_images(args.all, args.filter)
    prune.report("Deleted Images", lines)
    prune.total(freed)
    return 0
