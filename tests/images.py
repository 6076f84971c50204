"""Test images written straight into an OCI image layout: deterministic gzip layers from
given files, an OCI config, a manifest, and an index.json entry with a ref name."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path


def _blob(layout: Path, data: bytes) -> tuple[str, int]:
    hexd = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / hexd
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{hexd}", len(data)


def layer_tar(files: dict[str, bytes | str | Path], mode: int = 0o755) -> bytes:
    """An uncompressed tar of ``files`` (path -> bytes, a file to copy, or "->target" for a symlink)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p in files if str(Path(p).parent) != "."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for path in sorted(files):
            content = files[path]
            info = tarfile.TarInfo(path)
            info.mtime = 0
            if isinstance(content, str) and content.startswith("->"):
                info.type, info.linkname = tarfile.SYMTYPE, content[2:]
                tar.addfile(info)
            else:
                if isinstance(content, Path):
                    content = content.read_bytes()
                data = content.encode() if isinstance(content, str) else content
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_image(layout: Path, ref: str, layers: list[dict[str, bytes | str]],
                config_extra: dict | None = None) -> str:
    """Write an image with one gzip layer per dict into the OCI layout; return the manifest digest."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    diff_ids, descs = [], []
    for files in layers:
        tar = layer_tar(files)
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        gz = gzip.compress(tar, compresslevel=1, mtime=0)
        d, size = _blob(layout, gz)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": size})
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": ["PATH=/bin"], **(config_extra or {})},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": []}
    cd, csize = _blob(layout, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": csize},
                "layers": descs}
    raw = json.dumps(manifest).encode()
    md, msize = _blob(layout, raw)
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != ref]
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
                               "size": msize, "annotations": {"org.opencontainers.image.ref.name": ref}})
    index_path.write_text(json.dumps(index))
    return md


def busybox_files() -> dict[str, bytes | str]:
    """Debian's static busybox with a few applet links (skipped by callers when absent)."""
    data = Path("/usr/bin/busybox").read_bytes()
    files: dict[str, bytes | str] = {"bin/busybox": data}
    for applet in ("sh", "echo", "cat", "ls", "true", "id", "hostname", "sleep"):
        files[f"bin/{applet}"] = "->busybox"
    return files


def random_layers(count: int, size: int, seed: int = 0) -> list[dict[str, bytes | str]]:
    """``count`` layers, each one incompressible file of ``size`` bytes."""
    import random
    rng = random.Random(seed)
    return [{f"data/layer{i}.bin": rng.randbytes(size)} for i in range(count)]


def manifest_of(layout: Path, ref: str) -> tuple[str, bytes]:
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref:
            return m["digest"], (layout / "blobs" / "sha256" / m["digest"].split(":")[1]).read_bytes()
    raise KeyError(ref)


def blob_digests(layout: Path) -> set[str]:
    return {f"sha256:{p}" for p in os.listdir(layout / "blobs" / "sha256")}
