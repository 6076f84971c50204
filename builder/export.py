"""Export: a built stage as an image config and manifest in the local image store.

The config holds what dispatch made (architecture, os, config, history) with rootfs.diff_ids of
the stage's layers and ``created``: SOURCE_DATE_EPOCH when given (also every history entry this
build added), else BuildKit's date: the last layer's creation time (a base layer's from its
history, a step's from when it first ran, kept in the cache), the build's start only when that
is unknown. The manifest is OCI by default; ``docker`` writes Docker
schema 2 media types (gzip layers only, as Docker's format has no other). Nothing is tagged
until every blob is stored; the image id is the config digest.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from dataclasses import dataclass
from typing import Any

from builder.dispatch import LayerRef, StageState
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


def layer_times(layers: tuple[LayerRef, ...] | list[LayerRef], config: dict[str, Any]) -> list[LayerRef]:
    """A base image's layers dated as BuildKit dates them: each by the ``created`` of its
    history entry (the entries that are not ``empty_layer``, in order, matched from the top
    layer down); undated when the history names more layers than there are."""
    history = config.get("history")
    made = [h.get("created") for h in history if isinstance(h, dict) and not h.get("empty_layer")] \
        if isinstance(history, list) else []
    if len(made) > len(layers):
        return list(layers)
    # Fewer entries than layers (a base of a base that kept no history): the entries are the
    # latest layers', so they are matched from the top.
    undated = len(layers) - len(made)
    return [*layers[:undated], *(dataclasses.replace(layer, created=valid_time(when))
                                 for layer, when in zip(layers[undated:], made, strict=True))]


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


def valid_time(value: object) -> str | None:
    """``value`` if it is an RFC 3339 time as image configs hold them (a stranger's image or cache
    may hold anything there), else None."""
    return value if isinstance(value, str) and _RFC3339.fullmatch(value) else None


def image_config(state: StageState, created: float, labels: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None, dated_by_layers: bool = False) -> dict[str, Any]:
    """The image config. ``created`` dates the image and the history entries this build added;
    ``dated_by_layers`` (no SOURCE_DATE_EPOCH) dates them as BuildKit does instead: the image
    by its last layer's time (so a rebuild that hit the cache for every layer is the same image,
    and one that only changed metadata keeps its layers' date), each new layer's entry by its
    layer, the others by the image; ``created`` only when the last layer is undated."""
    image = {k: v for k, v in state.image.items() if k not in ("rootfs", "history", "created")}
    image.update(extra or {})
    config = dict(image.get("config") or {})
    if labels:
        config["Labels"] = dict(config.get("Labels") or {}) | labels
    image["config"] = config
    stamp = timestamp(created)
    if dated_by_layers and state.layers and state.layers[-1].created:
        stamp = state.layers[-1].created
    history = [dict(h) for h in state.history]
    new = history[len(history) - state.new_history:]
    new_layers = sum(1 for entry in new if not entry.get("empty_layer"))
    dates = iter(state.layers[len(state.layers) - new_layers:] if new_layers <= len(state.layers) else [])
    for entry in new:
        when = stamp
        if not entry.get("empty_layer"):
            layer = next(dates, None)
            if dated_by_layers and layer is not None and layer.created:
                when = layer.created
        entry.setdefault("created", when)
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
           labels: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
           dated_by_layers: bool = False) -> Exported:
    """Store the config and manifest, then tag them. The blobs of every layer are stored
    already, except remote cache hits nothing needed the files of (the caller fetches those
    before tagging, or pushes the image where they are). ``extra``: top-level config fields
    (the inline cache)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (use oci or docker)")
    if any(layer.lazy for layer in state.layers):     # BuildBackend.blobs_for comes first
        raise ExportError("a layer of the image has no blob yet")
    config = image_config(state, created, labels, extra, dated_by_layers)
    layers = [{"mediaType": _layer_type(layer.media_type, fmt), "digest": layer.digest, "size": layer.size}
              for layer in state.layers]
    config_desc = layout.put_json(config, mt.OCI_CONFIG if fmt == "oci" else mt.DOCKER_CONFIG)
    manifest_type = mt.OCI_MANIFEST if fmt == "oci" else mt.DOCKER_MANIFEST
    manifest = {"schemaVersion": 2, "mediaType": manifest_type, "config": config_desc.to_json(), "layers": layers}
    manifest_desc = layout.put_json(manifest, manifest_type)
    for tag in tags:
        layout.tag(tag, manifest_desc)
    return Exported(config_desc, manifest_desc)
