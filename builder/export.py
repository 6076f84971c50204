"""Export: a built stage as an image config and manifest in the local image store.

The config holds what dispatch made (architecture, os, config, history) with rootfs.diff_ids of
the stage's layers and ``created``: SOURCE_DATE_EPOCH when given (also every history entry this
build added), else the build's start. The manifest is OCI by default; ``docker`` writes Docker
schema 2 media types (gzip layers only, as Docker's format has no other). Nothing is tagged
until every blob is stored; the image id is the config digest.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from builder.dispatch import StageState
from builder.errors import BuilderError
from storage import mediatypes as mt
from storage.layout import ImageLayout
from storage.manifest import Descriptor

FORMATS = ("oci", "docker")


class ExportError(BuilderError):
    """The image cannot be written in the format asked for."""


@dataclass(frozen=True)
class Exported:
    config: Descriptor
    manifest: Descriptor

    @property
    def image_id(self) -> str:
        return str(self.config.digest)


def timestamp(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_config(state: StageState, created: float, labels: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    image = {k: v for k, v in state.image.items() if k not in ("rootfs", "history", "created")}
    image.update(extra or {})
    config = dict(image.get("config") or {})
    if labels:
        config["Labels"] = dict(config.get("Labels") or {}) | labels
    image["config"] = config
    stamp = timestamp(created)
    history = [dict(h) for h in state.history]
    for entry in history[len(history) - state.new_history:]:
        entry.setdefault("created", stamp)
    image["created"] = stamp
    image["history"] = history
    image["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in state.layers]}
    return image


def _layer_type(media_type: str, fmt: str) -> str:
    if fmt == "oci":
        if media_type == mt.DOCKER_LAYER:
            return mt.OCI_LAYER_GZIP
        return media_type
    compression = mt.layer_compression(media_type)
    if compression != "gzip":
        raise ExportError(f"--format docker needs gzip layers, and a layer is {media_type} "
                          "(use --format oci or --compression gzip)")
    return mt.DOCKER_FOREIGN_LAYER if media_type == mt.DOCKER_FOREIGN_LAYER else mt.DOCKER_LAYER


def export(layout: ImageLayout, state: StageState, tags: list[str], *, created: float, fmt: str = "oci",
           labels: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> Exported:
    """Store the config and manifest, then tag them. The blobs of every layer are stored
    already, except remote cache hits nothing needed the files of (the caller fetches those
    before tagging, or pushes the image where they are). ``extra``: top-level config fields
    (the inline cache)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (use oci or docker)")
    config = image_config(state, created, labels, extra)
    layers = [{"mediaType": _layer_type(layer.media_type, fmt), "digest": layer.digest, "size": layer.size}
              for layer in state.layers]
    config_desc = layout.put_json(config, mt.OCI_CONFIG if fmt == "oci" else mt.DOCKER_CONFIG)
    manifest_type = mt.OCI_MANIFEST if fmt == "oci" else mt.DOCKER_MANIFEST
    manifest = {"schemaVersion": 2, "mediaType": manifest_type, "config": config_desc.to_json(), "layers": layers}
    manifest_desc = layout.put_json(manifest, manifest_type)
    for tag in tags:
        layout.tag(tag, manifest_desc)
    return Exported(config_desc, manifest_desc)
