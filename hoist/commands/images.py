"""hoist images: list the local image store. (Every verb that takes a local image name finds it
with ``ImageLayout.find``, docker's rules.)"""

from __future__ import annotations

import argparse
import datetime as dt
import json

from hoist.config import local_store
from hoist.progress import human_size
from storage.errors import StorageError
from storage.layout import ImageLayout
from storage.manifest import Manifest
from storage.reference import parse_reference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repository", nargs="?", metavar="REPOSITORY", help="only this repository")
    parser.add_argument("--digests", action="store_true", help="show digests")
    parser.add_argument("-q", "--quiet", action="store_true", help="only image IDs")
    parser.add_argument("--no-trunc", action="store_true", help="full image IDs")


def image_size(manifest: Manifest) -> int:
    return sum(d.size for d in manifest.blob_references())


def created_of(layout: ImageLayout, manifest: Manifest) -> str:
    try:
        return str(layout.config(manifest).get("created") or "")
    except (StorageError, ValueError):
        return ""


def _ago(created: str) -> str:
    try:
        when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "N/A"
    seconds = (dt.datetime.now(dt.UTC) - when).total_seconds()
    for unit, size in (("years", 31536000), ("months", 2592000), ("weeks", 604800), ("days", 86400),
                       ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit} ago"
    return "Less than a minute ago" if seconds >= 0 else "N/A"


def run(args: argparse.Namespace) -> int:
    layout = local_store()
    rows = []
    for ref_name, desc in layout.refs():
        repo, tag = _split(ref_name)
        if args.repository and repo != str(parse_reference(args.repository, default_tag=False).repository):
            continue
        try:
            _, manifest = layout.platform_image(desc)
            ident = manifest.config.digest.hex if manifest.config else desc.digest.hex
            size, created = image_size(manifest), created_of(layout, manifest)
        except (StorageError, json.JSONDecodeError):
            ident, size, created = desc.digest.hex, 0, ""
        rows.append((repo, tag, str(desc.digest), ident if args.no_trunc else ident[:12], _ago(created),
                     human_size(size)))
    if args.quiet:
        for ident in dict.fromkeys(r[3] for r in rows):
            print(ident)
        return 0
    header = ("REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE")
    keep = [i for i in range(6) if i != 2 or args.digests]
    table = [tuple(row[i] for i in keep) for row in [header, *sorted(rows)]]
    widths = [max(len(r[i]) for r in table) for i in range(len(keep))]
    for row in table:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip())
    return 0


def _split(ref_name: str | None) -> tuple[str, str]:
    """(repository, tag) for display; digest-only refs show ``<none>`` as their tag."""
    if not ref_name or ref_name.startswith("sha256:"):
        return "<none>", "<none>"
    try:
        ref = parse_reference(ref_name, default_tag=False)
    except StorageError:
        return ref_name, "<none>"
    return ref.repository, ref.tag or "<none>"
