"""Named volumes for compose: ``$HOIST_ROOT/volumes/<name>/_data`` (docker's layout), each with a
``volume.json`` of its name, labels and creation time.

The runtime has no named volumes yet; a compose volume is a directory here bound into the
container (``nodev,nosuid`` as every hoist volume). When the runtime gets named volumes this
module becomes a thin call into it. Not done: copying the image's content at the mount point into
a new, empty volume (docker does; ``volume.nocopy`` turns that off).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from hoist.compose.errors import ComposeError
from storage.fsutil import atomic_write, private_dir

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


class VolumeStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, name: str) -> Path:
        if not NAME_RE.match(name) or len(name) > 255:
            raise ComposeError(f"invalid volume name {name!r} (letters, digits, _ . -)")
        return self.root / name

    def exists(self, name: str) -> bool:
        return (self._dir(name) / "_data").is_dir()

    def data(self, name: str) -> Path:
        return self._dir(name) / "_data"

    def create(self, name: str, labels: dict[str, str]) -> Path:
        """The volume's data directory, made (0755, root-owned, as docker's) if missing."""
        path = self._dir(name)
        private_dir(self.root)
        path.mkdir(mode=0o700, exist_ok=True)
        data = path / "_data"
        if not data.is_dir():
            data.mkdir(mode=0o755)
            doc = {"name": name, "labels": labels, "created": time.time()}
            atomic_write(path / "volume.json", json.dumps(doc, indent=1).encode(), durable=False)
        return data

    def labels(self, name: str) -> dict[str, str]:
        try:
            return dict(json.loads((self._dir(name) / "volume.json").read_text()).get("labels") or {})
        except (OSError, ValueError):
            return {}

    def all(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(n for n in os.listdir(self.root) if NAME_RE.match(n) and (self.root / n / "_data").is_dir())

    def remove(self, name: str) -> None:
        from runtime.snapshots import remove_tree

        path = self._dir(name)
        if path.exists():
            remove_tree(path)


def volume_labels(project: str, key: str) -> dict[str, Any]:
    return {"com.docker.compose.project": project, "com.docker.compose.volume": key}
