"""The local verbs on the image store, no registry: images, tag, inspect, rmi (with garbage
collection), save and load, credentials and insecure-registry configuration, progress display."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from hoist import config
from hoist.progress import ProgressDisplay, human_size
from registry.client.auth import Credentials
from registry.client.events import Progress
from tests.cli.helpers import Hoist
from tests.images import build_image
from tests.images import distinct_busybox_image as busybox_image
from tests.images import files_layer as tar_layer


def test_tag_images_inspect_rmi(hoist: Hoist) -> None:
    layout = hoist.layout()
    desc = busybox_image(layout, "registry.local:5000/team/app:1.0")
    hoist("tag", "registry.local:5000/team/app:1.0", "app:latest")
    listed = hoist("images").out
    rows = [line.split()[:2] for line in listed.splitlines()[1:]]
    assert sorted(rows) == [["app", "latest"], ["registry.local:5000/team/app", "1.0"]]  # familiar names, as docker
    info = json.loads(hoist("inspect", "app").out)[0]
    assert info["Descriptor"]["digest"] == str(desc.digest)
    assert sorted(info["RepoTags"]) == ["docker.io/library/app:latest", "registry.local:5000/team/app:1.0"]
    image_id = info["Id"]
    assert hoist("images", "-q").out.split() == [image_id[7:19]] * 2  # a line per name, as docker
    assert "several names" in hoist("rmi", image_id[7:19], ok=False).err

    out = hoist("rmi", "app").out
    assert "Untagged: docker.io/library/app:latest" in out and "Deleted" not in out
    out = hoist("rmi", "registry.local:5000/team/app:1.0").out
    assert f"Deleted: {desc.digest}" in out
    assert list(layout.blobs()) == []
    assert "no such image" in hoist("rmi", "app", ok=False).err


def test_save_then_load_into_another_store(hoist: Hoist, tmp_path: Path) -> None:
    ref = "registry.local:5000/team/saved:2"
    busybox_image(hoist.layout(), ref)
    original = json.loads(hoist("inspect", ref).out)[0]
    archive = tmp_path / "images.tar"
    hoist("save", "-o", str(archive), ref)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        entries = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"manifest.json", "repositories", "oci-layout", "index.json"} <= names
    assert entries[0]["RepoTags"] == [ref]
    assert entries[0]["Layers"] == [f"blobs/sha256/{d[7:]}" for d in original["RootFS"]["diff_ids"]]

    other = Hoist(tmp_path / "other")
    assert f"Loaded image: {ref}" in other("load", "-i", str(archive)).out
    loaded = json.loads(other("inspect", ref).out)[0]
    assert loaded["Id"] == original["Id"] and loaded["RootFS"] == original["RootFS"]


def test_load_docker_archive_with_compressed_layers(hoist: Hoist, tmp_path: Path) -> None:
    """An old-style docker-archive (no OCI layout), one layer gzip-compressed."""
    layer = tar_layer({"hello": b"hi"})
    diff = hashlib.sha256(layer).hexdigest()
    config_raw = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff}"]}}).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in [("cfg.json", config_raw), ("abc/layer.tar", gzip.compress(layer)),
                           ("manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": ["old:1"],
                                                          "Layers": ["abc/layer.tar"]}]).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "old.tar"
    archive.write_bytes(buf.getvalue())
    assert "Loaded image: old:1" in hoist("load", "-i", str(archive)).out
    info = json.loads(hoist("inspect", "old:1").out)[0]
    assert info["Manifest"]["layers"][0]["mediaType"].endswith("tar+gzip")


def test_load_refuses_non_archives(hoist: Hoist, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    result = hoist("load", "-i", str(junk), ok=False)
    assert result.code != 0 and len(result.err.strip().splitlines()) == 1


def test_credentials_round_trip_like_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    (tmp_path / "dc").mkdir()
    (tmp_path / "dc" / "config.json").write_text(json.dumps({
        "auths": {"https://index.docker.io/v1/": {"auth": "aHViOmh1YnB3"}}, "proxies": {"keep": "me"}}))
    assert config.load_credentials("docker.io") == Credentials("hub", "hubpw")
    assert config.load_credentials("registry.local:5000") is None
    config.store_credentials("registry.local:5000", Credentials("u", "p:w"))
    assert config.load_credentials("registry.local:5000") == Credentials("u", "p:w")
    doc = json.loads((tmp_path / "dc" / "config.json").read_text())
    assert doc["proxies"] == {"keep": "me"} and doc["auths"]["registry.local:5000"] == {"auth": "dTpwOnc="}
    assert config.remove_credentials("registry.local:5000") and not config.remove_credentials("registry.local:5000")


def test_insecure_registries_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOIST_ROOT", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"insecure-registries": ["registry.local:5000"]}))
    assert config.is_insecure("registry.local:5000") and not config.is_insecure("other:5000")
    assert config.open_client("registry.local:5000")._fallback == "http://registry.local:5000"
    assert config.open_client("other:5000")._fallback is None


def test_progress_plain_lines_on_state_changes_only() -> None:
    out = io.StringIO()
    show = ProgressDisplay(out, tty=False)
    for event in [Progress("abc", "waiting", 0, 10), Progress("abc", "downloading", 5, 10),
                  Progress("abc", "downloading", 9, 10), Progress("abc", "done", 10, 10)]:
        show(event)
    assert out.getvalue().splitlines() == ["abc: Waiting", "abc: Downloading", "abc: Done (10B)"]


def test_progress_on_a_terminal_redraws_lines_with_rate() -> None:
    out = io.StringIO()
    now = [0.0]
    show = ProgressDisplay(out, tty=True, clock=lambda: now[0])
    show(Progress("aaa", "downloading", 0, 2_000_000))
    show(Progress("bbb", "exists", 5, 5))
    now[0] = 1.0
    show(Progress("aaa", "downloading", 1_000_000, 2_000_000))
    text = out.getvalue()
    assert "\x1b[2A" in text and "1MB/2MB" in text and "1MB/s" in text and "bbb: Exists" in text
    assert human_size(1234567) == "1.23MB" and human_size(999) == "999B"


def test_images_of_uncompressed_layers_report_size(hoist: Hoist) -> None:
    build_image(hoist.layout(), "plain:1", [tar_layer({"a": b"a" * 5000})], compress=False)
    assert "plain" in hoist("images").out


@pytest.mark.parametrize("fmt", ["gnu", "pax0.0", "pax1.0"])
def test_load_refuses_sparse_members(hoist: Hoist, tmp_path: Path, fmt: str) -> None:
    """A 10 KiB docker-archive whose layer is a sparse 2 GiB member must not expand into the
    store's ingest directory: it is refused in one line and nothing is written."""
    from tests.runtime.hostile import end, header, pad, sparse_entry
    config_json = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps([{"Config": "config.json", "RepoTags": ["sparse:1"], "Layers": ["layer.tar"]}]).encode()
    archive = tmp_path / "sparse.tar"
    archive.write_bytes(header("manifest.json", len(manifest)) + pad(manifest)
                        + header("config.json", len(config_json)) + pad(config_json)
                        + sparse_entry(fmt, "layer.tar", 2 << 30, [(0, b"x" * 512)]) + end())
    assert archive.stat().st_size < 16 << 10
    result = hoist("load", "-i", str(archive), ok=False)
    assert result.code != 0 and "layer.tar in the archive is a sparse file" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    ingest = hoist.root / "images" / "ingest"
    used = sum(p.stat().st_blocks * 512 for p in ingest.rglob("*") if p.is_file()) if ingest.exists() else 0
    assert used < 1 << 20
