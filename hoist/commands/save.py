"""hoist save [-o FILE] REF...: write images to a tar that ``docker load``, ``skopeo copy
docker-archive:`` and ``oci-archive:`` readers accept (``storage.archive.write_docker_archive``).

Where the tar goes (``write_output``): no ``-o`` or ``-o -`` is stdout (never a terminal). A
regular file, or a missing one in an existing directory, is written to a temporary file beside
it and renamed over it only once complete, so a failure leaves what was there before. A FIFO,
a pipe (``-o >(cmd)``) or a character device other than a terminal is written into, never
replaced; a directory, a block device or a socket is refused. A symlink is followed to its
target, and the link stays.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from typing import IO

from hoist.config import local_store, user_errors
from hoist.errors import UserError
from storage.archive import write_docker_archive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("refs", nargs="+", metavar="REF", help="image name, digest or ID")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="the tar to write (default, or '-': stdout)")


def run(args: argparse.Namespace) -> int:
    to_stdout = args.output in (None, "-")
    if to_stdout and sys.stdout.isatty():
        raise UserError("refusing to write a tar to a terminal", hint="use -o FILE or redirect stdout")
    layout = local_store()
    with user_errors():
        images = [layout.find(text) for text in args.refs]
        if to_stdout:
            write_docker_archive(layout, images, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            write_output(args.output, lambda f: write_docker_archive(layout, images, f))
    return 0


def write_output(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Run ``write`` on the file at ``path`` by the rules in the module docstring. Failures are
    one-line UserErrors (an OSError while writing names the path); nothing is left behind."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    if st is None:
        if os.path.islink(path):
            raise UserError(f"{path} is a symlink to a missing file: refused",
                            hint="remove the link or name the file itself")
        parent = os.path.dirname(path) or "."
        if not os.path.isdir(parent):
            raise UserError(f"cannot write {path}: no such directory {parent}")
        _write_replacing(path, write, replace=False)
    elif stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path} is a directory", hint=f"name a file, e.g. {os.path.join(path, 'images.tar')}")
    elif stat.S_ISREG(st.st_mode):
        real = os.path.realpath(path)
        try:
            same = os.path.samefile(real, path)
        except OSError:
            same = False
        if same:
            _write_replacing(real, write, replace=True)
        else:  # reached through a magic link (/dev/stdout redirected to a file): write in place
            _write_into(path, write, os.O_TRUNC)
    elif stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
        _write_into(path, write, 0)
    else:
        kind = "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) \
            else "not a regular file"
        raise UserError(f"{path} is {kind}: refused", hint="name a regular file, or use -o - for stdout")


def _write_replacing(path: str, write: Callable[[IO[bytes]], None], replace: bool) -> None:
    """Write a temporary file beside ``path`` and move it there: over a regular file with
    ``replace``, else only if nothing appeared at ``path`` meanwhile (a hard link, which never
    replaces)."""
    parent = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".hoist-save-")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            if replace:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    raise UserError(f"{path} changed while the archive was written: left as it is")
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except OSError as e:
                    if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
                        raise
                    # No hard links here (vfat, some FUSE file systems): a rename, once more
                    # checking that nothing appeared at the path meanwhile.
                    if os.path.lexists(path):
                        raise FileExistsError(errno.EEXIST, "exists", path) from None
                    os.rename(tmp, path)
        except FileExistsError:
            raise UserError(f"{path} appeared while the archive was written: left as it is") from None
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _write_into(path: str, write: Callable[[IO[bytes]], None], flags: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | flags)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    f = os.fdopen(fd, "wb")
    try:
        if f.isatty():
            raise UserError(f"refusing to write a tar to the terminal {path}")
        write(f)
        f.flush()
    except BrokenPipeError:
        raise UserError(f"the reader of {path} went away before the archive was written") from None
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    finally:
        with contextlib.suppress(OSError):  # a failed flush again; the descriptor is closed anyway
            f.close()
