"""Build-cache keys carry their derivation's version: an entry another hoist wrote under another
version (or before keys had one) is never a hit, and the version is part of the hash, not only of
the name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from builder.cache import KEY_VERSION, BuildCache, cache_key
from builder.dispatch import LayerRef

DOC = {"op": "run", "parent": "sha256:" + "0" * 64, "argv": ["/bin/sh", "-c", "true"], "env": []}
LAYER = LayerRef("sha256:" + "a" * 64, "sha256:" + "b" * 64, 10, "application/vnd.oci.image.layer.v1.tar+gzip")


def test_key_names_and_hashes_its_version() -> None:
    key = cache_key(DOC)
    prefix, _, digest = key.partition("-")
    assert prefix == f"v{KEY_VERSION}" and len(digest) == 64
    assert cache_key(dict(DOC)) == key                                   # deterministic
    other = cache_key(DOC, version=KEY_VERSION + 1)
    assert other.partition("-")[2] != digest                             # not just a new prefix
    # The unversioned derivation hoist used before keys had a version.
    legacy = hashlib.sha256(json.dumps(DOC, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert digest != legacy


def test_entries_of_another_version_are_never_hits(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path / "cache", tmp_path / "gc-roots")
    legacy = hashlib.sha256(json.dumps(DOC, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    cache.put(legacy, LAYER)
    cache.put(cache_key(DOC, version=KEY_VERSION - 1), LAYER)
    cache.put(cache_key(DOC, version=KEY_VERSION + 1), LAYER)
    assert cache.entry(cache_key(DOC)) is None
    cache.put(cache_key(DOC), LAYER)
    assert cache.entry(cache_key(DOC)) == (LAYER, None)
    assert (tmp_path / "gc-roots" / f"build-{cache_key(DOC)}").read_text() == LAYER.digest + "\n"
