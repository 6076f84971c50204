"""Image archives: the tars ``docker save`` / ``docker load``, ``skopeo copy docker-archive:``
and ``oci-archive:`` read and write, to and from the local image store.

``write_docker_archive`` writes what docker 25+ writes: a docker-archive (``manifest.json``,
``repositories``, the config, and uncompressed layer tars named by their diff_id under
``blobs/sha256/``) that is at the same time an OCI image layout (``oci-layout``, ``index.json``
and a manifest over those same uncompressed layers). Layers are stored uncompressed because
docker-archive readers match them against the config's diff_ids.

``write_oci_archive`` writes an OCI image layout as a tar, blobs as they are in the store
(manifests byte for byte, so digests survive, and layers compressed as they were).

``read_archive`` loads either (docker's, hoist's, skopeo's; optionally compressed as a whole):
an OCI layout in the tar wins when it names its images (docker 25+ writes both): its manifests
are kept byte for byte. Otherwise ``manifest.json`` is read and each image gets a new OCI
manifest over its config and layers, stored as they are in the tar (uncompressed or compressed,
whichever they were, typed by sniffing). Every blob is hashed on the way in; the caller holds
``layout.lease()`` so garbage collection does not sweep blobs before they are tagged.

Errors are ``ArchiveInvalid`` (a tar that is not a readable image archive), ``DigestInvalid``
(content that does not match its digest) and the layout's own.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from typing import IO, Any

from storage import compression
from storage import mediatypes as mt
from storage.digest import Digest, Hasher
from storage.errors import ArchiveInvalid, DigestInvalid, ImageUnknown, StorageError
from storage.layout import ImageLayout
from storage.manifest import Descriptor
from storage.reference import parse_reference

COPY_BYTES = 1 << 20
# docker's annotation for the full image name in an OCI archive (ref.name holds just the tag).
CONTAINERD_NAME = "io.containerd.image.name"

# (ref name or None, descriptor): what ImageLayout.find returns.
NamedImage = tuple[str | None, Descriptor]


def open_archive(path: str) -> tarfile.TarFile:
    """The tar at ``path``, plain or compressed as a whole (gzip, bzip2 or xz)."""
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError):
        raise ArchiveInvalid(f"{path} is not a tar archive (plain, gzip, bzip2 or xz)") from None


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

    def abandon(self) -> None:
        """After a failure: drop what is buffered, so nothing more is written to ``fileobj``
        (not even when the stream is collected: a closed or broken output would raise there)."""
        stream = self.tar.fileobj
        if stream is not None:
            stream.closed = True  # type: ignore[attr-defined]  # tarfile._Stream: close() is then a no-op
        self.tar.closed = True  # type: ignore[attr-defined]  # set by TarFile itself; close() then returns

    def add_dir(self, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        self.tar.addfile(info)


def write_docker_archive(layout: ImageLayout, images: Sequence[NamedImage], out: IO[bytes]) -> None:
    """Write ``images`` to ``out`` as a docker-archive that is also an OCI layout (see above)."""
    archive = _Archive(out)
    try:
        _write_docker(archive, layout, images)
    except BaseException:
        archive.abandon()
        raise


def _write_docker(archive: _Archive, layout: ImageLayout, images: Sequence[NamedImage]) -> None:
    for d in ("blobs", "blobs/sha256"):
        archive.add_dir(d)
    entries: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for name, desc in images:
        _, manifest = layout.platform_image(desc, what=name)
        if manifest.config is None:
            raise ImageUnknown(f"{name or desc.digest} is not an image")
        config_raw = layout.read_blob(manifest.config.digest)
        archive.add_bytes(f"blobs/sha256/{manifest.config.digest.hex}", config_raw)
        diff_layers = [_add_layer(archive, layout, layer, diff)
                       for layer, diff in zip(manifest.layers, _diff_ids(config_raw), strict=False)]
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
        kind = mt.layer_compression(layer.media_type)
        with compression.decompressed(open(layout.blob_path(layer.digest), "rb"), kind) as plain:
            while block := plain.read(COPY_BYTES):
                tmp.write(block)
                hasher.update(block)
        if hasher.digest() != diff_id:
            raise DigestInvalid(f"layer {layer.digest} uncompresses to {hasher.digest()}, "
                            f"not the diff_id {diff_id} its config names")
        tmp.seek(0)
        archive.add_file(name, tmp, hasher.size)
    return Descriptor(mt.OCI_LAYER, diff_id, hasher.size)


def write_oci_archive(layout: ImageLayout, images: Sequence[NamedImage], out: IO[bytes]) -> None:
    """Write ``images`` to ``out`` as an OCI image layout tar: every blob they reach that is in
    the store, as it is stored; ``index.json`` names each (``ref.name`` the tag, as docker and
    buildx write it, and the full name in ``io.containerd.image.name``)."""
    archive = _Archive(out)
    try:
        _write_oci(archive, layout, images)
    except BaseException:
        archive.abandon()
        raise


def _write_oci(archive: _Archive, layout: ImageLayout, images: Sequence[NamedImage]) -> None:
    for d in ("blobs", "blobs/sha256"):
        archive.add_dir(d)
    index = []
    for name, desc in images:
        for blob in _reached(layout, desc):
            with open(layout.blob_path(blob), "rb") as f:
                archive.add_file(f"blobs/{blob.algorithm}/{blob.hex}", f, layout.blob_size(blob))
        entry = Descriptor(desc.media_type, desc.digest, desc.size, platform=desc.platform).to_json()
        if name and not name.startswith("sha256:"):
            ref = parse_reference(name, default_tag=False)
            entry["annotations"] = {CONTAINERD_NAME: name, mt.ANNOTATION_REF_NAME: ref.tag or name}
        index.append(entry)
    archive.add_bytes("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    archive.add_bytes("index.json", json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                                "manifests": index}).encode())
    archive.tar.close()


def _reached(layout: ImageLayout, desc: Descriptor) -> list[Digest]:
    """``desc`` and the blobs below it that the store holds (an index's absent platforms are
    left out, as a partial pull left them); a missing config or layer is an error."""
    out: list[Digest] = []
    todo = [desc]
    while todo:
        d = todo.pop()
        if d.digest in out:
            continue
        if d.media_type in mt.MANIFESTS:
            manifest = layout.manifest(d)
            todo += [c for c in manifest.manifests if layout.has_blob(c.digest)]
            todo += list(manifest.blob_references())
        elif not layout.has_blob(d.digest):
            layout.blob_size(d.digest)  # raises BlobUnknown naming it
        out.append(d.digest)
    return out


# -- sizes ---------------------------------------------------------------------------------------

def layer_content_size(path: str | os.PathLike[str]) -> int:
    """The bytes a layer's files take once unpacked (what docker reports as its size): the sum
    of its regular files' sizes, a hard link's data counted once, whiteouts and directories 0.
    Headers are read with the unpack bounds (``storage.tarlimits``). Raises ArchiveInvalid."""
    from storage.tarlimits import bounded_tarinfo

    total = 0
    try:
        f = open(path, "rb")
        with compression.decompressed(f, compression.sniff_file(f)) as plain:
            tar = tarfile.open(fileobj=plain, mode="r|", tarinfo=bounded_tarinfo(ArchiveInvalid, ArchiveInvalid))
            while (member := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # a layer may have a million entries
                if member.isreg():
                    total += member.size
    except (*_CORRUPT, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        raise ArchiveInvalid(f"layer {path} is not a readable tar ({_reason(e)})") from None
    return total


# -- a root file system tarball as an image (hoist import) ----------------------------------------

def import_rootfs(layout: ImageLayout, source: IO[bytes], *, architecture: str, os_name: str = "linux",
                  variant: str | None = None, comment: str = "", created: str,
                  config: dict[str, Any] | None = None) -> Descriptor:
    """Store the tar ``source`` (plain or compressed as a whole) as a one-layer image: the
    layer gzipped, its diff_id the plain tar's digest; the config says the platform, ``rootfs``,
    a history entry and ``config`` (docker import's image, with its ``-c`` changes). Every header
    is read with the unpack bounds first. Returns the manifest's descriptor (untagged). Raises ArchiveInvalid."""
    from storage.tarlimits import bounded_tarinfo

    ingest = layout.ingest_dir()
    with tempfile.TemporaryFile(dir=ingest) as plain:
        hasher = Hasher()
        try:
            kind = compression.sniff_file(source) if source.seekable() else compression.NONE
            with compression.decompressed(source, kind) as reader:
                while block := reader.read(COPY_BYTES):
                    plain.write(block)
                    hasher.update(block)
            plain.seek(0)
            tar = tarfile.open(fileobj=plain, mode="r|", tarinfo=bounded_tarinfo(ArchiveInvalid, ArchiveInvalid))
            entries = 0
            while tar.next() is not None:
                tar.members.clear()  # type: ignore[attr-defined]
                entries += 1
        except (*_CORRUPT, OSError) as e:
            if isinstance(e, OSError) and e.errno is not None:
                raise
            raise ArchiveInvalid(f"not a tar archive (plain, gzip, bzip2, xz or zstd): {_reason(e)}") from None
        if not entries:
            raise ArchiveInvalid("the tarball is empty: no root file system in it")
        diff_id = hasher.digest()
        plain.seek(0)
        import isal.igzip

        with tempfile.TemporaryFile(dir=ingest) as packed:
            with isal.igzip.GzipFile(fileobj=packed, mode="wb", compresslevel=2, mtime=0) as gz:
                while block := plain.read(COPY_BYTES):
                    gz.write(block)
            packed.seek(0)
            layer_digest, layer_size = layout.put_stream(packed)
    platform: dict[str, Any] = {"architecture": architecture, "os": os_name}
    if variant:
        platform["variant"] = variant
    image = {**platform, "created": created, "config": config or {},
              "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]},
              "history": [{"created": created, "comment": comment or "Imported from tarball"}]}
    config_desc = layout.put_json(image, mt.OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config_desc.to_json(),
                "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": str(layer_digest), "size": layer_size}]}
    return layout.put_json(manifest, mt.OCI_MANIFEST)


# -- compressing for a push ---------------------------------------------------------------------

def compress_layers(layout: ImageLayout, desc: Descriptor) -> Descriptor | None:
    """For an image manifest with uncompressed layers (what a ``docker save`` archive loads as):
    gzip each into the store, store a manifest over them (the same config, so the same diff_ids
    and image id; new layer digests), and point every ref that named ``desc`` at it, so the
    store keeps one form and a second push compresses nothing. Return the new manifest's
    descriptor, or None when there is nothing to compress (an index, or compressed layers).
    docker does the same on push: it gzips what ``docker load`` stored uncompressed."""
    manifest = layout.manifest(desc)
    if manifest.is_index or manifest.config is None:
        return None
    if not any(layer.media_type == mt.OCI_LAYER for layer in manifest.layers):
        return None
    gzip_type = mt.DOCKER_LAYER if manifest.media_type == mt.DOCKER_MANIFEST else mt.OCI_LAYER_GZIP
    doc = json.loads(manifest.raw)
    layers = []
    for entry, layer in zip(doc.get("layers") or [], manifest.layers, strict=True):
        if layer.media_type == mt.OCI_LAYER:
            digest, size = _gzip_blob(layout, layer.digest)
            entry = dict(entry, mediaType=gzip_type, digest=str(digest), size=size)
        layers.append(entry)
    doc["layers"] = layers
    raw = json.dumps(doc, separators=(",", ":")).encode()
    new = Descriptor(desc.media_type, layout.put_blob(raw), len(raw), platform=desc.platform)
    for name, old in layout.refs():
        if name and old.digest == desc.digest:
            layout.tag(name, new)
    return new


def _gzip_blob(layout: ImageLayout, digest: Digest) -> tuple[Digest, int]:
    """gzip blob ``digest`` (ISA-L, no name or time in the header) into the store."""
    import isal.igzip

    with tempfile.TemporaryFile(dir=layout.ingest_dir()) as tmp:
        with open(layout.blob_path(digest), "rb") as src, \
                isal.igzip.GzipFile(fileobj=tmp, mode="wb", compresslevel=2, mtime=0) as gz:
            while block := src.read(COPY_BYTES):
                gz.write(block)
        tmp.seek(0)
        return layout.put_stream(tmp)


# -- reading ------------------------------------------------------------------------------------

# What a truncated or corrupt archive raises while it is read: tarfile's own errors, a gzip or
# xz stream that ends early or holds garbage (EOFError, zlib.error, lzma.LZMAError, and
# gzip.BadGzipFile / bz2's OSError, told from a real I/O error by having no errno).
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


def read_archive(layout: ImageLayout, tar: tarfile.TarFile) -> list[str]:
    """Load every image in ``tar``; return docker-style "Loaded image: ..." lines.

    Member names are taken as ``tar -C DIR -c .`` writes them too (``./index.json``). Names are
    tagged only once every image's blobs are in; on any failure, the blobs this call added are
    removed again (unless a ref reaches them meanwhile), so a failed load leaves nothing behind.
    """
    added: list[Digest] = []
    try:
        source = _Source(tar, layout, added)
        tags = _read(source)
    except _CORRUPT as e:
        _forget(layout, added)
        raise ArchiveInvalid(f"the archive is truncated or corrupt ({_reason(e)})") from None
    except OSError as e:
        _forget(layout, added)
        if e.errno is None:
            raise ArchiveInvalid(f"the archive is truncated or corrupt ({_reason(e)})") from None
        raise
    except BaseException:
        _forget(layout, added)
        raise
    lines = []
    for name, desc, line in tags:
        layout.tag(name, desc)
        lines.append(line)
    return lines


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _forget(layout: ImageLayout, added: list[Digest]) -> None:
    if not added:
        return
    keep = layout.reachable()
    for digest in added:
        if digest not in keep:
            layout.delete_blob(digest)


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _ends_cleanly(tar: tarfile.TarFile) -> bool:
    """Whether an uncompressed tar file has the two zero blocks tar writes at its end (a stream
    cut at a member boundary reads as a shorter, complete archive otherwise). Compressed
    archives have their own end marks, checked by the decompressor."""
    f = tar.fileobj
    if not isinstance(f, io.BufferedReader | io.FileIO):
        return True
    members = tar.getmembers()
    if not members:
        return True
    last = members[-1]
    end = last.offset_data + (0 if last.issparse() else -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE)
    return os.fstat(f.fileno()).st_size - end >= 2 * tarfile.BLOCKSIZE


class _Source:
    """The archive's members by clean name, and the blobs put into the store from it."""

    def __init__(self, tar: tarfile.TarFile, layout: ImageLayout, added: list[Digest]) -> None:
        self.tar, self.layout, self.added = tar, layout, added
        self.members = {_clean(m.name): m for m in tar.getmembers()}
        if not _ends_cleanly(tar):
            raise ArchiveInvalid("the archive is truncated (it ends without tar's end-of-archive marker)")

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.member(name).read())
        except ValueError as e:
            raise ArchiveInvalid(f"{name} in the archive is not valid JSON: {e}") from None

    def member(self, name: str) -> IO[bytes]:
        """A member's bytes. A sparse member is refused: an image archive never holds one, and its
        holes would expand on read (a 10 KiB archive could write gigabytes into the store)."""
        info = self.members.get(_clean(name))
        if info is None:
            raise ArchiveInvalid(f"the archive lacks {name}")
        if info.issparse():
            raise ArchiveInvalid(f"{name} in the archive is a sparse file: refused (image archives hold none)")
        try:
            f = self.tar.extractfile(info)
        except KeyError:
            f = None
        if f is None:
            raise ArchiveInvalid(f"the archive lacks {name}")
        return f

    def put(self, name: str) -> tuple[Digest, int]:
        digest, size = self.layout.put_stream(self.member(name), record=self.added)
        return digest, size


# (ref name, descriptor, the line to print): what loading will tag, once everything is in.
_Tag = tuple[str, Descriptor, str]


def _read(source: _Source) -> list[_Tag]:
    docker_entries = source.json("manifest.json") if "manifest.json" in source.members else None
    if docker_entries is not None and not (
            isinstance(docker_entries, list)
            and all(isinstance(e, dict) and isinstance(e.get("Config"), str) for e in docker_entries)):
        raise ArchiveInvalid("manifest.json in the archive is not a list of images with a Config each")
    if "index.json" in source.members:
        loaded = _load_oci(source, docker_entries or [])
        if loaded:
            return loaded
    if docker_entries is None:
        raise ArchiveInvalid("the archive has neither manifest.json nor index.json: not an image archive")
    return _load_docker(source, docker_entries)


def _load_oci(source: _Source, docker_entries: list[dict[str, Any]]) -> list[_Tag]:
    index = source.json("index.json")
    if not isinstance(index, dict):
        raise ArchiveInvalid("index.json in the archive is not an OCI image index")
    tags_by_config = {e.get("Config", "").rsplit("/", 1)[-1]: e.get("RepoTags") or [] for e in docker_entries}
    named: list[tuple[str, Descriptor]] = []
    for entry in index.get("manifests") or []:
        desc = Descriptor.from_json(entry, "index.json")
        for name in _oci_names(desc, source, tags_by_config):
            named.append((name, desc))
    if not named and docker_entries:
        return []
    for clean, member in source.members.items():
        if member.isfile() and clean.startswith("blobs/"):
            _copy_blob(source, clean)
    out: list[_Tag] = []
    for name, desc in named:
        if name.startswith("sha256:"):
            out.append((name, desc, f"Loaded image ID: {name}"))
        else:
            out.append((name, Descriptor(desc.media_type, desc.digest, desc.size, platform=desc.platform),
                        f"Loaded image: {parse_reference(name).familiar()}"))
    return out


def _oci_names(desc: Descriptor, source: _Source, tags_by_config: dict[str, list[str]]) -> list[str]:
    """Full names for an OCI index entry: docker's annotation, a full ref.name, the matching
    manifest.json entry; else its digest (loaded untagged)."""
    full = desc.annotations.get(CONTAINERD_NAME)
    if full:
        return [str(parse_reference(full))]
    ref_name = desc.annotations.get(mt.ANNOTATION_REF_NAME, "")
    if "/" in ref_name:
        return [str(parse_reference(ref_name))]
    try:
        manifest = json.loads(source.member(f"blobs/{desc.digest.algorithm}/{desc.digest.hex}").read())
        config_hex = Digest.parse(manifest["config"]["digest"]).hex
    except (ValueError, KeyError, TypeError, StorageError):
        config_hex = ""
    if tags_by_config.get(config_hex):
        return [str(parse_reference(t)) for t in tags_by_config[config_hex]]
    return [str(desc.digest)]


def _copy_blob(source: _Source, name: str) -> Digest:
    parts = name.split("/")
    try:
        expected = Digest.parse(f"{parts[1]}:{parts[2]}")
    except (IndexError, DigestInvalid):
        raise ArchiveInvalid(f"unexpected file in the archive's blobs/: {name}") from None
    if source.layout.has_blob(expected):
        return expected
    got, _ = source.put(name)
    if got != expected:
        raise DigestInvalid(f"{name} in the archive hashes to {got}: refused")
    return got


def _load_docker(source: _Source, entries: list[dict[str, Any]]) -> list[_Tag]:
    out: list[_Tag] = []
    for entry in entries:
        config_digest, config_size = source.put(entry["Config"])
        layers = [_load_layer(source, path) for path in entry.get("Layers") or []]
        manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                    "config": {"mediaType": mt.OCI_CONFIG, "digest": str(config_digest), "size": config_size},
                    "layers": [d.to_json() for d in layers]}
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        digest = Digest.of(raw)
        if not source.layout.has_blob(digest):
            source.layout.put_blob(raw, digest)
            source.added.append(digest)
        desc = Descriptor(mt.OCI_MANIFEST, digest, len(raw))
        tags = entry.get("RepoTags") or []
        for tag in tags:
            out.append((str(parse_reference(tag)), desc, f"Loaded image: {tag}"))
        if not tags:
            out.append((str(desc.digest), desc, f"Loaded image ID: {config_digest}"))
    return out


def _load_layer(source: _Source, path: str) -> Descriptor:
    """Store a layer as it is in the tar, typed by its compression."""
    f = source.member(path)
    kind = compression.sniff_file(f)
    media = {compression.GZIP: mt.OCI_LAYER_GZIP, compression.ZSTD: mt.OCI_LAYER_ZSTD}.get(kind, mt.OCI_LAYER)
    digest, size = source.layout.put_stream(f, record=source.added)
    return Descriptor(media, digest, size)
