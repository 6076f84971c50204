"""hoist rmi REF...: untag images, then delete the blobs no name needs any more.

An image a container uses (running or not) keeps its blobs, as docker keeps it: removing its
last name is refused ("must force"); with ``-f`` the name goes and the image stays, untagged
(``<none>``), until no container uses it. An image a running container uses cannot be deleted
by its ID even with ``-f`` (docker: "cannot be forced")."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.config import local_store
from hoist.errors import UserError
from storage.errors import StorageError
from storage.layout import ImageLayout
from storage.manifest import Descriptor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("refs", nargs="+", metavar="REF", help="image name, digest or ID")
    parser.add_argument("-f", "--force", action="store_true",
                        help="remove an ID that several names point at (every name goes), or the last "
                             "name of an image a container uses (the image stays, untagged)")


def run(args: argparse.Namespace) -> int:
    layout = local_store()
    users = _image_users()
    failed = []
    for text in args.refs:
        try:
            name, desc = layout.find(text)
            names = _names_to_remove(layout, name, desc, text, args.force)
            keep = _check_users(layout, desc, names, name, text, args.force, users)
            for n in names:
                layout.untag(n)
                print(f"Untagged: {n}")
            if keep:  # a container still uses it: kept, untagged, as docker keeps a dangling image
                layout.tag(str(desc.digest), Descriptor(desc.media_type, desc.digest, desc.size,
                                                        platform=desc.platform))
        except (UserError, StorageError) as e:
            failed.append(str(e))
    for digest in layout.gc():
        print(f"Deleted: {digest}")
    # Their unpacked layers too, as docker's rmi removes the image's layers (today: what no image
    # and no container uses any more).
    from hoist.disk_usage import remove_unused_snapshots
    from hoist.paths import hoist_root

    remove_unused_snapshots(hoist_root())
    if failed:
        raise UserError("; ".join(failed))
    return 0


def _image_users() -> dict[str, list[tuple[str, str]]]:
    """image id -> [(container id, status)] for every container."""
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    out: dict[str, list[tuple[str, str]]] = {}
    for c in ContainerStore(paths.containers_dir()).all():
        try:
            out.setdefault(c.spec.image_id, []).append((c.id, c.status()[0]))
        except (RuntimeFailure, OSError, ValueError):
            continue
    return out


def _check_users(layout: ImageLayout, desc: Descriptor, names: list[str], name: str | None, text: str,
                 force: bool, users: dict[str, list[tuple[str, str]]]) -> bool:
    """Whether the image must stay (a container uses it and no other name keeps it); raises
    docker's conflicts when removing is not allowed."""
    try:
        image_id = str(layout.image_id(desc))
    except StorageError:
        return False
    using = users.get(image_id, [])
    if not using:
        return False
    remaining = [n for n in layout.names_of(desc) if n not in names and not n.startswith("sha256:")]
    if remaining:
        return False  # another name keeps the image: untagging this one is fine
    running = [cid for cid, status in using if status == "running"]
    short = image_id.removeprefix("sha256:")[:12]
    if name is None and running:
        raise UserError(f"conflict: unable to delete {short} (cannot be forced) - image is being used "
                        f"by running container {running[0][:12]}")
    if not force:
        what = f'remove repository reference "{text}"' if name is not None else f"delete {short}"
        raise UserError(f"conflict: unable to {what} (must force) - container {using[0][0][:12]} "
                        f"is using its referenced image {short}")
    return True


def _names_to_remove(layout: ImageLayout, name: str | None, desc: Descriptor, text: str, force: bool) -> list[str]:
    if name is not None:
        return [name]
    names = layout.names_of(desc)
    if len(names) > 1 and not force:
        raise UserError(f"image {text} has several names ({', '.join(names)})",
                        hint="remove them by name, or use -f")
    return names
