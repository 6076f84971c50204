"""builder.prune.cache_records through its index: the same records as reading every entry,
with only new, replaced and touched entries opened again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from builder import prune
from builder.cache import BuildCache
from builder.dispatch import LayerRef
from builder.prune import RECORDS_INDEX, cache_records

SNAP = "sha256:" + "a" * 64


def _blob_path(root: Path):
    return lambda digest: root / "images" / "blobs" / digest.replace(":", "/")


def _layer(n: int, lazy: bool = False) -> LayerRef:
    digest = "" if lazy else f"sha256:{n:064x}"
    return LayerRef(digest, f"sha256:{n + 1000:064x}", 100 + n, "application/vnd.oci.image.layer.v1.tar+gzip",
                    created="2026-12-07T00:00:00Z")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    cache = BuildCache(tmp_path / "cache", tmp_path / "images" / "gc-roots")
    for n in range(5):
        cache.put(f"v1-key{n}", _layer(n))
        blob = _blob_path(tmp_path)(_layer(n).digest)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(b"x" * (10 + n))
    cache.put("v1-lazy", _layer(9, lazy=True), snapshot=SNAP)
    (tmp_path / "cache" / "build" / "http-etags.json").write_text("{}")     # not an entry
    return tmp_path


def _fresh(root: Path) -> list[prune.CacheRecord]:
    (root / "cache" / "build" / RECORDS_INDEX).unlink(missing_ok=True)
    return cache_records(root, _blob_path(root))


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    real = BuildCache.entry

    def entry(self: BuildCache, key: str) -> tuple[LayerRef, str | None] | None:
        opened.append(key)
        return real(self, key)

    monkeypatch.setattr(BuildCache, "entry", entry)
    return opened


def test_the_index_gives_what_reading_every_entry_gives(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _fresh(root)
    assert [r.key for r in expected] == [f"v1-key{n}" for n in range(5)] + ["v1-lazy"]
    assert [r.size for r in expected] == [10, 11, 12, 13, 14, 109] and expected[-1].snapshot == SNAP
    opened = _counting(monkeypatch)
    assert cache_records(root, _blob_path(root)) == expected
    assert opened == []                     # every entry came from the index


def test_replaced_and_touched_entries_are_read_again(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_records(root, _blob_path(root))
    cache = BuildCache(root / "cache", root / "images" / "gc-roots")
    cache.put("v1-key1", _layer(7))                                     # a new layer for that key
    entry = root / "cache" / "build" / "v1-key2.json"
    os.utime(entry, (1_800_000_000, 1_800_000_000))                     # a hit touches its entry
    opened = _counting(monkeypatch)
    records = {r.key: r for r in cache_records(root, _blob_path(root))}
    assert sorted(opened) == ["v1-key1", "v1-key2"]
    assert records["v1-key1"].layer == _layer(7) and records["v1-key1"].size == 0   # its blob is not there
    assert records["v1-key2"].last_used == 1_800_000_000
    assert list(records.values()) == _fresh(root)


def test_a_damaged_or_lying_index_is_not_believed(root: Path) -> None:
    expected = _fresh(root)
    index = root / "cache" / "build" / RECORDS_INDEX
    index.write_text("[not json")
    assert cache_records(root, _blob_path(root)) == expected
    doc = json.loads(index.read_bytes())
    # An index naming a path for a lazy entry's snapshot, under the entry's own stamp.
    doc["v1-lazy"][3]["snapshot"] = "../../../etc"
    doc["v1-key0"][3] = {"digest": 7}
    index.write_text(json.dumps(doc))
    assert cache_records(root, _blob_path(root)) == expected
    assert json.loads(index.read_bytes())["v1-lazy"][3]["snapshot"] == SNAP


def test_removed_entries_leave_the_index(root: Path) -> None:
    cache_records(root, _blob_path(root))
    (root / "cache" / "build" / "v1-key3.json").unlink()
    assert "v1-key3" not in [r.key for r in cache_records(root, _blob_path(root))]
    assert "v1-key3" not in json.loads((root / "cache" / "build" / RECORDS_INDEX).read_bytes())
