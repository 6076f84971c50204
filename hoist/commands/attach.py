"""``hoist attach``: the terminal on a running ``-t`` container (detach: ctrl-p ctrl-q)."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detach-keys", metavar="KEYS", help="the keys that detach (default ctrl-p,ctrl-q)")
    parser.add_argument("container", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime
    from runtime.tty import Detached

    detach_keys = detach_keys_option(args.detach_keys)
    runtime = Runtime(paths.hoist_root())
    try:
        container = runtime.containers.get(args.container)
        code = runtime.attach(container, detach_keys)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    except Detached:
        raise UserError("read escape sequence") from None
    if code is None:
        _, state = container.status()
        code = int(state.get("exit_code", 255))
    return code


def detach_keys_option(text: str | None) -> bytes | None:
    """`--detach-keys` (run, start, attach): None for the default ctrl-p,ctrl-q."""
    from runtime.tty import parse_detach_keys

    if not text:
        return None
    try:
        return parse_detach_keys(text)
    except ValueError as e:
        raise UserError(str(e)) from None
