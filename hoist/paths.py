"""Where hoist keeps its state: ``$HOIST_ROOT``, default ``$XDG_DATA_HOME/hoist``."""

from __future__ import annotations

import os
from pathlib import Path


def hoist_root() -> Path:
    env = os.environ.get("HOIST_ROOT")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(xdg) / "hoist"


def images_dir() -> Path:
    return hoist_root() / "images"


def snapshots_dir() -> Path:
    return hoist_root() / "snapshots"


def cache_dir() -> Path:
    return hoist_root() / "cache"


def containers_dir() -> Path:
    return hoist_root() / "containers"
