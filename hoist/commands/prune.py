"""What ``container prune``, ``image prune`` and ``system prune`` share: the removals and
docker's report ("Deleted Containers:", "Deleted Images:", "Total reclaimed space: ...")."""

from __future__ import annotations

from typing import Any

from hoist import paths
from hoist.errors import UserError
from hoist.progress import docker_size

STOPPED = ("exited", "created", "dead")


def _until(filters: list[str]) -> tuple[float | None, list[str]]:
    """docker's prune filters: ``until=`` (a time or a duration back from now), ``label=``."""
    from hoist.commands.logs import parse_time

    until, labels = None, []
    for item in filters:
        key, sep, value = item.partition("=")
        if key == "until" and sep:
            until = parse_time(value, "until") / 1e9
        elif key == "label" and sep:
            labels.append(value)
        else:
            raise UserError(f"invalid filter '{item}' (until=TIME or label=KEY[=VALUE])")
    return until, labels


def prune_containers(filters: list[str]) -> tuple[list[str], int]:
    """Remove every stopped container (matching the filters); (ids, bytes freed)."""
    from hoist.commands.ps import match_labels, tree_size
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime

    until, labels = _until(filters)
    runtime = Runtime(paths.hoist_root())
    gone, freed = [], 0
    for c in runtime.containers.all():
        try:
            status, _ = c.status()
            spec = c.spec
        except (RuntimeFailure, OSError, ValueError):
            continue
        if status not in STOPPED:
            continue
        if until is not None and spec.created >= until:
            continue
        if labels and not match_labels(labels, spec.labels):
            continue
        size = tree_size(str(c.path / "upper"))
        try:
            runtime.remove(c)
        except RuntimeFailure:
            continue
        gone.append(c.id)
        freed += size
    return gone, freed


def prune_images(everything: bool, filters: list[str]) -> tuple[list[str], int]:
    """Remove dangling images (every image no container uses, with ``everything``), then the
    blobs no name needs; (report lines, bytes freed)."""
    from hoist.commands.images import _created_ts, _split
    from hoist.commands.ps import match_labels
    from hoist.commands.rmi import _image_users
    from hoist.config import local_store
    from storage.errors import StorageError

    until, labels = _until(filters)
    layout = local_store()
    used = set(_image_users())
    lines = []
    for name, desc in layout.refs():
        if name is None:
            continue
        _, tag, _ = _split(name)
        if tag != "<none>" and not everything:
            continue
        try:
            image_id = str(layout.image_id(desc))
            _, manifest = layout.platform_image(desc)
            config = layout.config(manifest) if manifest.config else {}
        except (StorageError, ValueError):
            image_id, config = str(desc.digest), {}
        if image_id in used:
            continue
        created = _created_ts(str(config.get("created") or ""))
        if until is not None and (created is None or created >= until):
            continue
        if labels and not match_labels(labels, (config.get("config") or {}).get("Labels") or {}):
            continue
        layout.untag(name)
        lines.append(f"untagged: {name}" if tag != "<none>" else f"untagged: {desc.digest}")
    freed = 0
    for digest in _gc(layout):
        lines.append(f"deleted: {digest[0]}")
        freed += digest[1]
    return lines, freed


def _gc(layout: Any) -> list[tuple[str, int]]:
    from hoist.disk_usage import remove_unused_snapshots
    from hoist.paths import hoist_root

    keep = layout.reachable()
    sizes = {d: layout.blob_size(d) for d in layout.blobs() if d not in keep}
    deleted = [(str(d), sizes.get(d, 0)) for d in layout.gc()]
    remove_unused_snapshots(hoist_root())   # the unpacked layers no image or container uses
    return deleted


def prune_volumes(everything: bool, filters: list[str]) -> tuple[list[str], int]:
    from hoist.commands.ps import match_labels, tree_size
    from runtime.volumes import VolumeStore, volume_users

    _, labels = _until([f for f in filters if not f.startswith("until=")])
    store = VolumeStore(paths.hoist_root() / "volumes")
    users = volume_users(paths.containers_dir())
    used = {v for _, v in users}
    gone, freed = [], 0
    for info in store.all():
        if info.name in used or not (everything or info.anonymous):
            continue
        if labels and not match_labels(labels, info.labels):
            continue
        size = tree_size(str(info.data))
        try:
            store.remove(info.name, users)
        except Exception:  # in use by now: kept
            continue
        gone.append(info.name)
        freed += size
    return gone, freed


def report(title: str, items: list[str]) -> None:
    if items:
        print(f"{title}:")
        for item in items:
            print(item)
        print()


def total(freed: int) -> None:
    print(f"Total reclaimed space: {docker_size(freed)}")

