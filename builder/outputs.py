"""Outputs: where a built image goes besides (or instead of) the local image store.

``--output`` / ``-o`` in BuildKit's syntax:

============================  ========================================================================
``type=image``                the local image store under each ``-t`` (the default); ``push=true``
                              also pushes (``type=registry`` is ``type=image,push=true``, as BuildKit)
``type=oci,dest=FILE``        an OCI image layout as a tar (``tar=false``, or ``dest`` an existing
                              directory: the layout as a directory); blobs as stored, digests kept
``type=docker,dest=FILE``     a docker-archive ``docker load`` reads (``storage/archive.py``)
``type=local,dest=DIR``       the final root file system as files
``type=tar,dest=FILE``        the final root file system as one tar
``-o DIR`` / ``-o -``         ``type=local,dest=DIR`` / ``type=tar`` to stdout, as buildx
============================  ========================================================================

``dest=-`` writes a tar output to stdout. A destination is checked before the build and again
when written: a file output replaces only a regular file (written beside it, then renamed over
it, so a symlink swapped in is replaced, never followed); a directory output goes only into a
missing or empty directory. A device, FIFO, socket or symlink at ``dest`` is refused. Nothing
half-written is left: a failed output removes its temporary file or directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from builder.errors import BuilderError
from storage import mediatypes as mt
from storage.archive import write_docker_archive, write_oci_archive
from storage.layout import ImageLayout
from storage.manifest import Descriptor
from storage.reference import parse_reference

TYPES = ("image", "registry", "oci", "docker", "local", "tar")
FILE_TYPES = ("oci", "docker", "tar")
COPY_BYTES = 1 << 20


class OutputError(BuilderError):
    """An ``--output`` that cannot be used or written."""


@dataclass(frozen=True)
class OutputSpec:
    type: str                  # image | oci | docker | local | tar  (registry is image + push)
    dest: str | None = None
    push: bool = False
    as_dir: bool = False       # oci: a layout directory rather than a tar

    @property
    def to_stdout(self) -> bool:
        return self.dest == "-"


def parse_output(text: str) -> OutputSpec:
    if "=" not in text:
        if not text:
            raise OutputError("invalid --output '': expected type=TYPE[,dest=PATH] or a directory")
        return OutputSpec("tar", "-") if text == "-" else OutputSpec("local", text)
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise OutputError(f"invalid --output {text!r}: {part!r} is not key=value")
        fields[key.strip().lower()] = value.strip()
    kind = fields.pop("type", "")
    if kind not in TYPES:
        raise OutputError(f"invalid --output {text!r}: type must be one of {', '.join(TYPES)}")
    dest = fields.pop("dest", None) or None
    push = _bool(text, fields.pop("push", "true" if kind == "registry" else "false"))
    as_dir = not _bool(text, fields.pop("tar", "true")) if kind == "oci" else False
    if fields:
        raise OutputError(f"invalid --output {text!r}: unknown option {sorted(fields)[0]!r}")
    if kind in ("image", "registry"):
        if dest is not None:
            raise OutputError(f"invalid --output {text!r}: type={kind} has no dest (it names images with -t)")
        return OutputSpec("image", None, push)
    if push:
        raise OutputError(f"invalid --output {text!r}: push=true needs type=image")
    if dest is None:
        raise OutputError(f"invalid --output {text!r}: type={kind} needs dest=PATH")
    if dest == "-" and (kind == "local" or as_dir):
        raise OutputError(f"invalid --output {text!r}: a directory output cannot go to stdout")
    if kind == "oci" and not as_dir and _is_dir(dest):
        as_dir = True
    return OutputSpec(kind, dest, False, as_dir)


def _bool(text: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise OutputError(f"invalid --output {text!r}: {value!r} is not true or false")
    return value.lower() == "true"


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISREG, "a file")):
        if test(mode):
            return name
    return "a special file"


def check_destination(spec: OutputSpec) -> None:
    """Refuse a ``dest`` that exists and is not what ``spec`` writes (raises OutputError)."""
    if spec.dest is None or spec.to_stdout:
        return
    path = Path(spec.dest)
    writes_dir = spec.type == "local" or spec.as_dir
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        parent = path.parent
        if not parent.is_dir():
            raise OutputError(f"output {spec.dest}: its directory {str(parent)!r} does not exist") from None
        return
    except OSError as e:
        raise OutputError(f"output {spec.dest}: {e.strerror}") from None
    if writes_dir:
        if not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"output {spec.dest} exists and is {_kind(st.st_mode)}, not a directory: "
                              "refusing to write over it")
        if any(os.scandir(path)):
            raise OutputError(f"output directory {spec.dest} is not empty: refusing to write into it")
    elif not stat.S_ISREG(st.st_mode):
        raise OutputError(f"output {spec.dest} exists and is {_kind(st.st_mode)}, not a regular file: "
                          "refusing to write over it")


# -- writing --------------------------------------------------------------------------------------

@contextlib.contextmanager
def _file_at(spec: OutputSpec, stdout: IO[bytes]) -> Iterator[IO[bytes]]:
    """A file to write the output into: stdout, or a temporary file beside ``dest`` renamed
    over it once complete."""
    if spec.to_stdout:
        yield stdout
        stdout.flush()
        return
    assert spec.dest is not None
    check_destination(spec)
    dest = Path(spec.dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.hoist-")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        check_destination(spec)
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _dir_at(spec: OutputSpec) -> Iterator[Path]:
    """A temporary directory beside ``dest``, moved to ``dest`` once complete."""
    assert spec.dest is not None
    check_destination(spec)
    dest = Path(spec.dest)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.hoist-"))
    try:
        os.chmod(tmp, 0o755)
        yield tmp
        check_destination(spec)
        if dest.is_dir() and not dest.is_symlink():
            os.rmdir(dest)                          # empty (checked): replaced by the finished one
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_output(spec: OutputSpec, layout: ImageLayout, image: Descriptor, tags: list[str],
                 rootfs: Callable[[Path], None], stdout: IO[bytes]) -> None:
    """Write ``image`` (a manifest in ``layout`` whose blobs are all there) as ``spec`` says.
    ``rootfs(dir)`` writes the image's merged root file system into the empty ``dir``."""
    if spec.type == "image":
        return
    try:
        if spec.type == "docker":
            names: list[tuple[str | None, Descriptor]] = [(t, image) for t in tags] or [(None, image)]
            with _file_at(spec, stdout) as f:
                write_docker_archive(layout, names, f)
        elif spec.type == "oci":
            if spec.as_dir:
                with _dir_at(spec) as tmp:
                    write_oci_dir(layout, image, tags, tmp)
            else:
                with _file_at(spec, stdout) as f:
                    write_oci_archive(layout, [(t, image) for t in tags] or [(None, image)], f)
        elif spec.type == "local":
            with _dir_at(spec) as tmp:
                rootfs(tmp)
        elif spec.type == "tar":
            base = layout.root.parent / "build" / "scratch"
            base.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(dir=base, prefix="rootfs-"))
            try:
                os.chmod(work, 0o755)
                rootfs(work)
                with _file_at(spec, stdout) as f:
                    write_tree_tar(work, f)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    except OSError as e:
        raise OutputError(f"cannot write output {spec.dest}: {e.strerror or e}") from None


def write_oci_dir(layout: ImageLayout, image: Descriptor, tags: list[str], dest: Path) -> None:
    """An OCI image layout directory holding ``image`` (its blobs as stored), named by each tag's
    tag part in ``org.opencontainers.image.ref.name`` (as BuildKit's oci exporter)."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    manifest = layout.manifest(image)
    for digest in [image.digest] + [d.digest for d in manifest.blob_references()]:
        target = blobs / digest.hex
        if target.exists():
            continue
        src = layout.blob_path(digest)
        try:
            os.link(src, target)              # same file system: no copy (blobs are immutable)
        except OSError:
            shutil.copyfile(src, target)
    entries = []
    named: list[str | None] = list(tags) or [None]
    for tag in named:
        entry = Descriptor(image.media_type, image.digest, image.size).to_json()
        if tag is not None:
            ref = parse_reference(tag, default_tag=False)
            entry["annotations"] = {"io.containerd.image.name": tag, mt.ANNOTATION_REF_NAME: ref.tag or "latest"}
        entries.append(entry)
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                                 "manifests": entries}))


def write_tree_tar(root: Path, out: IO[bytes]) -> None:
    """The tree under ``root`` as a tar: entries sorted, numeric owners, symlinks not followed,
    hardlinks kept (tarfile's inode table)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(root)):
            tar.add(root / name, arcname=name, recursive=True, filter=_numeric)


def _numeric(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uname = info.gname = ""
    return info
