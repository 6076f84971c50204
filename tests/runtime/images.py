"""Build small test images straight into an OCI image layout (no builder, no network).

``busybox_image(layout_dir)`` writes a ``FROM scratch``-style image of Debian's static busybox:
bin/busybox, applet symlinks, /etc/passwd and /etc/group with a non-root user ``app`` (1000:1000,
also in group ``staff``), and tags it ``docker.io/library/busybox:latest`` (or ``ref``).
``add_image`` takes any list of layer tars and a config, for images made to misbehave.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterable

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


def layer_tar(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, EPOCH
            if e.pax:
                info.pax_headers = dict(e.pax)
            kinds = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                     "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}
            info.type = kinds[e.kind]
            info.linkname = e.link
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


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


def add_image(layout_dir: str | Path, ref: str, layers: list[bytes], config: dict[str, Any],
              compression: str = "gzip") -> Descriptor:
    """Store ``layers`` (uncompressed tars) and ``config`` (the image config's ``config`` object)
    as an image manifest tagged with the normalised ``ref``."""
    layout = ImageLayout(layout_dir).init()
    layer_descs, diff_ids = [], []
    for raw in layers:
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        if compression == "gzip":
            blob, media_type = gzip.compress(raw, mtime=0), mt.OCI_LAYER_GZIP
        elif compression == "zstd":
            import zstandard
            blob, media_type = zstandard.ZstdCompressor().compress(raw), mt.OCI_LAYER_ZSTD
        else:
            blob, media_type = raw, mt.OCI_LAYER
        layer_descs.append({"mediaType": media_type, "digest": str(layout.put_blob(blob)), "size": len(blob)})
    image_config = {
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": [],
    }
    cfg = layout.put_json(image_config, mt.OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": cfg.to_json(),
                "layers": layer_descs}
    desc = layout.put_json(manifest, mt.OCI_MANIFEST)
    layout.tag(str(parse_reference(ref)), desc)
    return desc


def busybox_image(layout_dir: str | Path, ref: str = "busybox:latest", config: dict[str, Any] | None = None,
                  extra: Iterable[Entry] = (), more_layers: list[bytes] = (), compression: str = "gzip") -> Descriptor:
    cfg = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]}
    cfg.update(config or {})
    layers = [layer_tar(busybox_entries(extra))] + list(more_layers)
    return add_image(layout_dir, ref, layers, cfg, compression)
