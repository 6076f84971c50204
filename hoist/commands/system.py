"""``hoist system prune``: stopped containers, then dangling images (``-a``: all unused ones),
and with ``--volumes`` the unused anonymous volumes, as docker's ``system prune``. (hoist's build
cache is pruned by its own bounds, not here.)"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    prune = sub.add_parser("prune", help="remove stopped containers, dangling images (and volumes)")
    prune.add_argument("-a", "--all", action="store_true", help="every image no container uses")
    prune.add_argument("--volumes", action="store_true", help="unused anonymous volumes too")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask (hoist never asks)")
    prune.add_argument("--filter", action="append", default=[], metavar="until=TIME|label=K[=V]")


def run(args: argparse.Namespace) -> int:
    from hoist.commands import prune

    containers, freed = prune.prune_containers(args.filter)
    prune.report("Deleted Containers", containers)
    if args.volumes:
        volumes, more = prune.prune_volumes(False, args.filter)
        prune.report("Deleted Volumes", volumes)
        freed += more
    images, more = prune.prune_images(args.all, args.filter)
    prune.report("Deleted Images", images)
    prune.total(freed + more)
    return 0
