"""``hoist export [-o FILE] CONTAINER``: the container's file system as a tar (``docker
export``): the image's layers and the container's changes merged, numeric owners, links kept
as links. Written to stdout (never a terminal) or as ``save -o`` writes a file."""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="FILE", help="the tar to write (default, or '-': stdout)")
    parser.add_argument("container", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from hoist.commands.save import write_output
    from runtime import containerfs
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure
    from runtime.snapshots import remove_tree

    to_stdout = args.output in (None, "-")
    if to_stdout and sys.stdout.isatty():
        raise UserError("refusing to write a tar to a terminal", hint="use -o FILE or redirect stdout")
    try:
        container = ContainerStore(paths.containers_dir()).get(args.container)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=container.path))
        try:
            tree = work / "root"
            tree.mkdir()
            containerfs.merged_copy(container, tree)

            def write(out: IO[bytes]) -> None:
                with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    _add_tree(tar, tree)

            if to_stdout:
                write(sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                write_output(args.output, write)
        finally:
            remove_tree(work)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    return 0


def _add_tree(tar: tarfile.TarFile, tree: Path) -> None:
    """Every entry under ``tree``, parents first, names sorted; iterative (any depth), links
    never followed."""
    todo = sorted((p for p in tree.iterdir()), reverse=True)
    while todo:
        path = todo.pop()
        tar.add(path, arcname=str(path.relative_to(tree)), recursive=False, filter=_numeric)
        if path.is_dir() and not path.is_symlink():
            todo += sorted(path.iterdir(), reverse=True)


def _numeric(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uname = info.gname = ""
    return info
