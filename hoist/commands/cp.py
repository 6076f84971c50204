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
    parser.add_argument("src", metavar="SRC", help="CONTAINER:PATH, a host path, or - (a tar on stdin)")
    parser.add_argument("dest", metavar="DEST", help="CONTAINER:PATH, a host path, or - (a tar on stdout)")


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
    if args.dest == "-" and src_c is not None:
        return _to_stdout(src_c, src)
    if args.src == "-" and dst_c is not None:
        return _from_stdin(dst_c, dst, args.archive)
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


def _to_stdout(name: str, src: str) -> int:
    """``hoist cp CONTAINER:PATH -``: a tar of PATH on stdout (a stopped container: its merged
    file system)."""
    import sys
    import tempfile
    from pathlib import Path

    from runtime import containerfs, cp
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure
    from runtime.snapshots import remove_tree

    if sys.stdout.isatty():
        raise UserError("refusing to write a tar to a terminal", hint="redirect stdout")
    try:
        container = ContainerStore(paths.containers_dir()).get(name)
        pid = container.init_pid()
        work = None
        if pid:
            root = cp.container_root(pid)
        else:
            work = Path(tempfile.mkdtemp(prefix=".cp-", dir=container.path))
            (work / "root").mkdir()
            containerfs.merged_copy(container, work / "root")
            root = os.open(work / "root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            cp.tar_out(root, src, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        finally:
            os.close(root)
            if work is not None:
                remove_tree(work)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    return 0


def _from_stdin(name: str, dst: str, archive: bool) -> int:
    """``hoist cp - CONTAINER:DIR``: a tar from stdin extracted into DIR of a running container."""
    import sys

    from runtime import cp
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    if sys.stdin.isatty():
        raise UserError("no tar given", hint="pipe a tar to stdin")
    try:
        container = ContainerStore(paths.containers_dir()).get(name)
        pid = container.init_pid()
        if not pid:
            raise UserError(f"container {container.name} is not running (hoist cp into a container needs it running)")
        root = cp.container_root(pid)
        try:
            cp.tar_in(root, dst, sys.stdin.buffer, archive)
        finally:
            os.close(root)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"copy failed: {e.strerror}" + (f": {e.filename}" if e.filename else "")) from None
    return 0
