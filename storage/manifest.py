"""Manifest, index and descriptor parsing and validation.

Manifests are kept as the exact bytes that were pushed; parsing only reads them. The digest of
a manifest is always the digest of those bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from storage import mediatypes as mt
from storage.digest import Digest
from storage.errors import DigestInvalid, ManifestInvalid

# The image spec's JSON schema (defs-descriptor.json): RFC 6838 type "/" subtype, no parameters.
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\Z")
INT64_MAX = (1 << 63) - 1
# No real manifest nests more than a handful of levels; anything deeper is refused before it
# can cost recursion (the JSON decoder itself recurses).
MAX_DEPTH = 64


def valid_media_type(value: Any) -> TypeGuard[str]:
    """RFC 6838 type/subtype (no parameters), as the image spec's schema has it."""
    return isinstance(value, str) and _MEDIA_TYPE.match(value) is not None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, Any] | None = None
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise ManifestInvalid(f"{where}: descriptor must be an object")
        media_type = obj.get("mediaType")
        if not valid_media_type(media_type):
            raise ManifestInvalid(f"{where}: invalid mediaType {media_type!r}")
        digest_text: Any = obj.get("digest")   # Digest.parse refuses a non-string too
        try:
            digest = Digest.parse(digest_text)
        except DigestInvalid as e:
            raise ManifestInvalid(f"{where}: {e}") from None
        size = obj.get("size")
        if not _is_int(size) or not 0 <= size <= INT64_MAX:
            raise ManifestInvalid(f"{where}: size must be an integer from 0 to 2^63-1, not {size!r}")
        annotations = obj.get("annotations", {})
        if not _string_map(annotations):
            raise ManifestInvalid(f"{where}: annotations must map strings to strings")
        platform = obj.get("platform")
        if platform is not None:
            _check_platform(platform, where)
        artifact_type = obj.get("artifactType")
        if artifact_type is not None and not valid_media_type(artifact_type):
            raise ManifestInvalid(f"{where}: invalid artifactType {artifact_type!r}")
        urls = obj.get("urls", [])
        if not _string_list(urls):
            raise ManifestInvalid(f"{where}: urls must be a list of strings")
        if "data" in obj and not _base64(obj["data"]):
            raise ManifestInvalid(f"{where}: data must be a base64 string")
        return cls(media_type, digest, size, annotations, platform, artifact_type, tuple(urls))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        return out


def _base64(value: Any) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        return False
    return isinstance(value, str)


def _check_platform(platform: Any, where: str) -> None:
    if not isinstance(platform, dict) or not isinstance(platform.get("os"), str) \
            or not isinstance(platform.get("architecture"), str):
        raise ManifestInvalid(f"{where}: platform needs os and architecture strings")
    for key in ("os.version", "variant"):
        if key in platform and not isinstance(platform[key], str):
            raise ManifestInvalid(f"{where}: platform {key} must be a string")
    for key in ("os.features", "features"):
        if key in platform and not _string_list(platform[key]):
            raise ManifestInvalid(f"{where}: platform {key} must be a list of strings")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Go's decoder keeps the last of duplicate keys (case-insensitively); refusing them means
    # every client reads the manifest the registry validated.
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ManifestInvalid(f"duplicate key {dup!r}")
    return out


def _refuse_constant(name: str) -> Any:
    raise ManifestInvalid(f"{name} is not JSON")


def _check_depth(doc: Any) -> None:
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ManifestInvalid(f"manifest nests more than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _decode(raw: bytes) -> Any:
    """Strict JSON as the spec means it: UTF-8 without a BOM, no NaN/Infinity, no duplicate keys,
    no lone surrogates, nesting bounded by MAX_DEPTH."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestInvalid(f"manifest is not UTF-8: {e.reason} at byte {e.start}") from None
    if text.startswith("\ufeff"):
        raise ManifestInvalid("manifest starts with a byte order mark")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_refuse_constant)
    except RecursionError:
        raise ManifestInvalid(f"manifest nests more than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise ManifestInvalid(f"manifest is not valid JSON: {e}") from None
    _check_depth(doc)
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestInvalid("manifest holds a lone surrogate escape") from None
    except RecursionError:
        raise ManifestInvalid(f"manifest nests more than {MAX_DEPTH} levels") from None
    return doc


@dataclass(frozen=True)
class Manifest:
    """A parsed image manifest or index. ``raw`` holds the pushed bytes."""

    media_type: str
    raw: bytes
    doc: dict[str, Any]
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    @property
    def digest(self) -> Digest:
        return Digest.of(self.raw)

    def blob_references(self) -> tuple[Descriptor, ...]:
        """Blobs the manifest needs in its repository (config and layers), minus foreign layers."""
        refs = [self.config] if self.config else []
        refs += [d for d in self.layers if not d.urls]
        return tuple(refs)

    def effective_artifact_type(self) -> str | None:
        """artifactType as the referrers API reports it: the field, else the config's media type."""
        if self.artifact_type:
            return self.artifact_type
        if self.config is not None and not self.is_index:
            return self.config.media_type
        return None


def _media_type_of(doc: dict[str, Any], content_type: str | None) -> str:
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("mediaType must be a string")
    ctype = (content_type or "").split(";")[0].strip() or None
    if declared and ctype and declared != ctype and ctype in mt.MANIFESTS:
        raise ManifestInvalid(f"mediaType {declared!r} does not match Content-Type {ctype!r}")
    media_type = declared or (ctype if ctype in mt.MANIFESTS else None)
    if media_type is None:
        # OCI allows mediaType to be absent; the shape decides.
        media_type = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
    if media_type in (mt.DOCKER_MANIFEST_V1, mt.DOCKER_MANIFEST_V1_SIGNED):
        raise ManifestInvalid("Docker schema 1 manifests are not supported")
    if media_type not in mt.MANIFESTS:
        raise ManifestInvalid(f"unsupported manifest media type {media_type!r}")
    return media_type


def parse_manifest(raw: bytes, content_type: str | None = None) -> Manifest:
    """Parse and validate a manifest or index; raise ManifestInvalid with a reason."""
    doc = _decode(raw)
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    version = doc.get("schemaVersion")
    if not _is_int(version) or version != 2:
        raise ManifestInvalid(f"schemaVersion must be the integer 2, not {version!r}")
    media_type = _media_type_of(doc, content_type)
    subject = Descriptor.from_json(doc["subject"], "subject") if doc.get("subject") is not None else None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not valid_media_type(artifact_type):
        raise ManifestInvalid(f"invalid artifactType {artifact_type!r}")
    annotations = doc.get("annotations", {})
    if not _string_map(annotations):
        raise ManifestInvalid("annotations must map strings to strings")
    if media_type in mt.INDEXES:
        items = doc.get("manifests")
        if not isinstance(items, list):
            raise ManifestInvalid("an index needs a manifests list")
        if "config" in doc or "layers" in doc:
            raise ManifestInvalid("an index has no config or layers")
        manifests = tuple(Descriptor.from_json(d, f"manifests[{i}]") for i, d in enumerate(items))
        return Manifest(media_type, raw, doc, manifests=manifests, subject=subject,
                        artifact_type=artifact_type, annotations=annotations)
    if "manifests" in doc:
        raise ManifestInvalid("an image manifest has no manifests list")
    config = Descriptor.from_json(doc.get("config"), "config")
    layer_items = doc.get("layers")
    if layer_items is None and media_type == mt.OCI_MANIFEST:
        raise ManifestInvalid("layers is required")
    if not isinstance(layer_items, list):
        raise ManifestInvalid("layers must be a list")
    layers = tuple(Descriptor.from_json(d, f"layers[{i}]") for i, d in enumerate(layer_items))
    if media_type == mt.DOCKER_MANIFEST and config.media_type not in (mt.DOCKER_CONFIG, mt.DOCKER_PLUGIN_CONFIG) \
            and not config.media_type.startswith("application/"):
        raise ManifestInvalid(f"invalid config media type {config.media_type!r}")
    return Manifest(media_type, raw, doc, config=config, layers=layers, subject=subject,
                    artifact_type=artifact_type, annotations=annotations)
