"""Build caches that travel through a registry: the artifact's format, its import and export.

A CI runner starts with an empty ``$HOIST_ROOT``; ``--cache-from`` lets it reuse what another
runner built, ``--cache-to`` publishes what this one built. ``builder/`` never speaks HTTP: the
CLI hands in a ``CacheRegistry`` (``hoist/build_registry.py`` over the registry client), as it
hands in the ``ImageSource`` for FROM.

The artifact (``--cache-to type=registry,ref=REF``) is one OCI 1.1 image manifest::

    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.hoist.buildcache.v1+json",
     "config": {"mediaType": "application/vnd.hoist.buildcache.config.v1+json", ...},
     "layers": [the cached layers, each exactly as the image holds it],
     "annotations": {"dev.hoist.buildcache.version": "1"}}

and its config maps each cache key to one of those layers::

    {"version": 1,
     "layers": [{"digest", "size", "mediaType", "diffID"}, ...],     # the manifest's layers, in order
     "entries": {"<cache key>": <index into layers>, ...},
     "mounts": [{"id": "<cache id>", "origin": "...", "layer": <index>}, ...]}    # mounts=true only

``mounts`` (``--cache-to ...,mounts=true``): the contents of each ``RUN --mount=type=cache``
the build used, as a layer of the artifact (the instance directory's tree; BuildKit exports no
cache mounts). A runner that imports the cache starts a cache it has no instance of from that
layer (unpacked with every bound and check a layer gets, devices refused), so a package
manager's cache reaches a fresh runner; a cache it has locally is its own. Mount contents are
never part of a cache key, so an imported mount can make a step faster, never a hit.

A local cache entry holds only its layer (metadata instructions are not steps: dispatch
recomputes the config), so this is all an entry needs. Layers are the image's own blobs by
digest: pushing the cache after the image finds them present (HEAD) or mounts them, never
uploads or recompresses them. Registries that refuse ``artifactType`` get the fallback form: the
same manifest without that field (the config's media type and the annotation still say what it
is). Both forms are read.

Inline cache (``--cache-to type=inline`` or ``--build-arg BUILDKIT_INLINE_CACHE=1``) puts the
``entries`` map, with indexes into the image's own layers, into the image config under
``dev.hoist.buildcache.v1``; ``--cache-from IMAGE`` reads it from there.

Import is lazy: ``--cache-from`` reads the manifest and config, checks with HEAD that each
layer is still in the registry (a missing one is a miss for the steps it holds), and downloads
nothing else. A hit gives the executor the remote layer's descriptor; the blob is fetched only
when a later step needs its files (``ImportedCache.fetch``). Bad input never makes a wrong hit
or a failed build: a missing ref, an image that is not a hoist cache, a corrupt config are one
warning each and a cold build for the steps they would have held.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from builder.dispatch import LayerRef
from builder.errors import BuilderError
from builder.export import layer_times, valid_time
from storage import mediatypes as mt
from storage.errors import StorageError
from storage.manifest import Manifest, parse_manifest
from storage.platform import Platform, select_platform

ARTIFACT_TYPE = "application/vnd.hoist.buildcache.v1+json"
CONFIG_TYPE = "application/vnd.hoist.buildcache.config.v1+json"
VERSION_ANNOTATION = "dev.hoist.buildcache.version"
INLINE_FIELD = "dev.hoist.buildcache.v1"
VERSION = 1
INLINE_BUILD_ARG = "BUILDKIT_INLINE_CACHE"

# Bounds on what a stranger's cache may make us read and hold.
MAX_CONFIG_BYTES = 16 << 20
MAX_ENTRIES = 200_000
MAX_LAYERS = 4096               # each is checked with one HEAD on import
MAX_MOUNTS = 1024
MAX_MOUNT_NAME = 4096           # a cache id or origin
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,199}")
_HEX64 = re.compile(r"sha256:[0-9a-f]{64}")

FORMS = ("artifact", "image-manifest")
MODES = ("min", "max")


class CacheSpecError(BuilderError):
    """A ``--cache-from`` / ``--cache-to`` value hoist cannot use."""


class CacheInvalid(BuilderError):
    """A cache artifact (or inline cache) that is corrupt or not a hoist cache."""


class CacheUnavailable(BuilderError):
    """The registry could not give what was asked (not found, refused, unreachable)."""


@dataclass(frozen=True)
class CacheSpec:
    """One ``--cache-from`` / ``--cache-to``, in BuildKit's ``key=value,...`` syntax."""

    type: str                           # registry | inline
    ref: str | None = None
    mode: str = "min"
    ignore_error: bool = False
    options: dict[str, str] = field(default_factory=dict)


_FROM_KEYS = {"type", "ref"}
_TO_KEYS = {"type", "ref", "mode", "ignore-error", "image-manifest", "oci-mediatypes", "compression", "mounts"}


def parse_cache_spec(text: str, direction: str, compression: str) -> CacheSpec:
    """Parse a ``--cache-from`` (``direction`` "from") or ``--cache-to`` ("to") value; a bare
    ``REF`` is ``type=registry,ref=REF`` as in buildx. ``compression`` is the build's: the cache
    holds the image's own layers, so another compression cannot be asked for."""
    flag = f"--cache-{direction}"
    if "=" not in text:
        return CacheSpec("registry", text) if text else _bad(flag, text, "empty value")
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            _bad(flag, text, f"{part!r} is not key=value")
        if key in fields:
            _bad(flag, text, f"{key} given twice")
        fields[key] = value.strip()
    kind = fields.get("type", "registry")
    allowed = _FROM_KEYS if direction == "from" else _TO_KEYS
    unknown = sorted(set(fields) - allowed)
    if unknown:
        _bad(flag, text, f"unknown option {unknown[0]!r}")
    if kind == "inline":
        if direction == "from":
            _bad(flag, text, "inline caches are read with type=registry,ref=IMAGE")
        return CacheSpec("inline")
    if kind != "registry":
        _bad(flag, text, f"cache type {kind!r} is not supported (registry, inline)")
    ref = fields.get("ref", "")
    if not ref:
        _bad(flag, text, "ref=REF is required")
    mode = fields.get("mode", "min")
    if mode not in MODES:
        _bad(flag, text, f"mode must be min or max, not {mode!r}")
    asked = fields.get("compression")
    if asked is not None and asked != compression:
        _bad(flag, text, f"the cache holds the image's own {compression} layers (never recompressed); "
                         f"build with --compression {asked} instead")
    for flag_name in ("ignore-error", "image-manifest", "oci-mediatypes", "mounts"):
        if fields.get(flag_name, "true").lower() not in ("true", "false"):
            _bad(flag, text, f"{flag_name} must be true or false")
    return CacheSpec("registry", ref, mode, fields.get("ignore-error", "false").lower() == "true",
                     {k: v.lower() for k, v in fields.items() if k in ("image-manifest", "oci-mediatypes", "mounts")})


def _bad(flag: str, text: str, why: str) -> CacheSpec:
    raise CacheSpecError(f"invalid {flag} {text!r}: {why}")


# -- the registry, as builder/ sees it ----------------------------------------------------------

class CacheRegistry(Protocol):
    """What the CLI gives the cache: blocking calls (safe from several threads) that raise
    CacheUnavailable with the registry's reason."""

    def manifest(self, ref: str, digest: str | None = None) -> tuple[bytes, str]:
        """(raw bytes, media type) of the manifest ``ref`` names, or of ``digest`` in its repository."""
        ...

    def blob(self, ref: str, digest: str, limit: int) -> bytes:
        """A small blob (a config) of ``ref``'s repository, at most ``limit`` bytes."""
        ...

    def missing(self, ref: str, digests: list[str]) -> set[str]:
        """Which of ``digests`` the repository of ``ref`` does not hold (HEAD each)."""
        ...

    def fetch_layer(self, ref: str, layer: LayerRef) -> None:
        """Download the blob into the local image store, verified; record where it came from."""
        ...


# -- the format -----------------------------------------------------------------------------------

def _layer_doc(layer: LayerRef) -> dict[str, Any]:
    doc: dict[str, Any] = {"digest": layer.digest, "size": layer.size, "mediaType": layer.media_type,
                           "diffID": layer.diff_id}
    if layer.created:
        doc["created"] = layer.created          # dates an image of cache hits as BuildKit's does
    return doc


def encode_entries(entries: dict[str, LayerRef]) -> tuple[list[LayerRef], dict[str, int]]:
    """The distinct layers (first use first) and each key's index into them."""
    layers: list[LayerRef] = []
    where: dict[str, int] = {}
    index: dict[str, int] = {}
    for key in sorted(entries):
        layer = entries[key]
        if layer.digest not in where:
            where[layer.digest] = len(layers)
            layers.append(layer)
        index[key] = where[layer.digest]
    return layers, index


MountKey = tuple[str, str]          # (cache id, origin): builder/cachemounts.py's key


def cache_config(entries: dict[str, LayerRef], mounts: dict[MountKey, LayerRef] | None = None
                 ) -> tuple[bytes, list[LayerRef]]:
    """The artifact's config bytes and its layers, in manifest order (the entries' layers, then
    the cache mounts' that are not among them)."""
    layers, index = encode_entries(entries)
    doc: dict[str, Any] = {"version": VERSION, "entries": index}
    if mounts:
        where = {layer.digest: i for i, layer in enumerate(layers)}
        listed = []
        for (cache_id, origin), layer in sorted(mounts.items()):
            if layer.digest not in where:
                where[layer.digest] = len(layers)
                layers.append(layer)
            listed.append({"id": cache_id, "origin": origin, "layer": where[layer.digest]})
        doc["mounts"] = listed
    doc["layers"] = [_layer_doc(layer) for layer in layers]
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), layers


def cache_manifest(config_digest: str, config_size: int, layers: list[LayerRef], form: str) -> dict[str, Any]:
    """The artifact's manifest in ``form`` (``artifact``, or ``image-manifest`` without artifactType)."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}
    if form == "artifact":
        doc["artifactType"] = ARTIFACT_TYPE
    doc["config"] = {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size}
    doc["layers"] = [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
                     for layer in layers]
    doc["annotations"] = {VERSION_ANNOTATION: str(VERSION)}
    return doc


def inline_cache(entries: dict[str, LayerRef], image_layers: list[LayerRef]) -> dict[str, Any]:
    """The inline cache for an image config: each key whose layer is one of the image's, by index."""
    position = {layer.digest: i for i, layer in enumerate(image_layers)}
    keys = {key: position[layer.digest] for key, layer in sorted(entries.items()) if layer.digest in position}
    return {"version": VERSION, "entries": keys}


def is_hoist_cache(manifest: Manifest) -> bool:
    return (manifest.artifact_type == ARTIFACT_TYPE
            or (manifest.config is not None and manifest.config.media_type == CONFIG_TYPE))


def decode_cache(manifest: Manifest, config_raw: bytes) -> tuple[dict[str, LayerRef], dict[MountKey, LayerRef]]:
    """The entries and cache mounts of a cache artifact; CacheInvalid when the config is corrupt
    or disagrees with the manifest (never a partial answer)."""
    try:
        doc = json.loads(config_raw)
    except (ValueError, UnicodeDecodeError):
        raise CacheInvalid("its config is not JSON") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise CacheInvalid(f"its config is not a version {VERSION} hoist cache config")
    layers_doc, entries_doc = doc.get("layers"), doc.get("entries")
    if not isinstance(layers_doc, list) or not isinstance(entries_doc, dict):
        raise CacheInvalid("its config lacks layers or entries")
    if len(layers_doc) != len(manifest.layers):
        raise CacheInvalid(f"its config lists {len(layers_doc)} layers, its manifest {len(manifest.layers)}")
    layers: list[LayerRef] = []
    for i, (entry, desc) in enumerate(zip(layers_doc, manifest.layers, strict=True)):
        if not isinstance(entry, dict):
            raise CacheInvalid(f"layer {i} of its config is not an object")
        diff_id = entry.get("diffID")
        if not (isinstance(diff_id, str) and _HEX64.fullmatch(diff_id)):
            raise CacheInvalid(f"layer {i} of its config has no valid diffID")
        if (entry.get("digest") != str(desc.digest) or entry.get("size") != desc.size
                or entry.get("mediaType") != desc.media_type):
            raise CacheInvalid(f"layer {i} of its config does not match the manifest's")
        if desc.media_type not in mt.LAYERS:
            raise CacheInvalid(f"layer {i} has media type {desc.media_type}, not a layer's")
        layers.append(LayerRef(str(desc.digest), diff_id, desc.size, desc.media_type,
                               created=valid_time(entry.get("created"))))
    return _entries(entries_doc, layers), _mounts(doc.get("mounts"), layers)


def _mounts(doc: object, layers: list[LayerRef]) -> dict[MountKey, LayerRef]:
    if doc is None:
        return {}
    if not isinstance(doc, list) or len(doc) > MAX_MOUNTS:
        raise CacheInvalid(f"its mounts are not a list of at most {MAX_MOUNTS}")
    out: dict[MountKey, LayerRef] = {}
    for item in doc:
        if not isinstance(item, dict):
            raise CacheInvalid("a mount of its config is not an object")
        cache_id, origin, index = item.get("id"), item.get("origin"), item.get("layer")
        if not (isinstance(cache_id, str) and isinstance(origin, str) and 0 < len(cache_id) <= MAX_MOUNT_NAME
                and len(origin) <= MAX_MOUNT_NAME and "\0" not in cache_id + origin):
            raise CacheInvalid("a mount of its config has no valid id and origin")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(layers):
            raise CacheInvalid(f"mount {cache_id[:40]!r} names layer {index!r}, which is not there")
        out[(cache_id, origin)] = layers[index]
    return out


def decode_inline(manifest: Manifest, config: dict[str, Any]) -> dict[str, LayerRef]:
    """The inline cache of an image (empty if it has none); CacheInvalid when it is corrupt."""
    inline = config.get(INLINE_FIELD)
    if inline is None:
        return {}
    if not isinstance(inline, dict) or inline.get("version") != VERSION or not isinstance(inline.get("entries"), dict):
        raise CacheInvalid(f"its {INLINE_FIELD} is not a version {VERSION} inline cache")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") if isinstance(config.get("rootfs"), dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(manifest.layers):
        raise CacheInvalid("its config's diff_ids do not match its layers")
    layers = []
    for desc, diff_id in zip(manifest.layers, diff_ids, strict=True):
        if not (isinstance(diff_id, str) and _HEX64.fullmatch(diff_id)) or desc.media_type not in mt.LAYERS:
            raise CacheInvalid("its layers are not image layers with sha256 diff_ids")
        layers.append(LayerRef(str(desc.digest), diff_id, desc.size, desc.media_type))
    return _entries(inline["entries"], layer_times(layers, config))


def _entries(doc: dict[Any, Any], layers: list[LayerRef]) -> dict[str, LayerRef]:
    if len(doc) > MAX_ENTRIES:
        raise CacheInvalid(f"it has {len(doc)} entries (at most {MAX_ENTRIES})")
    out: dict[str, LayerRef] = {}
    for key, index in doc.items():
        if not (isinstance(key, str) and _KEY.fullmatch(key)):
            raise CacheInvalid(f"it has an invalid cache key {str(key)[:80]!r}")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(layers):
            raise CacheInvalid(f"entry {key[:16]} names layer {index!r}, which is not there")
        out[key] = layers[index]
    return out


# -- import -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Hit:
    layer: LayerRef
    ref: str


class ImportedCache:
    """The entries of every ``--cache-from``, as the executor consults them: ``lookup`` on a
    local miss, ``fetch`` when a step needs a remote layer's files. Thread-safe."""

    def __init__(self, registry: CacheRegistry) -> None:
        self.registry = registry
        self.entries: dict[str, _Hit] = {}
        self.sources: dict[str, str] = {}          # layer digest -> the ref to fetch it from
        self.fetched: set[str] = set()
        self.mounts: dict[MountKey, _Hit] = {}     # cache mounts (mounts=true), by key
        self.lock = threading.Lock()

    def lookup(self, key: str) -> LayerRef | None:
        hit = self.entries.get(key)
        return hit.layer if hit is not None else None

    def has_source(self, digest: str) -> bool:
        return digest in self.sources

    def fetch(self, layer: LayerRef) -> None:
        """Bring the remote layer's blob into the local store (once); raises CacheUnavailable."""
        ref = self.sources.get(layer.digest)
        if ref is None:
            raise CacheUnavailable(f"layer {layer.digest} is not from an imported cache")
        self.registry.fetch_layer(ref, layer)
        with self.lock:
            self.fetched.add(layer.digest)

    def mount(self, cache_id: str, origin: str) -> LayerRef | None:
        """The imported contents of the cache mount (``cache_id``, ``origin``), if any."""
        hit = self.mounts.get((cache_id, origin))
        return hit.layer if hit is not None else None

    def add(self, ref: str, entries: dict[str, LayerRef], mounts: dict[MountKey, LayerRef] | None = None) -> int:
        """Take ``ref``'s entries and mounts (the first import that has a key wins); how many
        entries were new."""
        added = 0
        for key, layer in entries.items():
            if key not in self.entries:
                self.entries[key] = _Hit(layer, ref)
                self.sources.setdefault(layer.digest, ref)
                added += 1
        for mount_key, layer in (mounts or {}).items():
            if mount_key not in self.mounts:
                self.mounts[mount_key] = _Hit(layer, ref)
                self.sources.setdefault(layer.digest, ref)
        return added


def import_caches(specs: Iterable[CacheSpec], registry: CacheRegistry, platform: Platform,
                  warn: Callable[[str], None]) -> ImportedCache:
    """Read every ``--cache-from``; each problem is a warning and that import is skipped."""
    imported = ImportedCache(registry)
    for spec in specs:
        assert spec.ref is not None
        try:
            entries, mounts = read_cache(registry, spec.ref, platform)
        except (CacheInvalid, CacheUnavailable) as e:
            warn(f"cache {spec.ref}: {e}; building without it")
            continue
        present, present_mounts = _present(registry, spec.ref, entries, mounts, warn)
        imported.add(spec.ref, present, present_mounts)
    return imported


def read_cache(registry: CacheRegistry, ref: str, platform: Platform
               ) -> tuple[dict[str, LayerRef], dict[MountKey, LayerRef]]:
    """The entries and cache mounts ``ref`` holds: a hoist cache artifact, or an image with an
    inline cache (which holds no mounts)."""
    raw, media_type = registry.manifest(ref)
    manifest = _parse(raw, media_type)
    if manifest.is_index:
        child = select_platform(manifest, platform)
        if child is None:
            raise CacheInvalid(f"it is an index without a {platform} image, not a hoist cache")
        raw, media_type = registry.manifest(ref, str(child.digest))
        manifest = _parse(raw, media_type)
        if manifest.is_index:
            raise CacheInvalid("it is a nested index, not a hoist cache")
    if manifest.config is None:
        raise CacheInvalid("it has no config, so it is not a hoist cache")
    if len(manifest.layers) > MAX_LAYERS:
        raise CacheInvalid(f"it lists {len(manifest.layers)} layers (at most {MAX_LAYERS})")
    if manifest.config.size > MAX_CONFIG_BYTES:
        raise CacheInvalid(f"its config is {manifest.config.size} bytes (at most {MAX_CONFIG_BYTES})")
    if is_hoist_cache(manifest):
        return decode_cache(manifest, registry.blob(ref, str(manifest.config.digest), MAX_CONFIG_BYTES))
    if manifest.config.media_type in mt.CONFIGS:
        try:
            config = json.loads(registry.blob(ref, str(manifest.config.digest), MAX_CONFIG_BYTES))
        except (ValueError, UnicodeDecodeError):
            raise CacheInvalid("its image config is not JSON") from None
        entries = decode_inline(manifest, config) if isinstance(config, dict) else {}
        if not entries:
            raise CacheInvalid("it is an image without a hoist inline cache, not a hoist cache")
        return entries, {}
    raise CacheInvalid(f"it is a {manifest.artifact_type or manifest.config.media_type} artifact, "
                       "not a hoist cache")


def _parse(raw: bytes, media_type: str) -> Manifest:
    try:
        return parse_manifest(raw, media_type)
    except (StorageError, ValueError) as e:
        raise CacheInvalid(f"its manifest is invalid ({e})") from None


def _present(registry: CacheRegistry, ref: str, entries: dict[str, LayerRef], mounts: dict[MountKey, LayerRef],
             warn: Callable[[str], None]) -> tuple[dict[str, LayerRef], dict[MountKey, LayerRef]]:
    """The entries and mounts whose layer the registry still holds; the others are misses."""
    digests = sorted({layer.digest for layer in [*entries.values(), *mounts.values()]})
    try:
        gone = registry.missing(ref, digests)
    except CacheUnavailable as e:
        warn(f"cache {ref}: cannot check its layers ({e}); building without it")
        return {}, {}
    if gone:
        warn(f"cache {ref}: {len(gone)} of its {len(digests)} layers are missing from the registry; "
             "the steps they hold will run")
    return ({key: layer for key, layer in entries.items() if layer.digest not in gone},
            {key: layer for key, layer in mounts.items() if layer.digest not in gone})


# -- export ---------------------------------------------------------------------------------------

@dataclass
class Recorder:
    """Every (key, layer) a build used or made, per stage index, in order (the executor fills it)."""

    stages: dict[int, list[tuple[str, LayerRef]]] = field(default_factory=dict)
    # Keys only some builds compute (COPY --from's content key, when its source key missed):
    # left out of the inline cache, so that the image config does not depend on which key hit.
    secondary: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, stage: int, key: str, layer: LayerRef) -> None:
        with self.lock:
            self.stages.setdefault(stage, []).append((key, layer))

    def entries(self, stages: Iterable[int], primary_only: bool = False) -> dict[str, LayerRef]:
        out: dict[str, LayerRef] = {}
        for index in stages:
            for key, layer in self.stages.get(index, []):
                if not (primary_only and key in self.secondary):
                    out[key] = layer
        return out
