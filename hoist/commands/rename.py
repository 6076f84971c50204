"""``hoist rename OLD NEW``: give a container a new name (it may be running)."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("new_name", metavar="NEW_NAME")


def run(args: argparse.Namespace) -> int:
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    store = ContainerStore(paths.containers_dir())
    try:
        store.rename(store.get(args.container), args.new_name)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    return 0
