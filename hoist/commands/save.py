"""hoist save -o FILE REF...: write images to a tar that ``docker load``, ``skopeo copy
docker-archive:`` and ``oci-archive:`` readers accept.

The tar is what docker 25+ writes: a docker-archive (``manifest.json``, ``repositories``, the
config, and uncompressed layer tars named by their diff_id under ``blobs/sha256/``) that is at the
same time an OCI image layout (``oci-layout``, ``index.json`` and a manifest over those same
uncompressed layers). Layers are stored uncompressed because docker-archive readers match them
against the config's diff_ids.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any

import zstandard
from isal import igzip

from hoist.commands.images import find_image
from hoist.config import local_store, user_errors
from hoist.errors import UserError
from storage import mediatypes as mt
from storage.digest import Digest, Hasher
from storage.layout import ImageLayout
from storage.manifest import Descriptor
from storage.reference import parse_reference

COPY_BYTES = 1 << 20
# docker's annotation for the full image name in an OCI archive (ref.name holds just the tag).
CONTAINERD_NAME = "io.containerd.image.name"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("refs", nargs="+", metavar="REF", help="image name, digest or ID")
    parser.add_argument("-o", "--output", metavar="FILE", help="the tar to write (default: stdout)")


def run(args: argparse.Namespace) -> int:
    if not args.output and sys.stdout.isatty():
        raise UserError("refusing to write a tar to a terminal", hint="use -o FILE or redirect stdout")
    layout = local_store()
    images = [find_image(layout, text) for text in args.refs]
    with user_errors():
        if args.output:
            out = Path(args.output)
            fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=".hoist-save-")
            try:
                with os.fdopen(fd, "wb") as f:
                    write_archive(layout, images, f)
                os.replace(tmp, out)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            write_archive(layout, images, sys.stdout.buffer)
    return 0


class _Archive:
    def __init__(self, fileobj: IO[bytes]) -> None:
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
        self.written: set[str] = set()

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_file(name, io.BytesIO(data), len(data))

    def add_file(self, name: str, f: IO[bytes], size: int) -> None:
        if name in self.written:
            return
        self.written.add(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o644
        self.tar.addfile(info, f)

    def add_dir(self, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        self.tar.addfile(info)


def write_archive(layout: ImageLayout, images: list[tuple[str | None, Descriptor]], out: IO[bytes]) -> None:
    archive = _Archive(out)
    for d in ("blobs", "blobs/sha256"):
        archive.add_dir(d)
    entries, index, repositories = [], [], {}
    for name, desc in images:
        _, manifest = layout.resolve_image(str(desc.digest))
        if manifest.config is None:
            raise UserError(f"{name or desc.digest} is not an image")
        config_raw = layout.read_blob(manifest.config.digest)
        archive.add_bytes(f"blobs/sha256/{manifest.config.digest.hex}", config_raw)
        diff_layers = [_add_layer(archive, layout, layer, diff)
                       for layer, diff in zip(manifest.layers, _diff_ids(config_raw))]
        oci_manifest = _oci_manifest(manifest.config, config_raw, diff_layers)
        archive.add_bytes(f"blobs/sha256/{Digest.of(oci_manifest).hex}", oci_manifest)
        tags = []
        if name and (ref := parse_reference(name, default_tag=False)).tag:
            tags.append(ref.familiar())
            repositories.setdefault(ref.familiar().rsplit(":", 1)[0], {})[ref.tag] = manifest.config.digest.hex
        entries.append({"Config": f"blobs/sha256/{manifest.config.digest.hex}", "RepoTags": tags,
                        "Layers": [f"blobs/sha256/{d.digest.hex}" for d in diff_layers]})
        index.append(_index_entry(oci_manifest, name))
    archive.add_bytes("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    archive.add_bytes("index.json", json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                                "manifests": index}).encode())
    archive.add_bytes("manifest.json", json.dumps(entries).encode())
    archive.add_bytes("repositories", json.dumps(repositories).encode())
    archive.tar.close()


def _diff_ids(config_raw: bytes) -> list[Digest]:
    config = json.loads(config_raw)
    return [Digest.parse(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]


def _index_entry(oci_manifest: bytes, name: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"mediaType": mt.OCI_MANIFEST, "digest": str(Digest.of(oci_manifest)),
                             "size": len(oci_manifest)}
    if name:
        ref = parse_reference(name, default_tag=False)
        entry["annotations"] = {CONTAINERD_NAME: name, mt.ANNOTATION_REF_NAME: ref.tag or name}
    return entry


def _oci_manifest(config: Descriptor, config_raw: bytes, layers: list[Descriptor]) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
           "config": {"mediaType": mt.OCI_CONFIG, "digest": str(config.digest), "size": len(config_raw)},
           "layers": [d.to_json() for d in layers]}
    return json.dumps(doc, separators=(",", ":")).encode()


def _add_layer(archive: _Archive, layout: ImageLayout, layer: Descriptor, diff_id: Digest) -> Descriptor:
    """Add the layer uncompressed under its diff_id, checking it really hashes to it."""
    name = f"blobs/sha256/{diff_id.hex}"
    (layout.root / "ingest").mkdir(exist_ok=True)
    with tempfile.TemporaryFile(dir=layout.root / "ingest") as tmp:
        hasher = Hasher()
        with open(layout.blob_path(layer.digest), "rb") as src, _decompressed(src, layer.media_type) as plain:
            while block := plain.read(COPY_BYTES):
                tmp.write(block)
                hasher.update(block)
        if hasher.digest() != diff_id:
            raise UserError(f"layer {layer.digest} uncompresses to {hasher.digest()}, "
                            f"not the diff_id {diff_id} its config names")
        tmp.seek(0)
        archive.add_file(name, tmp, hasher.size)
    return Descriptor(mt.OCI_LAYER, diff_id, hasher.size)


def _decompressed(f: IO[bytes], media_type: str) -> Any:
    kind = mt.layer_compression(media_type)
    if kind == "gzip":
        return igzip.IGzipFile(fileobj=f, mode="rb")
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(f)
    return _NoClose(f)


class _NoClose:
    def __init__(self, f: IO[bytes]) -> None:
        self.f = f

    def read(self, n: int) -> bytes:
        return self.f.read(n)

    def __enter__(self) -> _NoClose:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


