"""hoist save -o FILE REF...: write images to a tar that ``docker load``, ``skopeo copy
docker-archive:`` and ``oci-archive:`` readers accept (``storage.archive.write_docker_archive``)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from hoist.config import local_store, user_errors
from hoist.errors import UserError
from storage.archive import write_docker_archive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("refs", nargs="+", metavar="REF", help="image name, digest or ID")
    parser.add_argument("-o", "--output", metavar="FILE", help="the tar to write (default: stdout)")


def run(args: argparse.Namespace) -> int:
    if not args.output and sys.stdout.isatty():
        raise UserError("refusing to write a tar to a terminal", hint="use -o FILE or redirect stdout")
    layout = local_store()
    with user_errors():
        images = [layout.find(text) for text in args.refs]
        if args.output:
            out = Path(args.output)
            fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=".hoist-save-")
            try:
                with os.fdopen(fd, "wb") as f:
                    write_docker_archive(layout, images, f)
                os.replace(tmp, out)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            write_docker_archive(layout, images, sys.stdout.buffer)
    return 0
