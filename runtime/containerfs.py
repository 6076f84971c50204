"""A container's file system seen from the host, without mounting anything on the host: its
changes (``hoist diff``) and its merged tree (``hoist export``).

Paths are resolved with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` from each layer's
directory and walked by descriptors (``storage.tree``), so nothing of the container, however
its symlinks point, leads the host outside its snapshots and upper directory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from runtime.containers import Container
from runtime.errors import SetupError
from runtime.snapshots import RootfsPlan, merge_into
from storage.openat2 import RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS, openat2
from storage.tree import is_opaque, is_whiteout, walk_changes

# What the container init creates as mount points when the image lacks them: not the
# container's own changes (docker keeps them in an init layer below the container's).
MOUNT_STUBS = ("etc/hosts", "etc/hostname", "etc/resolv.conf")


def layers(container: Container) -> tuple[list[str], str]:
    """(lower directories, lowest first; the upper directory) of an overlay container."""
    plan = RootfsPlan.from_json(container.spec.rootfs)
    if plan.kind != "overlay":
        raise SetupError(f"container {container.name} runs on a merged copy (overlay was not available): "
                         "it has no separate layer of changes")
    options = dict(item.split("=", 1) for item in plan.options.split(",") if "=" in item)
    lowers = [os.path.join(plan.cwd, name) for name in options.get("lowerdir", "").split(":") if name]
    return list(reversed(lowers)), options["upperdir"]


def _lookup(layer: str, rel: str) -> tuple[bool, bool]:
    """(whether ``rel`` exists in ``layer`` as an entry, whether it is a whiteout), never
    following a symlink."""
    try:
        root = os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False, False
    try:
        fd = openat2(root, rel, os.O_PATH | os.O_NOFOLLOW, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
    except OSError:
        return False, False
    finally:
        os.close(root)
    try:
        return True, is_whiteout(os.fstat(fd))
    finally:
        os.close(fd)


def _hidden_below(layer: str, rel: str) -> bool:
    """Whether an opaque directory in ``layer`` on the way to ``rel`` hides the layers below."""
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        try:
            root = os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fd = openat2(root, "/".join(parts[:i]), os.O_RDONLY | os.O_DIRECTORY, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
        except OSError:
            return False
        finally:
            os.close(root)
        try:
            if is_opaque(fd):
                return True
        finally:
            os.close(fd)
    return False


def in_image(lowers: list[str], rel: str) -> bool:
    """Whether the image (the lower layers, as overlayfs merges them) has ``rel``."""
    for layer in reversed(lowers):   # the top layer first
        present, whiteout = _lookup(layer, rel)
        if present:
            return not whiteout
        if _hidden_below(layer, rel):
            return False
    return False


def changes(container: Container) -> Iterator[tuple[str, str]]:
    """docker diff's lines: ("A" | "C" | "D", "/path"), parents before children. A directory
    that is in the upper dir only because the init made mount points in it is left out too."""
    lowers, upper = layers(container)
    stubs = set(MOUNT_STUBS) | {v.target.lstrip("/") for v in container.spec.volumes}
    found: list[tuple[str, str, bool]] = []   # (kind, path, is a dir)
    dropped: set[str] = set()
    for change in walk_changes(upper):
        rel = change.path
        if change.kind == "deleted":
            found.append(("D", rel, False))
            continue
        existed = in_image(lowers, rel)
        is_dir = stat.S_ISDIR(change.stat.st_mode)
        if not existed and rel in stubs and (is_dir or change.stat.st_size == 0):
            dropped.add(rel)
            continue
        found.append(("C" if existed else "A", rel, is_dir))
    kept = {rel for _, rel, _ in found}
    for kind, rel, is_dir in found:
        if kind == "C" and is_dir:
            under = [p for p in kept | dropped if p.startswith(rel + "/")]
            if under and all(p in dropped for p in under):
                continue
        yield kind, "/" + rel


def merged_copy(container: Container, target: Path) -> None:
    """The container's file system (image layers, then its changes) merged into ``target``."""
    lowers, upper = layers(container)
    merge_into([Path(p) for p in lowers] + [Path(upper)], target)
