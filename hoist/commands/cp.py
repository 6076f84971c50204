"""``hoist cp [-a] SRC DEST``: copy files between a running container and the host, one side
written ``CONTAINER:PATH`` (``runtime/cp.py``: the container's symlinks resolve inside it and are
never followed on the host)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from hoist import paths
from hoist.errors import UserError

if TYPE_CHECKING:
    from runtime.containers import Container


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--archive", action="store_true", help="keep owners (uid/gid) as they are")
    parser.add_argument("src", metavar="SRC", help="CONTAINER:PATH or a host path")
    parser.add_argument("dest", metavar="DEST", help="CONTAINER:PATH or a host path")


def _side(text: str) -> tuple[str | None, str]:
    """(container or None, path): ``NAME:PATH`` names a container unless it starts like a path."""
    if text.startswith(("/", "./", "../")) or ":" not in text:
        return None, text
    name, _, path = text.partition(":")
    return name, path or "/"


def run(args: argparse.Namespace) -> int:
    from runtime import cp
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    (src_c, src), (dst_c, dst) = _side(args.src), _side(args.dest)
    if (src_c is None) == (dst_c is None):
        raise UserError("one of SRC and DEST must be CONTAINER:PATH, the other a host path",
                        hint="copying between containers is not supported, as docker")
    store = ContainerStore(paths.containers_dir())
    name = src_c if src_c is not None else dst_c
    try:
        container = store.get(str(name))
        pid = container.init_pid()
        if not pid:
            if dst_c is not None:
                raise UserError(f"container {container.name} is not running (hoist cp into a container needs "
                                "it running)")
            return _from_stopped(container, src, dst, args.archive)
        root = cp.container_root(pid)
        try:
            if src_c is not None:
                cp.copy(root, src, None, os.path.abspath(dst) + ("/" if dst.endswith("/") else ""), args.archive)
            else:
                cp.copy(None, os.path.abspath(src) + ("/." if src.endswith("/.") else ""), root, dst,
                        args.archive)
        finally:
            os.close(root)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    except OSError as e:
        what = "a symlink on the way was not followed" if e.errno == 40 else e.strerror
        raise UserError(f"copy failed: {what}" + (f": {e.filename}" if e.filename else "")) from None
    return 0


def _from_stopped(container: Container, src: str, dst: str, archive: bool) -> int:
    """Out of a stopped container: its layers and changes merged into a scratch tree beside it,
    which stands in for its root (symlinks still resolve inside it)."""
    import tempfile
    from pathlib import Path

    from runtime import containerfs, cp
    from runtime.snapshots import remove_tree

    work = Path(tempfile.mkdtemp(prefix=".cp-", dir=container.path))
    try:
        tree = work / "root"
        tree.mkdir()
        containerfs.merged_copy(container, tree)
        root = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            cp.copy(root, src, None, os.path.abspath(dst) + ("/" if dst.endswith("/") else ""), archive)
        finally:
            os.close(root)
    finally:
        remove_tree(work)
    return 0
