"""Helpers for driving the hoist CLI and building small images in tests."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from storage import mediatypes as mt
from tests.images import layer_tar
from storage.digest import Digest
from storage.layout import ImageLayout
from storage.manifest import Descriptor

REPO_ROOT = Path(__file__).resolve().parents[2]
BUSYBOX = Path("/bin/busybox")


@dataclass
class Result:
    code: int
    out: str
    err: str


class Hoist:
    """Runs ``python -m hoist.cli`` with its own HOIST_ROOT and DOCKER_CONFIG."""

    def __init__(self, base: Path) -> None:
        self.root = base / "hoist-root"
        self.docker_config = base / "docker-config"
        self.env = dict(os.environ, HOIST_ROOT=str(self.root), DOCKER_CONFIG=str(self.docker_config),
                        PYTHONPATH=str(REPO_ROOT))

    @property
    def images(self) -> Path:
        return self.root / "images"

    def layout(self) -> ImageLayout:
        return ImageLayout(self.images).init()

    def __call__(self, *args: str, ok: bool = True, stdin: str | None = None, timeout: float = 120) -> Result:
        proc = subprocess.run([sys.executable, "-m", "hoist.cli", *args], capture_output=True, text=True,
                              env=self.env, input=stdin, timeout=timeout, cwd=REPO_ROOT)
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        if ok:
            assert proc.returncode == 0, f"hoist {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return result


def tar_layer(files: dict[str, bytes | Path], mode: int = 0o755) -> bytes:
    """A deterministic tar of ``files`` (path -> bytes, or a file to copy)."""
    return layer_tar(dict(files), mode)


def build_image(layout: ImageLayout, ref: str | None, layers: list[bytes], *, arch: str = "amd64",
                compress: bool = True, docker_types: bool = False, labels: dict[str, str] | None = None
                ) -> Descriptor:
    """Store an image made of these layer tars in ``layout`` (tagged ``ref`` if given)."""
    blobs, diff_ids = [], []
    for tar in layers:
        diff_ids.append(str(Digest.of(tar)))
        data = gzip.compress(tar, mtime=0) if compress else tar
        media = (mt.DOCKER_LAYER if docker_types else mt.OCI_LAYER_GZIP) if compress else mt.OCI_LAYER
        blobs.append(Descriptor(media, layout.put_blob(data), len(data)).to_json())
    config = {"architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
              "config": {"Cmd": ["/bin/busybox", "sh"], "Labels": labels or {}},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": []}
    config_desc = layout.put_json(config, mt.DOCKER_CONFIG if docker_types else mt.OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST if docker_types else mt.OCI_MANIFEST,
                "config": config_desc.to_json(), "layers": blobs}
    desc = layout.put_json(manifest, manifest["mediaType"])
    if ref:
        layout.tag(ref, desc)
    return desc


def build_index(layout: ImageLayout, ref: str, children: dict[str, Descriptor]) -> Descriptor:
    """An OCI index of ``children`` (platform "os/arch[/variant]" -> manifest descriptor)."""
    entries = []
    for plat, desc in children.items():
        parts = plat.split("/")
        platform = {"os": parts[0], "architecture": parts[1]}
        if len(parts) == 3:
            platform["variant"] = parts[2]
        entries.append(dict(desc.to_json(), platform=platform))
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    desc = layout.put_json(index, mt.OCI_INDEX)
    layout.tag(ref, desc)
    return desc


def busybox_image(layout: ImageLayout, ref: str | None, extra: bytes = b"", arch: str = "amd64") -> Descriptor:
    """busybox-static in one layer, plus a small layer that makes each image distinct."""
    base = tar_layer({"bin/busybox": BUSYBOX})
    top = tar_layer({"etc/hoist-test": extra or ref.encode() if ref else b"x"}, mode=0o644)
    return build_image(layout, ref, [base, top], arch=arch)


def manifest_digest(layout_dir: Path, ref: str) -> str:
    doc = json.loads((layout_dir / "index.json").read_text())
    for entry in doc["manifests"]:
        if entry.get("annotations", {}).get(mt.ANNOTATION_REF_NAME) == ref:
            return entry["digest"]
    raise KeyError(ref)
