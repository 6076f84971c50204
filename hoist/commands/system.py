"""``hoist system df``: what the local state holds (images, containers, snapshots, build cache,
cache mounts: count, active, size, reclaimable), as ``docker system df``; the counting is
``hoist/disk_usage.py``'s."""

from __future__ import annotations

import argparse
import json

from hoist.paths import hoist_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    df = sub.add_parser("df", help="show disk usage")
    df.add_argument("--format", choices=("table", "json"), default="table",
                    help="json: one object per line, sizes in bytes")


def run(args: argparse.Namespace) -> int:
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
