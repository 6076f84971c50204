"""hoist load -i FILE: load images from a docker-archive or OCI-archive tar (optionally
compressed), as ``docker save``, ``hoist save`` and ``skopeo copy ... oci-archive:`` write
(``storage.archive.read_archive`` says how)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO

from hoist import paths
from hoist.config import local_store, user_errors
from hoist.errors import UserError
from runtime.errors import RuntimeFailure
from runtime.prepare import prepare_image
from runtime.snapshots import SnapshotStore
from storage.archive import open_archive, read_archive
from storage.errors import ArchiveInvalid


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", metavar="FILE", help="the tar to read (default: stdin)")
    parser.add_argument("-q", "--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    layout = local_store()
    with user_errors(), _opened(args.input) as path:
        try:
            tar = open_archive(path)
        except ArchiveInvalid:
            raise UserError(f"{args.input or 'stdin'} is not a tar archive (plain, gzip, bzip2 or xz)") from None
        with tar, layout.lease():
            loaded = read_archive(layout, tar)
        # Unpack what was loaded, as pull does, so its first run unpacks nothing.
        store = SnapshotStore(paths.snapshots_dir())
        for line in loaded:
            ref = line.split(": ", 1)[-1].strip()
            try:
                prepare_image(store, layout.root, ref)
            except RuntimeFailure as e:
                raise UserError(f"cannot unpack {ref}: {e}") from None
    if not args.quiet:
        for line in loaded:
            print(line)
    return 0


class _opened:
    """The archive as a seekable file: the given path, or stdin spooled to a temporary file."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._tmp: IO[bytes] | None = None

    def __enter__(self) -> str:
        if self.path:
            if not Path(self.path).is_file():
                raise UserError(f"no such file: {self.path}")
            return self.path
        if sys.stdin.isatty():
            raise UserError("no archive given", hint="use -i FILE or pipe a tar to stdin")
        tmp = self._tmp = tempfile.NamedTemporaryFile(prefix="hoist-load-")
        shutil.copyfileobj(sys.stdin.buffer, tmp, 1 << 20)
        tmp.flush()
        return tmp.name

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.close()
