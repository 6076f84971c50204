"""``hoist attach``: the terminal on a running ``-t`` container (detach: ctrl-p ctrl-q)."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime
    from runtime.tty import Detached

    runtime = Runtime(paths.hoist_root())
    try:
        container = runtime.containers.get(args.container)
        code = runtime.attach(container)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    except Detached:
        raise UserError("read escape sequence") from None
    if code is None:
        _, state = container.status()
        code = int(state.get("exit_code", 255))
    return code
