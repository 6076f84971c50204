"""``hoist update``: change the limits and the restart policy of containers (running or not)."""

from __future__ import annotations

import argparse

from hoist.commands._each_container import for_each_container
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory", "-m", metavar="SIZE", help="memory limit (e.g. 512m)")
    parser.add_argument("--cpus", type=float, metavar="N", help="CPU limit (e.g. 1.5)")
    parser.add_argument("--pids-limit", type=int, metavar="N", help="process limit (-1: unlimited)")
    parser.add_argument("--restart", metavar="POLICY", help="no, always, unless-stopped or on-failure[:N]")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.restart import RestartPolicy
    from runtime.spec import parse_size

    if args.memory is None and args.cpus is None and args.pids_limit is None and args.restart is None:
        raise UserError("you must provide one or more flags when using this command",
                        hint="--memory, --cpus, --pids-limit or --restart")
    try:
        memory = parse_size(args.memory) if args.memory is not None else None
        if args.restart is not None:
            RestartPolicy.parse(args.restart)   # checked before any container changes
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    if args.cpus is not None and args.cpus <= 0:
        raise UserError(f"invalid --cpus {args.cpus:g} (must be more than 0)")
    return for_each_container(args.containers, lambda rt, c: rt.update(
        c, memory=memory, cpus=args.cpus, pids=args.pids_limit, restart=args.restart))
