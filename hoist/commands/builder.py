"""``hoist builder prune``: remove build cache, as ``docker builder prune`` does.

Without ``--all`` only dangling cache goes (entries whose layer no local image uses); with it,
every entry and the ``RUN --mount=type=cache`` directories. ``--filter until=DURATION`` keeps
what was used more recently than that; ``--keep-storage SIZE`` removes least recently used
entries first and stops once the cache holds at most SIZE. Snapshots no image or container
uses are removed too, and then the image store's gc deletes the blobs nothing reaches any more.
The prune waits for running builds (they hold the store's gc lock shared) and evicts nothing
they use. The accounting is in ``builder/prune.py`` and ``runtime/snapshot_prune.py``.
"""

from __future__ import annotations

import argparse
import sys

from hoist.errors import UserError
from hoist.paths import hoist_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    prune = sub.add_parser("prune", help="remove build cache")
    prune.add_argument("-a", "--all", action="store_true", help="remove all build cache, not just dangling")
    prune.add_argument("--keep-storage", metavar="SIZE", help="keep this much cache (least recently used goes first)")
    prune.add_argument("--filter", dest="filters", action="append", default=[], metavar="until=DURATION",
                       help="only cache last used longer ago than DURATION (e.g. 24h)")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask (hoist never asks; accepted)")


def parse_until(filters: list[str]) -> float | None:
    from storage.duration import parse_duration

    until: float | None = None
    for item in filters:
        key, eq, value = item.partition("=")
        if key != "until" or not eq:
            raise UserError(f"invalid --filter {item!r}: only until=DURATION is supported")
        try:
            until = parse_duration(value) / 1e9
        except ValueError as e:
            raise UserError(f"invalid --filter {item!r}: {e}") from None
        if until < 0:
            raise UserError(f"invalid --filter {item!r}: a duration cannot be negative")
    return until


def run(args: argparse.Namespace) -> int:
    from builder.prune import PruneError, parse_size
    from hoist.disk_usage import prune

    until = parse_until(args.filters)
    try:
        keep = parse_size(args.keep_storage) if args.keep_storage is not None else None
    except PruneError as e:
        raise UserError(str(e)) from None
    result = prune(hoist_root(), everything=args.all, until=until, keep_storage=keep)
    if result.keys:
        print("Deleted build cache objects:")
        for key in result.keys:
            print(key)
    from hoist.progress import human_size

    print(f"Total reclaimed space: {human_size(result.reclaimed)}")
    sys.stdout.flush()
    return 0
