"""``hoist attach``: the terminal on a running ``-t`` container (detach: ctrl-p ctrl-q), or the
output of one without a TTY from now on, the caller's signals proxied to it (``--sig-proxy``)."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detach-keys", metavar="KEYS", help="the keys that detach (default ctrl-p,ctrl-q)")
    parser.add_argument("--no-stdin", action="store_true", help="do not attach stdin (a -t container's console)")
    add_bool_flag(parser, "--sig-proxy", "sig_proxy", True,
                  "proxy the signals hoist gets to a container without a TTY (default true)")
    parser.add_argument("container", metavar="CONTAINER")


# Go's strconv.ParseBool, which docker's boolean flags take after "=".
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def add_bool_flag(parser: argparse.ArgumentParser, flag: str, dest: str, default: bool, help: str) -> None:
    """A boolean flag as docker's (pflag) are: ``--flag`` alone is true, ``--flag=false`` sets it
    (the value only after ``=``: ``--flag false`` leaves ``false`` a positional argument)."""
    parser.add_argument(flag, dest=dest, action="store_true", default=default, help=help)
    parser.add_argument(*(f"{flag}={v}" for v in _TRUE), dest=dest, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(*(f"{flag}={v}" for v in _FALSE), dest=dest, action="store_false", help=argparse.SUPPRESS)


def attach_streams(values: list[str]) -> frozenset[str] | None:
    """``run -a STREAM...`` (case-insensitive, as docker): the streams named, None when none
    was; docker's message and 125 for another name."""
    streams = set()
    for value in values:
        if value.lower() not in ("stdin", "stdout", "stderr"):
            raise UserError(f'invalid argument "{value}" for "-a, --attach" flag: valid streams are '
                            f'STDIN, STDOUT and STDERR', exit_code=125)
        streams.add(value.lower())
    return frozenset(streams) if values else None


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime
    from runtime.errors import Detached

    detach_keys = detach_keys_option(args.detach_keys)
    runtime = Runtime(paths.hoist_root())
    try:
        container = runtime.containers.get(args.container)
        code = runtime.attach(container, detach_keys, sig_proxy=args.sig_proxy, stdin=not args.no_stdin)
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
    if not text:
        return None
    from runtime.tty import parse_detach_keys     # only then: a plain run loads no pty code
    try:
        return parse_detach_keys(text)
    except ValueError as e:
        raise UserError(str(e)) from None
