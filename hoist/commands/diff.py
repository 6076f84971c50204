"""``hoist diff CONTAINER``: what the container changed in its file system, as ``docker diff``
prints it (``A`` added, ``C`` changed, ``D`` deleted; ``runtime/containerfs.py``)."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from runtime import containerfs
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    try:
        container = ContainerStore(paths.containers_dir()).get(args.container)
        for kind, path in containerfs.changes(container):
            print(f"{kind} {path}")
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    return 0
