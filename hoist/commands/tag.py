"""hoist tag SRC DST: give a local image another name."""

from __future__ import annotations

import argparse

from hoist.config import local_store, parse_ref, user_errors
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", help="a local image: name, digest or ID")
    parser.add_argument("target", metavar="DST", help="the new name, NAME[:TAG]")


def run(args: argparse.Namespace) -> int:
    layout = local_store()
    with user_errors():
        _, desc = layout.find(args.source)
    target = parse_ref(args.target)
    if target.digest is not None:
        raise UserError(f"cannot tag with a digest: {args.target}", hint="give NAME[:TAG]")
    layout.tag(str(target), desc)
    return 0
