"""Test images written straight into an OCI image layout (no builder, no network): the one home
for every test's layer tars and images.

- ``Entry`` + ``layer_tar(entries)``: one deterministic tar writer; ``files_layer(files)`` builds
  the entries from a ``{path: bytes | Path | "->target"}`` mapping.
- ``add_image(layout, ref, layers, config)``: one image writer (layer blobs, config, manifest and
  the index.json ref) over ``storage.layout.ImageLayout``; ``write_image``, ``build_image`` and the
  busybox images below are shapes of it.
- ``busybox_image(layout)``: a runnable ``FROM scratch``-style image of Debian's static busybox
  (applet links, /etc/passwd and /etc/group with a non-root user ``app`` 1000:1000 in group
  ``staff``), tagged ``docker.io/library/busybox:latest`` (or ``ref``).
- ``distinct_busybox_image(layout, ref)``: busybox in one layer plus a small layer that makes each
  image distinct (for transfer tests, where identical images would share every blob).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import mediatypes as mt
from storage.layout import ImageLayout
from storage.manifest import Descriptor
from storage.reference import parse_reference

BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "echo", "cat", "id", "hostname", "sleep", "ls", "env", "pwd", "true", "false",
           "touch", "ps", "grep", "wc", "mkdir", "rm", "test", "kill", "ip", "ifconfig", "stat",
           "readlink", "head", "tr", "sed", "printf", "trap", "mount", "umount", "chmod", "date")
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "app:x:1000:1000:app user:/home/app:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = ("root:x:0:\nwheel:x:10:root\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n")
EPOCH = 1_700_000_000
_KINDS = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
          "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}


@dataclass(frozen=True)
class Entry:
    """One tar entry: kind is file, dir, symlink, hardlink, char, fifo; ``data`` or ``link``."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    pax: dict[str, str] | None = None
    mtime: int = EPOCH


def layer_tar(entries: Iterable[Entry]) -> bytes:
    """An uncompressed PAX tar of ``entries``, in the order given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, e.mtime
            if e.pax:
                info.pax_headers = dict(e.pax)
            info.type = _KINDS[e.kind]
            info.linkname = e.link
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def files_entries(files: Mapping[str, bytes | str | Path], mode: int = 0o755) -> list[Entry]:
    """Entries (mtime 0) for ``files``: path -> bytes, text, a file to copy, or "->target" for a
    symlink; the files' parent directories first, then the files in sorted order."""
    dirs = sorted({str(Path(p).parent) for p in files if str(Path(p).parent) != "."})
    entries = [Entry(d, "dir", mode=0o755, mtime=0) for d in dirs]
    for path in sorted(files):
        content = files[path]
        if isinstance(content, str) and content.startswith("->"):
            entries.append(Entry(path, "symlink", link=content[2:], mtime=0))
            continue
        if isinstance(content, Path):
            content = content.read_bytes()
        data = content.encode() if isinstance(content, str) else content
        entries.append(Entry(path, data=data, mode=mode, mtime=0))
    return entries


def files_layer(files: Mapping[str, bytes | str | Path], mode: int = 0o755) -> bytes:
    """A deterministic uncompressed tar of ``files`` (see ``files_entries``)."""
    return layer_tar(files_entries(files, mode))


_GZIPPED: dict[tuple[str, int], bytes] = {}


def _gzip(raw: bytes, level: int) -> bytes:
    """gzip without a name or time, so deterministic: each distinct layer is compressed once per
    session (the busybox layer is in most images)."""
    key = (hashlib.sha256(raw).hexdigest(), level)
    if key not in _GZIPPED:
        _GZIPPED[key] = gzip.compress(raw, compresslevel=level, mtime=0)
    return _GZIPPED[key]


def add_image(layout: str | Path | ImageLayout, ref: str | None, layers: list[bytes], config: dict[str, Any],
              compression: str | None = "gzip", *, arch: str = "amd64", compresslevel: int = 9,
              docker_types: bool = False, created: str | None = None, normalise: bool = True) -> Descriptor:
    """Store ``layers`` (uncompressed tars, compressed with ``compression``: gzip, zstd or None)
    and ``config`` (the image config's ``config`` object) as an image manifest; tag it ``ref``
    (normalised unless ``normalise=False``) when given."""
    store = layout if isinstance(layout, ImageLayout) else ImageLayout(layout).init()
    layer_descs, diff_ids = [], []
    for raw in layers:
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        if compression == "gzip":
            blob = _gzip(raw, compresslevel)
            media_type = mt.DOCKER_LAYER if docker_types else mt.OCI_LAYER_GZIP
        elif compression == "zstd":
            import zstandard
            blob, media_type = zstandard.ZstdCompressor().compress(raw), mt.OCI_LAYER_ZSTD
        elif compression is None:
            blob, media_type = raw, mt.OCI_LAYER
        else:
            raise ValueError(f"unknown compression {compression!r}")
        layer_descs.append({"mediaType": media_type, "digest": str(store.put_blob(blob)), "size": len(blob)})
    image_config: dict[str, Any] = {"architecture": arch, "os": "linux"}
    if created is not None:
        image_config["created"] = created
    image_config.update({"config": config, "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": []})
    cfg = store.put_json(image_config, mt.DOCKER_CONFIG if docker_types else mt.OCI_CONFIG)
    manifest_type = mt.DOCKER_MANIFEST if docker_types else mt.OCI_MANIFEST
    manifest = {"schemaVersion": 2, "mediaType": manifest_type, "config": cfg.to_json(), "layers": layer_descs}
    desc = store.put_json(manifest, manifest_type)
    if ref is not None:
        store.tag(str(parse_reference(ref)) if normalise else ref, desc)
    return desc


def write_image(layout: Path, ref: str, layers: list[dict[str, bytes | str]],
                config_extra: dict[str, Any] | None = None) -> str:
    """An image with one gzip layer per dict of files, tagged ``ref`` as given; the manifest digest."""
    desc = add_image(layout, ref, [files_layer(files) for files in layers],
                     {"Env": ["PATH=/bin"], **(config_extra or {})}, compresslevel=1, normalise=False)
    return str(desc.digest)


def build_image(layout: ImageLayout, ref: str | None, layers: list[bytes], *, arch: str = "amd64",
                compress: bool = True, docker_types: bool = False, labels: dict[str, str] | None = None
                ) -> Descriptor:
    """An image of these layer tars (tagged ``ref`` as given, if given), with a creation time and
    labels, OCI or Docker media types."""
    return add_image(layout, ref, layers, {"Cmd": ["/bin/busybox", "sh"], "Labels": labels or {}},
                     "gzip" if compress else None, arch=arch, docker_types=docker_types,
                     created="2024-01-01T00:00:00Z", normalise=False)


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


def busybox_entries(extra: Iterable[Entry] = ()) -> list[Entry]:
    entries = [Entry("bin/", "dir", mode=0o755), Entry("bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755)]
    entries += [Entry(f"bin/{a}", "symlink", link="busybox", mode=0o777) for a in APPLETS]
    entries += [
        Entry("etc/", "dir", mode=0o755),
        Entry("etc/passwd", data=PASSWD.encode()),
        Entry("etc/group", data=GROUP.encode()),
        Entry("home/", "dir", mode=0o755),
        Entry("home/app/", "dir", mode=0o755, uid=1000, gid=1000),
        Entry("root/", "dir", mode=0o700),
        Entry("tmp/", "dir", mode=0o1777),
        Entry("proc/", "dir", mode=0o555), Entry("sys/", "dir", mode=0o555),
        Entry("dev/", "dir", mode=0o755),
    ]
    return entries + list(extra)


def busybox_image(layout_dir: str | Path | ImageLayout, ref: str = "busybox:latest",
                  config: dict[str, Any] | None = None, extra: Iterable[Entry] = (),
                  more_layers: Iterable[bytes] = (), compression: str = "gzip") -> Descriptor:
    """The runnable busybox image (see the module's docstring), plus ``extra`` entries and
    ``more_layers``; ``config`` adds to its Env and Cmd."""
    cfg: dict[str, Any] = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                           "Cmd": ["sh"]}
    cfg.update(config or {})
    layers = [layer_tar(busybox_entries(extra)), *more_layers]
    return add_image(layout_dir, ref, layers, cfg, compression)


def distinct_busybox_image(layout: ImageLayout, ref: str | None, extra: bytes = b"", arch: str = "amd64"
                           ) -> Descriptor:
    """busybox-static in one layer, plus a small layer (``extra``, else the ref) that makes each
    image distinct."""
    base = files_layer({"bin/busybox": BUSYBOX})
    top = files_layer({"etc/hoist-test": extra or ref.encode() if ref else b"x"}, mode=0o644)
    return build_image(layout, ref, [base, top], arch=arch)


def busybox_files() -> dict[str, bytes | str]:
    """Debian's static busybox with a few applet links (skipped by callers when absent)."""
    files: dict[str, bytes | str] = {"bin/busybox": BUSYBOX.read_bytes()}
    for applet in ("sh", "echo", "cat", "ls", "true", "id", "hostname", "sleep"):
        files[f"bin/{applet}"] = "->busybox"
    return files


def random_layers(count: int, size: int, seed: int = 0) -> list[dict[str, bytes | str]]:
    """``count`` layers, each one incompressible file of ``size`` bytes."""
    rng = random.Random(seed)
    return [{f"data/layer{i}.bin": rng.randbytes(size)} for i in range(count)]


def manifest_of(layout: Path, ref: str) -> tuple[str, bytes]:
    """(digest, bytes) of the manifest ``ref`` names in the layout's index.json."""
    digest = manifest_digest(layout, ref)
    return digest, (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def manifest_digest(layout_dir: Path, ref: str) -> str:
    doc = json.loads((layout_dir / "index.json").read_text())
    for entry in doc["manifests"]:
        if entry.get("annotations", {}).get(mt.ANNOTATION_REF_NAME) == ref:
            return str(entry["digest"])
    raise KeyError(ref)


def blob_digests(layout: Path) -> set[str]:
    return {f"sha256:{p}" for p in os.listdir(layout / "blobs" / "sha256")}
