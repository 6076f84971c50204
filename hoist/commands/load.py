"""hoist load -i FILE: load images from a docker-archive or OCI-archive tar (optionally
gzip-compressed), as ``docker save``, ``hoist save`` and ``skopeo copy ... oci-archive:`` write.

An OCI layout in the tar wins when it names its images (docker 25+ writes both): its manifests
are kept byte for byte, so digests survive. Otherwise ``manifest.json`` is read and each image
gets a new OCI manifest over its config and layers, stored as they are in the tar (uncompressed
or compressed, whichever they were). Every blob is hashed on the way in.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any

from hoist.commands.save import CONTAINERD_NAME
from hoist.config import local_store, user_errors
from hoist.errors import UserError
from storage import mediatypes as mt
from storage.digest import Digest
from storage.errors import DigestInvalid, StorageError
from storage.layout import ImageLayout
from storage.manifest import Descriptor
from storage.reference import parse_reference

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", metavar="FILE", help="the tar to read (default: stdin)")
    parser.add_argument("-q", "--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    layout = local_store()
    with user_errors(), _opened(args.input) as path:
        try:
            tar = tarfile.open(path, "r:*")
        except (tarfile.TarError, OSError):
            raise UserError(f"{args.input or 'stdin'} is not a tar archive (plain, gzip, bzip2 or xz)") from None
        with tar, layout.lease():
            loaded = load_archive(layout, tar)
    if not args.quiet:
        for line in loaded:
            print(line)
    return 0


class _opened:
    """The archive as a seekable file: the given path, or stdin spooled to a temporary file."""

    def __init__(self, path: str | None) -> None:
        self.path, self._tmp = path, None

    def __enter__(self) -> str:
        if self.path:
            if not Path(self.path).is_file():
                raise UserError(f"no such file: {self.path}")
            return self.path
        if sys.stdin.isatty():
            raise UserError("no archive given", hint="use -i FILE or pipe a tar to stdin")
        self._tmp = tempfile.NamedTemporaryFile(prefix="hoist-load-")
        shutil.copyfileobj(sys.stdin.buffer, self._tmp, 1 << 20)
        self._tmp.flush()
        return self._tmp.name

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.close()


def load_archive(layout: ImageLayout, tar: tarfile.TarFile) -> list[str]:
    """Load every image in ``tar``; return docker-style "Loaded image: ..." lines."""
    names = set(tar.getnames())
    docker_entries = _json_member(tar, "manifest.json") if "manifest.json" in names else None
    if "index.json" in names:
        loaded = _load_oci(layout, tar, docker_entries or [])
        if loaded:
            return loaded
    if docker_entries is None:
        raise UserError("the archive has neither manifest.json nor index.json: not an image archive")
    return _load_docker(layout, tar, docker_entries)


def _json_member(tar: tarfile.TarFile, name: str) -> Any:
    try:
        return json.loads(_member(tar, name).read())
    except ValueError as e:
        raise UserError(f"{name} in the archive is not valid JSON: {e}") from None


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    """A member's bytes. A sparse member is refused: an image archive never holds one, and its
    holes would expand on read (a 10 KiB archive could write gigabytes into the store)."""
    try:
        info = tar.getmember(name.lstrip("./"))
    except KeyError:
        raise UserError(f"the archive lacks {name}") from None
    if info.issparse():
        raise UserError(f"{name} in the archive is a sparse file: refused (image archives hold none)")
    try:
        f = tar.extractfile(info)
    except KeyError:
        f = None
    if f is None:
        raise UserError(f"the archive lacks {name}")
    return f


def _load_oci(layout: ImageLayout, tar: tarfile.TarFile, docker_entries: list[dict[str, Any]]) -> list[str]:
    index = _json_member(tar, "index.json")
    tags_by_config = {e.get("Config", "").rsplit("/", 1)[-1]: e.get("RepoTags") or [] for e in docker_entries}
    named: list[tuple[str, Descriptor]] = []
    for entry in index.get("manifests") or []:
        desc = Descriptor.from_json(entry, "index.json")
        for name in _oci_names(desc, tar, tags_by_config):
            named.append((name, desc))
    if not named and docker_entries:
        return []
    for member in tar.getmembers():
        if member.isfile() and member.name.lstrip("./").startswith("blobs/"):
            _copy_blob(layout, tar, member)
    lines = []
    for name, desc in named:
        if name.startswith("sha256:"):
            layout.tag(name, desc)
            lines.append(f"Loaded image ID: {name}")
        else:
            layout.tag(name, Descriptor(desc.media_type, desc.digest, desc.size, platform=desc.platform))
            lines.append(f"Loaded image: {parse_reference(name).familiar()}")
    return lines


def _oci_names(desc: Descriptor, tar: tarfile.TarFile, tags_by_config: dict[str, list[str]]) -> list[str]:
    """Full names for an OCI index entry: docker's annotation, a full ref.name, the matching
    manifest.json entry; else its digest (loaded untagged)."""
    full = desc.annotations.get(CONTAINERD_NAME)
    if full:
        return [str(parse_reference(full))]
    ref_name = desc.annotations.get(mt.ANNOTATION_REF_NAME, "")
    if "/" in ref_name:
        return [str(parse_reference(ref_name))]
    try:
        manifest = json.loads(_member(tar, f"blobs/{desc.digest.algorithm}/{desc.digest.hex}").read())
        config_hex = Digest.parse(manifest["config"]["digest"]).hex
    except (UserError, ValueError, KeyError, TypeError, StorageError):
        config_hex = ""
    if tags_by_config.get(config_hex):
        return [str(parse_reference(t)) for t in tags_by_config[config_hex]]
    return [str(desc.digest)]


def _copy_blob(layout: ImageLayout, tar: tarfile.TarFile, member: tarfile.TarInfo) -> Digest:
    parts = member.name.lstrip("./").split("/")
    try:
        expected = Digest.parse(f"{parts[1]}:{parts[2]}")
    except (IndexError, DigestInvalid):
        raise UserError(f"unexpected file in the archive's blobs/: {member.name}") from None
    if layout.has_blob(expected):
        return expected
    got, _ = layout.put_stream(_member(tar, member.name))
    if got != expected:
        layout.delete_blob(got)
        raise UserError(f"{member.name} in the archive hashes to {got}: refused")
    return got


def _load_docker(layout: ImageLayout, tar: tarfile.TarFile, entries: list[dict[str, Any]]) -> list[str]:
    lines = []
    for entry in entries:
        config_digest, config_size = layout.put_stream(_member(tar, entry["Config"]))
        layers = [_load_layer(layout, tar, path) for path in entry.get("Layers") or []]
        manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                    "config": {"mediaType": mt.OCI_CONFIG, "digest": str(config_digest), "size": config_size},
                    "layers": [d.to_json() for d in layers]}
        desc = layout.put_json(manifest, mt.OCI_MANIFEST)
        tags = entry.get("RepoTags") or []
        for tag in tags:
            layout.tag(str(parse_reference(tag)), desc)
            lines.append(f"Loaded image: {tag}")
        if not tags:
            layout.tag(str(desc.digest), desc)
            lines.append(f"Loaded image ID: {config_digest}")
    return lines


def _load_layer(layout: ImageLayout, tar: tarfile.TarFile, path: str) -> Descriptor:
    """Store a layer as it is in the tar, typed by its compression."""
    f = _member(tar, path)
    head = f.read(4)
    f.seek(0)
    media = (mt.OCI_LAYER_GZIP if head.startswith(_GZIP_MAGIC)
             else mt.OCI_LAYER_ZSTD if head.startswith(_ZSTD_MAGIC) else mt.OCI_LAYER)
    digest, size = layout.put_stream(f)
    return Descriptor(media, digest, size)
