"""Where FROM images come from: the image-source interface the executor asks.

``builder/`` never speaks HTTP: ``hoist/commands/build.py`` hands the executor an ImageSource
that looks in the local store and pulls with the registry client when it has to. A resolved
image has its manifest digest (recorded, and the FROM's cache key), its config and its layer
descriptors, whose blobs are in the local store (layers are used as pulled, never
recompressed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from builder.dispatch import LayerRef
from builder.errors import BuilderError
from builder.reference import normalised
from storage import mediatypes as mt
from storage.errors import StorageError
from storage.layout import ImageLayout
from storage.platform import Platform


class SourceError(BuilderError):
    """A base image cannot be found, read or pulled; the message says which and why."""


class PlatformMismatch(SourceError):
    """The local image is a single-platform image of another platform than the one wanted."""


@dataclass(frozen=True)
class BaseImage:
    ref: str                    # the normalised reference
    digest: str                 # the image manifest's digest
    config: dict[str, Any]      # the image config
    layers: tuple[LayerRef, ...]


class ImageSource(Protocol):
    def resolve(self, ref: str, platform: Platform) -> BaseImage:
        """The image ``ref`` names for ``platform``; raises SourceError."""
        ...


def normalise(ref: str) -> str:
    try:
        return normalised(ref)
    except ValueError as e:
        raise SourceError(str(e)) from None


def read_local(layout: ImageLayout, ref: str, platform: Platform, *, any_platform: bool = False) -> BaseImage:
    """``ref`` from the local store (raises SourceError when it is not there). A single-platform
    image of another platform raises PlatformMismatch, unless ``any_platform`` (BuildKit uses
    such an image when the registry has nothing else, and warns: InvalidBaseImagePlatform)."""
    name = normalise(ref)
    try:
        desc, manifest = layout.resolve_image(name, platform)
        config = json.loads(layout.read_blob(manifest.config.digest)) if manifest.config else None
        single = desc.digest == layout.find(name).descriptor.digest
    except (StorageError, ValueError) as e:
        raise SourceError(f"{ref}: {e}") from None
    if not isinstance(config, dict):
        raise SourceError(f"{ref}: the image has no config")
    if single and not any_platform and config.get("architecture") and config.get("os"):
        # A single-platform image says its platform only in its config: another platform's
        # image is not this one (the caller may pull the right one).
        actual = Platform.of(config)
        if not platform.matches(actual):
            raise PlatformMismatch(f"{ref}: the local image is for {actual}, not {platform}")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(manifest.layers):
        raise SourceError(f"{ref}: the image has {len(manifest.layers)} layers but its config lists "
                          f"{len(diff_ids)} diff_ids")
    layers = []
    for layer, diff_id in zip(manifest.layers, diff_ids, strict=True):
        if layer.media_type not in mt.LAYERS:
            raise SourceError(f"{ref}: layer {layer.digest} has unsupported media type {layer.media_type}")
        if not layout.has_blob(layer.digest):
            raise SourceError(f"{ref}: layer {layer.digest} is missing from the image store (pull it again)")
        layers.append(LayerRef(str(layer.digest), str(diff_id), layer.size, layer.media_type))
    return BaseImage(name, str(desc.digest), config, tuple(layers))


class LocalImageSource:
    """Only the local store: an image that is not there is an error."""

    def __init__(self, layout: ImageLayout) -> None:
        self.layout = layout

    def resolve(self, ref: str, platform: Platform) -> BaseImage:
        return read_local(self.layout, ref, platform)


# -- ADD <url> and ADD <git ref>: the fetch interfaces ------------------------------------------

class FetchError(SourceError):
    """A URL or git source cannot be fetched (refused redirect, bad status, too large a body,
    connection error, unknown ref); the message says which and why."""


@dataclass(frozen=True)
class Download:
    """What ``UrlFetcher.fetch`` wrote: the sha256 of the bytes, how many, the final response's
    ``Last-Modified`` and ``ETag`` headers as sent (None without them); ``not_modified`` when a
    conditional request was answered 304 (nothing written)."""

    digest: str
    size: int
    last_modified: str | None = None
    etag: str | None = None
    not_modified: bool = False


class UrlFetcher(Protocol):
    """Downloads for ``ADD https://...`` (``hoist/commands/build.py`` fills it; ``builder/``
    never speaks HTTP itself)."""

    def fetch(self, url: str, into: Path, max_bytes: int, if_none_match: str | None = None) -> Download:
        """GET ``url`` and write its body into the new file ``into`` (created exclusively, mode
        0600), following at most 10 redirects, each to an http or https URL only. With
        ``if_none_match`` (an ETag) the request is conditional: a 304 answer writes nothing and
        returns ``not_modified``. Raises FetchError for another status outside 200..399, a
        refused redirect, a body longer than ``max_bytes`` (the file is then removed: disk and
        memory stay bounded), or a connection that fails; nothing but ``into`` is ever written."""
        ...


class GitFetcher(Protocol):
    """Git checkouts for ``ADD <git ref>`` (the system ``git`` by default:
    ``builder.remote.SystemGit``)."""

    def resolve(self, remote: str, ref: str | None) -> str:
        """The full commit id ``ref`` (a branch, a tag, a commit; None: the remote's HEAD)
        names in ``remote``; raises FetchError."""
        ...

    def checkout(self, remote: str, ref: str | None, commit: str, into: Path, *, keep_git_dir: bool,
                 max_bytes: int, max_entries: int, submodules: bool = True) -> None:
        """The tree of ``commit`` (reached through ``ref``) checked out in the new directory
        ``into`` with its submodules (unless ``submodules`` is False), its ``.git`` kept only
        with ``keep_git_dir``; a tree of more than ``max_bytes`` bytes or ``max_entries``
        entries is refused before it is written. Raises FetchError."""
        ...
