"""``hoist system df``: what the local state holds (images, containers, snapshots, build cache,
cache mounts: count, active, size, reclaimable), as ``docker system df``; the counting is
``hoist/disk_usage.py``'s.

``hoist system prune``: stopped containers, then dangling images (``-a``: all unused ones), and
with ``--volumes`` the unused anonymous volumes, as docker's ``system prune``. (The build cache
is pruned by ``hoist builder prune`` and its own bounds, not here.)"""

from __future__ import annotations

import argparse
import json

from hoist.paths import hoist_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    df = sub.add_parser("df", help="show disk usage")
    df.add_argument("--format", choices=("table", "json"), default="table",
                    help="json: one object per line, sizes in bytes")
    prune = sub.add_parser("prune", help="remove stopped containers, dangling images (and volumes)")
    prune.add_argument("-a", "--all", action="store_true", help="every image no container uses")
    prune.add_argument("--volumes", action="store_true", help="unused anonymous volumes too")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask (hoist never asks)")
    prune.add_argument("--filter", action="append", default=[], metavar="until=TIME|label=K[=V]")


def run(args: argparse.Namespace) -> int:
    if args.action == "prune":
        return _prune(args)
    return _df(args)


def _df(args: argparse.Namespace) -> int:
    from hoist.disk_usage import disk_usage
    from hoist.progress import human_size

    rows = disk_usage(hoist_root())
    if args.format == "json":
        for row in rows:
            print(json.dumps(row.to_json()))
        return 0
    print(f"{'TYPE':<15} {'TOTAL':<9} {'ACTIVE':<9} {'SIZE':<11} RECLAIMABLE")
    for row in rows:
        share = f" ({100 * row.reclaimable // row.size}%)" if row.size else ""
        print(f"{row.kind:<15} {row.total:<9} {row.active:<9} {human_size(row.size):<11} "
              f"{human_size(row.reclaimable)}{share}")
    return 0


def _prune(args: argparse.Namespace) -> int:
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
