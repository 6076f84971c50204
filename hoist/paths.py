"""Where hoist keeps its state: ``$HOIST_ROOT``, default ``$XDG_DATA_HOME/hoist``."""

from __future__ import annotations

import os
from pathlib import Path

from hoist.errors import UserError


def hoist_root() -> Path:
    """The state root; a path that exists and is not a directory is a one-line UserError."""
    env = os.environ.get("HOIST_ROOT")
    if env:
        root = Path(env)
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        root = Path(xdg) / "hoist"
    if os.path.lexists(root) and not root.is_dir():
        what = "HOIST_ROOT" if env else "hoist's state directory"
        raise UserError(f"{what} {root} is not a directory",
                        hint="point HOIST_ROOT at a directory (it is created if missing)")
    return root


def images_dir() -> Path:
    return hoist_root() / "images"


def snapshots_dir() -> Path:
    return hoist_root() / "snapshots"


def cache_dir() -> Path:
    return hoist_root() / "cache"


def containers_dir() -> Path:
    return hoist_root() / "containers"
