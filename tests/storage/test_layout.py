"""The local OCI image layout: resumable writers, streams of unknown digest, platform matching,
index resolution, blob sources and garbage collection."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from storage import mediatypes as mt
from storage.digest import Digest
from storage.errors import DigestInvalid, ImageUnknown
from storage.layout import ImageLayout
from storage.manifest import parse_manifest
from storage.platform import Platform, select_platform
from tests.images import build_image, build_index
from tests.images import files_layer as tar_layer


@pytest.fixture
def layout(tmp_path: Path) -> ImageLayout:
    return ImageLayout(tmp_path / "images").init()


def test_writer_resumes_from_partial_and_verifies(layout: ImageLayout) -> None:
    data = b"0123456789" * 1000
    digest = Digest.of(data)
    with layout.writer(digest, len(data)) as w:
        w.write(data[:4000])
    with layout.writer(digest, len(data)) as w:
        assert w.offset == 4000
        w.write(data[4000:])
        w.commit()
    assert layout.read_blob(digest) == data
    assert not list((layout.root / "ingest").iterdir())


def test_writer_reset_and_bad_content(layout: ImageLayout) -> None:
    digest = Digest.of(b"right")
    w = layout.writer(digest, 5)
    w.write(b"wr")
    w.reset()
    w.write(b"wrong")
    with pytest.raises(DigestInvalid):
        w.commit()
    assert not layout.has_blob(digest) and not w.partial.exists()


def test_put_stream_of_unknown_digest(layout: ImageLayout) -> None:
    digest, size = layout.put_stream(io.BytesIO(b"abc" * 100_000))
    assert digest == Digest.of(b"abc" * 100_000) and size == 300_000 and layout.has_blob(digest)


@pytest.mark.parametrize("wanted, offered, match", [
    ("linux/amd64", "linux/amd64", True),
    ("linux/arm64", "linux/arm64/v8", True),
    ("linux/arm64/v8", "linux/arm64", True),
    ("linux/arm/v7", "linux/arm/v6", False),
    ("linux/arm", "linux/arm/v7", True),
    ("linux/amd64", "windows/amd64", False),
    ("linux/x86_64", "linux/amd64", True),
])
def test_platform_matching(wanted: str, offered: str, match: bool) -> None:
    assert Platform.parse(wanted).matches(Platform.parse(offered)) is match


@pytest.mark.parametrize("text", ["linux//amd64", "a/b/c/d", "", "linux/am d64", "linux/amd64/"])
def test_platform_parse_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        Platform.parse(text)


@pytest.mark.parametrize("text, normalised", [
    ("amd64", "linux/amd64"), ("Linux/X86_64", "linux/amd64"), ("linux/aarch64", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64"), ("linux/arm", "linux/arm/v7"), ("linux/armhf", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"), ("windows/amd64", "windows/amd64"), ("i686", "linux/386"),
])
def test_platform_normalisation(text: str, normalised: str) -> None:
    """containerd's platforms.Parse + Normalize: one normalisation for every command."""
    assert str(Platform.parse(text)) == normalised


def test_index_resolves_to_host_platform_present(layout: ImageLayout) -> None:
    amd = build_image(layout, None, [tar_layer({"a": b"amd"})])
    arm = build_image(layout, None, [tar_layer({"a": b"arm"})], arch="arm64")
    index = build_index(layout, "example.com/multi:1", {"linux/amd64": amd, "linux/arm64/v8": arm})
    assert select_platform(layout.manifest(index), Platform.parse("linux/arm64")).digest == arm.digest
    desc, manifest = layout.resolve_image("example.com/multi:1", Platform.parse("linux/amd64"))
    assert desc.digest == amd.digest and not manifest.is_index
    layout.delete_blob(arm.digest)
    with pytest.raises(ImageUnknown):
        layout.resolve_image("example.com/multi:1", Platform.parse("linux/arm64"))


def test_sources_are_recorded_and_forgotten_by_gc(layout: ImageLayout) -> None:
    desc = build_image(layout, "example.com/a:1", [tar_layer({"f": b"x"})])
    layers = [d.digest for d in layout.manifest(desc).layers]
    layout.record_sources(layers, "example.com/a")
    layout.record_sources(layers, "example.com/b")
    assert layout.sources(layers[0]) == ["example.com/a", "example.com/b"]
    layout.untag("example.com/a:1")
    gone = layout.gc()
    assert set(layers) <= set(gone) and desc.digest in gone
    assert layout.sources(layers[0]) == [] and list(layout.blobs()) == []


def test_gc_keeps_everything_a_ref_reaches(layout: ImageLayout) -> None:
    keep = build_image(layout, "example.com/keep:1", [tar_layer({"k": b"1"})])
    build_image(layout, "example.com/drop:1", [tar_layer({"d": b"2"})])
    layout.untag("example.com/drop:1")
    layout.gc()
    manifest = layout.manifest(keep)
    for d in [keep.digest, *(b.digest for b in manifest.blob_references())]:
        assert layout.has_blob(d)
    index = json.loads((layout.root / "index.json").read_text())
    assert index["mediaType"] == mt.OCI_INDEX and len(index["manifests"]) == 1
    assert parse_manifest(layout.read_blob(keep.digest)).config is not None


def test_gc_roots_are_kept_and_do_not_hide_what_a_ref_reaches(layout: ImageLayout) -> None:
    """A blob listed under gc-roots/ (the build cache) survives gc; a root that is also a tagged
    image's manifest does not stop gc from walking into that manifest's config and layers."""
    loose = layout.put_blob(b"a cached layer no image references")
    kept = build_image(layout, "example.com/kept:1", [tar_layer({"k": b"1"})])
    (layout.root / "gc-roots").mkdir()
    (layout.root / "gc-roots" / "build-x").write_text(f"{loose}\n{kept.digest}\nnot-a-digest\n")
    layout.gc()
    assert layout.has_blob(loose)
    for d in [kept.digest, *(b.digest for b in layout.manifest(kept).blob_references())]:
        assert layout.has_blob(d)


def test_one_writer_per_blob_across_threads(tmp_path: Path) -> None:
    """Two pulls sharing a layer: the second waits for the first, then finds the blob present;
    the partial file is never written by both (which could commit interleaved bytes)."""
    import threading

    layout = ImageLayout(tmp_path / "store").init()
    data = b"layer bytes " * 1000
    digest = Digest.of(data)
    first = layout.writer(digest, len(data))
    first.write(data[:5000])
    got: list[object] = []
    second_started = threading.Event()

    def second() -> None:
        second_started.set()
        w = layout.writer(digest, len(data))
        got.append(w.present)
        w.close()

    t = threading.Thread(target=second)
    t.start()
    second_started.wait()
    t.join(0.3)
    assert t.is_alive(), "the second writer must wait for the first"
    first.write(data[5000:])
    first.commit()
    t.join(10)
    assert got == [True]
    assert layout.read_blob(digest) == data


def test_ingest_takes_in_a_finished_blob(layout: ImageLayout) -> None:
    data = b"built layer" * 1000
    tmp = layout.ingest_dir() / ".layer-test"
    tmp.write_bytes(data)
    with layout.lease():
        path = layout.ingest(tmp, Digest.of(data))
    assert path == layout.blob_path(Digest.of(data)) and path.read_bytes() == data and not tmp.exists()
    # Already present: the new file is dropped, the stored blob kept.
    tmp.write_bytes(data)
    assert layout.ingest(tmp, Digest.of(data), verify=False) == path and not tmp.exists()
    # Verified: content that does not match is refused and removed.
    tmp.write_bytes(b"other")
    with pytest.raises(DigestInvalid):
        layout.ingest(tmp, Digest.of(b"expected"))
    assert not tmp.exists() and not layout.has_blob(Digest.of(b"expected"))
    assert list(layout.ingest_dir().iterdir()) == []
