"""``hoist import FILE|- [REPOSITORY[:TAG]]``: a root file system tarball (``docker export``'s,
debootstrap's, ``tar -C rootfs -c .``'s; plain or compressed) as a one-layer image, as
``docker import`` makes it (``storage.archive.import_rootfs``). Prints the image id."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile

from hoist.config import local_store, parse_platform, parse_ref, user_errors
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE|-", help="the tarball ('-': stdin)")
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    parser.add_argument("-m", "--message", default="", help="the history entry's comment")
    parser.add_argument("--platform", help="os/arch[/variant] the image says it is (default: this host's)")
    parser.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                        help="a Dockerfile instruction for the image's config (CMD, ENTRYPOINT, ENV, EXPOSE, "
                             "LABEL, ONBUILD, USER, VOLUME, WORKDIR)")


def run(args: argparse.Namespace) -> int:
    from hoist.commands._changes import apply_changes
    from storage.archive import import_rootfs
    from storage.platform import Platform

    apply_changes({"config": {}}, args.change)  # a bad change is refused before anything is stored
    ref = parse_ref(args.reference) if args.reference else None
    platform = parse_platform(args.platform) or Platform.host()
    layout = local_store()
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with user_errors(), layout.lease():
        if args.file == "-":
            if sys.stdin.isatty():
                raise UserError("no tarball given", hint="use FILE, or pipe a tar to stdin with -")
            with tempfile.TemporaryFile(dir=layout.ingest_dir()) as spool:
                shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
                spool.seek(0)
                desc = import_rootfs(layout, spool, architecture=platform.architecture, os_name=platform.os,
                                     variant=platform.variant, comment=args.message, created=created,
                                     config=apply_changes({"config": {}}, args.change)["config"])
        else:
            try:
                f = open(args.file, "rb")
            except OSError as e:
                raise UserError(f"cannot read {args.file}: {e.strerror}") from None
            with f:
                desc = import_rootfs(layout, f, architecture=platform.architecture, os_name=platform.os,
                                     variant=platform.variant, comment=args.message or f"Imported from {args.file}",
                                     created=created, config=apply_changes({"config": {}}, args.change)["config"])
        layout.tag(str(ref) if ref else str(desc.digest), desc)
        print(layout.image_id(desc))
    return 0
