"""``hoist exec``: run a command inside a running container's namespaces."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    parser.add_argument("-t", "--tty", action="store_true", help="give the command a terminal")
    parser.add_argument("-u", "--user", metavar="USER[:GROUP]")
    parser.add_argument("-w", "--workdir", metavar="DIR")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("command", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime

    if not args.command:
        raise UserError("no command given", hint="hoist exec CONTAINER COMMAND [ARG...]")
    runtime = Runtime(paths.hoist_root())
    try:
        container = runtime.containers.get(args.container)
        return runtime.exec(container, list(args.command), args.env, args.user, args.workdir,
                            tty=args.tty, interactive=args.interactive)
    except RuntimeFailure as e:
        raise UserError(str(e), exit_code=e.exit_code if e.exit_code != 125 else 1) from None
