"""builder.layers writing straight into the local image store (ImageLayout.ingest): the same
blob as into a directory, no temporary left behind, and safe from gc while leased."""

from __future__ import annotations

import threading
from pathlib import Path

from builder.layers import FileEntry, layer_from_files, layer_from_upper
from storage.layout import ImageLayout


def test_layers_into_the_store_match_layers_into_a_directory(tmp_path: Path) -> None:
    layout = ImageLayout(tmp_path / "images").init()
    entries = [FileEntry("etc/app.conf", b"x = 1\n"), FileEntry("bin/", None, 0o40755)]
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "f").write_bytes(b"content")
    with layout.lease():
        stored = layer_from_files(entries, layout, compression="zstd")
        from_upper = layer_from_upper(upper, layout)
    plain = layer_from_files(entries, tmp_path / "out", compression="zstd")
    assert (stored.digest, stored.diff_id, stored.size) == (plain.digest, plain.diff_id, plain.size)
    assert stored.path == layout.blob_path(stored.digest) and stored.path.read_bytes() == plain.path.read_bytes()
    assert layout.has_blob(from_upper.digest) and from_upper.path == layout.blob_path(from_upper.digest)
    assert list(layout.ingest_dir().iterdir()) == []


def test_gc_waits_for_the_lease_of_a_build(tmp_path: Path) -> None:
    layout = ImageLayout(tmp_path / "images").init()
    swept: list[object] = []
    with layout.lease():
        blob = layer_from_files([FileEntry("a", b"1")], layout)
        gc = threading.Thread(target=lambda: swept.extend(layout.gc()))
        gc.start()
        # gc blocks on the lease: the untagged blob is still there while the build holds it.
        assert layout.has_blob(blob.digest) and not swept
    gc.join()
    # Once released, an untagged blob is garbage, as it should be.
    assert swept == [blob.digest] and not layout.has_blob(blob.digest)
