"""storage.archive and storage.compression: docker and OCI archives written from the store and
read back (and by skopeo and umoci), and the compression sniffer on every format."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from storage import compression
from storage import mediatypes as mt
from storage.archive import open_archive, read_archive, write_docker_archive, write_oci_archive
from storage.errors import ArchiveInvalid
from storage.layout import ImageLayout, LocalImage
from tests.images import build_image, build_index
from tests.images import files_layer as tar_layer
from tests.peers import skopeo

PAYLOAD = b"hoist " * 10_000


@pytest.mark.parametrize("kind, packed", [
    ("gzip", gzip.compress(PAYLOAD)),
    ("zstd", zstandard.ZstdCompressor().compress(PAYLOAD)),
    ("bzip2", bz2.compress(PAYLOAD)),
    ("xz", lzma.compress(PAYLOAD)),
    ("none", PAYLOAD),
])
def test_sniff_and_decompress_each_format(tmp_path: Path, kind: str, packed: bytes) -> None:
    assert compression.sniff(packed) == kind
    path = tmp_path / "blob"
    path.write_bytes(packed)
    with open(path, "rb") as f:
        f.read(3)
        f.seek(0)
        assert compression.sniff_file(f) == kind and f.tell() == 0
        with compression.decompressed(f, kind) as plain:
            assert plain.read() == PAYLOAD
        assert f.closed


def test_sniff_edge_cases() -> None:
    assert compression.sniff(b"") == "none"
    assert compression.sniff(b"\x1f") == "none"            # too short to be gzip
    assert compression.sniff(b"\x28\xb5\x2f") == "none"    # a truncated zstd magic
    assert compression.sniff(b"BZh9") == "bzip2"
    with pytest.raises(ValueError):
        compression.decompressed(io.BytesIO(b""), "lz4")


@pytest.fixture
def layout(tmp_path: Path) -> ImageLayout:
    return ImageLayout(tmp_path / "images").init()


def _two_images(layout: ImageLayout) -> list[LocalImage]:
    build_image(layout, "registry.local:5000/team/app:1", [tar_layer({"a": b"1"}), tar_layer({"b": b"2"})])
    build_image(layout, "example.com/zstd:2", [tar_layer({"c": b"3"})], compress=False)
    return [layout.find("registry.local:5000/team/app:1"), layout.find("example.com/zstd:2")]


def test_docker_archive_round_trip(layout: ImageLayout, tmp_path: Path) -> None:
    images = _two_images(layout)
    path = tmp_path / "out.tar"
    with open(path, "wb") as f:
        write_docker_archive(layout, images, f)
    other = ImageLayout(tmp_path / "other").init()
    with open_archive(str(path)) as tar, other.lease():
        lines = read_archive(other, tar)
    assert lines == ["Loaded image: registry.local:5000/team/app:1", "Loaded image: example.com/zstd:2"]
    for ref in ("registry.local:5000/team/app:1", "example.com/zstd:2"):
        assert other.image_id(other.find(ref).descriptor) == layout.image_id(layout.find(ref).descriptor)
    # skopeo reads it as a docker archive too.
    skopeo("copy", f"docker-archive:{path}:registry.local:5000/team/app:1", f"oci:{tmp_path / 'sk'}:x")


def test_oci_archive_keeps_manifests_and_is_read_by_skopeo_and_umoci(layout: ImageLayout, tmp_path: Path) -> None:
    images = _two_images(layout)
    amd = layout.find("registry.local:5000/team/app:1").descriptor
    build_index(layout, "example.com/multi:1", {"linux/amd64": amd})
    images.append(layout.find("example.com/multi:1"))
    path = tmp_path / "oci.tar"
    with open(path, "wb") as f:
        write_oci_archive(layout, images, f)
    with tarfile.open(path) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        names = set(tar.getnames())
    digests = [e["digest"] for e in index["manifests"]]
    assert digests == [str(i.descriptor.digest) for i in images]           # byte for byte: same digests
    assert index["manifests"][0]["annotations"][mt.ANNOTATION_REF_NAME] == "1"
    assert {f"blobs/sha256/{d[7:]}" for d in digests} <= names
    other = ImageLayout(tmp_path / "other").init()
    with open_archive(str(path)) as tar, other.lease():
        read_archive(other, tar)
    assert other.find("example.com/multi:1").descriptor.digest == images[2].descriptor.digest
    skopeo("copy", f"oci-archive:{path}:1", f"oci:{tmp_path / 'sk'}:x")
    unpacked = tmp_path / "bundle"
    subprocess.run(["umoci", "raw", "unpack", "--rootless", "--image", f"{tmp_path / 'sk'}:x", str(unpacked)],
                   check=True, capture_output=True, timeout=120)
    assert (unpacked / "b").read_bytes() == b"2"


def test_hostile_archives(layout: ImageLayout, tmp_path: Path) -> None:
    def tar_of(members: dict[str, bytes]) -> Path:
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.tar"
        with tarfile.open(path, "w") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    bad = tmp_path / "not.tar"
    bad.write_bytes(b"hello")
    with pytest.raises(ArchiveInvalid, match="is not a tar archive"):
        open_archive(str(bad))
    for members, match in [
        ({"x": b""}, "neither manifest.json nor index.json"),
        ({"manifest.json": b"{"}, "not valid JSON"),
        ({"manifest.json": b'{"a": 1}'}, "not a list of images"),
        ({"manifest.json": b'[{"Config": "blobs/sha256/x"}]'}, "lacks blobs/sha256/x"),
    ]:
        with open_archive(str(tar_of(members))) as tar, pytest.raises(ArchiveInvalid, match=match):
            read_archive(layout, tar)
    assert layout.refs() == []
