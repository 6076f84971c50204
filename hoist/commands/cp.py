"""``hoist cp [-a] [-L] SRC DEST``: copy files between a container (running, created or exited)
and the host, one side written ``CONTAINER:PATH`` (``runtime/cp.py``: the container's symlinks
resolve inside it and are never followed on the host)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from hoist import paths
from hoist.errors import UserError

if TYPE_CHECKING:
    from runtime.containers import Container


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--archive", action="store_true", help="keep owners (uid/gid) as they are")
    parser.add_argument("-L", "--follow-link", action="store_true",
                        help="copy what a SRC that is a symlink points to (in a container: resolved "
                             "inside it), under the link's name")
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

    (src_c, src), (dst_c, dst) = _side(args.src), _side(args.dest)
    if args.dest == "-" and src_c is not None:
        return _to_stdout(src_c, src, args.follow_link)
    if args.src == "-" and dst_c is not None:
        return _from_stdin(dst_c, dst, args.archive)
    if (src_c is None) == (dst_c is None):
        raise UserError("one of SRC and DEST must be CONTAINER:PATH, the other a host path",
                        hint="copying between containers is not supported, as docker")
    archive, follow = args.archive, args.follow_link
    if src_c is not None:
        host_dst = os.path.abspath(dst) + ("/" if dst.endswith("/") else "")

        def work(root: int) -> None:
            cp.copy(root, src, None, host_dst, archive, follow)

        return _in_container(src_c, lambda _c: work)
    host_src = os.path.abspath(src) + ("/." if src.endswith("/.") else "")

    def into(container: Container) -> Callable[[int], None]:
        def work(root: int) -> None:
            cp.check_writable(container.spec, cp.extraction_dir(root, dst))
            cp.copy(None, host_src, root, dst, archive, follow)
        return work

    return _in_container(str(dst_c), into)


def _in_container(name: str, make_work: Callable[[Container], Callable[[int], None]]) -> int:
    """Run the copy with the root of container ``name``: a running one's own (its PID 1's), a
    stopped one's as ``runtime.cp.in_stopped`` builds it. Errors as one line."""
    from runtime import cp
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    try:
        container = ContainerStore(paths.containers_dir()).get(name)
        work = make_work(container)
        pid = container.init_pid()
        if not pid:
            if cp.in_stopped(container, work):
                return 0
            pid = container.init_pid()      # it started meanwhile
        if not pid:
            raise UserError(f"container {container.name} is starting or restarting, wait until it is running")
        root = cp.container_root(pid)
        try:
            work(root)
        finally:
            os.close(root)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    except OSError as e:
        what = "a symlink on the way was not followed" if e.errno == 40 else e.strerror
        raise UserError(f"copy failed: {what}" + (f": {e.filename}" if e.filename else "")) from None
    return 0


def _to_stdout(name: str, src: str, follow: bool) -> int:
    """``hoist cp CONTAINER:PATH -``: a tar of PATH on stdout."""
    import sys

    from runtime import cp

    if sys.stdout.isatty():
        raise UserError("refusing to write a tar to a terminal", hint="redirect stdout")

    def work(root: int) -> None:
        cp.tar_out(root, src, sys.stdout.buffer, follow)
        sys.stdout.buffer.flush()

    return _in_container(name, lambda _c: work)


def _from_stdin(name: str, dst: str, archive: bool) -> int:
    """``hoist cp - CONTAINER:DIR``: a tar from stdin extracted into DIR of the container."""
    import sys

    from runtime import cp

    if sys.stdin.isatty():
        raise UserError("no tar given", hint="pipe a tar to stdin")

    def into(container: Container) -> Callable[[int], None]:
        def work(root: int) -> None:
            cp.check_writable(container.spec, cp.resolve(root, dst))
            cp.tar_in(root, dst, sys.stdin.buffer, archive)
        return work

    return _in_container(name, into)
