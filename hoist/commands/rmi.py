"""hoist rmi REF...: untag images, then delete the blobs no name needs any more."""

from __future__ import annotations

import argparse

from hoist.config import local_store
from hoist.errors import UserError
from storage.errors import StorageError
from storage.layout import ImageLayout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("refs", nargs="+", metavar="REF", help="image name, digest or ID")
    parser.add_argument("-f", "--force", action="store_true",
                        help="remove an ID that several names point at (every name goes)")


def run(args: argparse.Namespace) -> int:
    layout = local_store()
    failed = []
    for text in args.refs:
        try:
            for name in _names_to_remove(layout, text, args.force):
                layout.untag(name)
                print(f"Untagged: {name}")
        except (UserError, StorageError) as e:
            failed.append(str(e))
    for digest in layout.gc():
        print(f"Deleted: {digest}")
    if failed:
        raise UserError("; ".join(failed))
    return 0


def _names_to_remove(layout: ImageLayout, text: str, force: bool) -> list[str]:
    name, desc = layout.find(text)
    if name is not None:
        return [name]
    names = layout.names_of(desc)
    if len(names) > 1 and not force:
        raise UserError(f"image {text} has several names ({', '.join(names)})",
                        hint="remove them by name, or use -f")
    return names
