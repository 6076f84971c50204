"""Find a runnable image in the local image store (an OCI image layout)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import ImageConfigInvalid, ImageNotFound
from storage.errors import ImageUnknown, StorageError
from storage.layout import ImageLayout
from storage.manifest import Descriptor, Manifest
from storage.platform import Platform, select_platform


@dataclass(frozen=True)
class Image:
    """What the runtime needs of an image: its name, ids, config and layer blobs."""

    ref: str
    manifest_digest: str
    config_digest: str
    config: dict[str, Any]
    layer_blobs: tuple[Path, ...]

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def run_config(self) -> dict[str, Any]:
        """The ``config`` object of the image config (Env, Cmd, User...); may be empty."""
        return self.config.get("config") or {}


def _pick_platform(index: Manifest, text: str) -> Descriptor:
    host = Platform.host()
    desc = select_platform(index, host)
    if desc is None:
        raise ImageConfigInvalid(f"image {text} has no variant for {host}")
    return desc


def load_image(images_dir: str | Path, text: str) -> Image:
    """Resolve ``text`` in the image layout at ``images_dir``; pick the host's platform from an
    index. Raises ImageNotFound or ImageConfigInvalid."""
    layout = ImageLayout(images_dir)
    if not (Path(images_dir) / "index.json").is_file():
        raise ImageNotFound(f"no image {text!r}: the local image store {images_dir} is empty")
    try:
        found = layout.find(text)
    except ImageUnknown:
        raise ImageNotFound(f"no image {text!r} in the local image store (pull or build it first)") from None
    except StorageError as e:
        raise ImageNotFound(str(e)) from None
    desc = found.descriptor
    name = found.name or next(iter(layout.names_of(desc)), str(desc.digest))
    try:
        manifest = layout.manifest(desc)
        for _ in range(2):
            if not manifest.is_index:
                break
            desc = _pick_platform(manifest, text)
            manifest = layout.manifest(desc)
        if manifest.is_index or manifest.config is None:
            raise ImageConfigInvalid(f"image {text} is a nested index without an image manifest")
        config = json.loads(layout.read_blob(manifest.config.digest))
    except StorageError as e:
        raise ImageNotFound(f"image {text}: {e}") from None
    except ValueError as e:
        raise ImageConfigInvalid(f"image {text}: config is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ImageConfigInvalid(f"image {text}: config is not a JSON object")
    blobs = tuple(layout.blob_path(layer.digest) for layer in manifest.layers)
    return Image(name, str(manifest.digest), str(manifest.config.digest), config, blobs)
