"""Apply one OCI layer tar to a directory, never writing outside it.

The target receives the layer as an overlayfs diff: a whiteout ``.wh.NAME`` becomes a character
device 0/0 named NAME and ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` on its directory,
so the directory can be an overlay lowerdir as it is (``snapshots.py`` merges diffs when overlay
is not available).

Safety: every path is resolved one component at a time with ``openat(O_NOFOLLOW)`` from a
descriptor of the target, so neither an absolute name, nor ``..``, nor a symlink (from this tar
or anywhere else) can lead outside. Absolute names are made relative (as tar does); ``..``, a path
through a symlink and a hardlink whose target is outside or missing are refused. Limits on
entries and uncompressed bytes stop tar bombs; the uncompressed stream is hashed and checked
against the expected diff_id.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

from runtime.errors import EscapeAttempt, LayerCorrupt, LayerTooLarge, RuntimeFailure

if TYPE_CHECKING:
    import tarfile

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Limits:
    """Per-layer guards against tar bombs; the environment can lower or raise them."""

    max_entries: int = field(default_factory=lambda: _env_int("HOIST_UNPACK_MAX_ENTRIES", 1_000_000))
    max_bytes: int = field(default_factory=lambda: _env_int("HOIST_UNPACK_MAX_BYTES", 64 << 30))


@dataclass
class UnpackStats:
    entries: int = 0
    bytes: int = 0
    diff_id: str = ""
    skipped_devices: int = 0


class _HashingReader:
    """Counts and hashes the uncompressed stream; enforces the byte limit as it reads."""

    def __init__(self, raw: BinaryIO, max_bytes: int) -> None:
        self.raw, self.max_bytes = raw, max_bytes
        self.hasher = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n is not None and n >= 0 else _CHUNK * 16)
        self.count += len(data)
        if self.count > self.max_bytes:
            raise LayerTooLarge(f"layer expands to more than {self.max_bytes} bytes")
        self.hasher.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def open_decompressed(path: str | os.PathLike[str]) -> BinaryIO:
    """The uncompressed bytes of a layer blob; compression is sniffed from the magic bytes
    (media types are sometimes wrong in the wild)."""
    f = open(path, "rb")
    magic = f.read(4)
    f.seek(0)
    if magic[:2] == _GZIP_MAGIC:
        try:
            from isal import igzip as gz
        except ImportError:
            import gzip as gz  # type: ignore[no-redef]
        return gz.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if magic == _ZSTD_MAGIC:
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)  # type: ignore[return-value]
    return f


def split_name(name: str) -> list[str]:
    """Tar member name → path components inside the root; ``..`` is refused, ``/`` stripped."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise EscapeAttempt(f"layer entry {name!r} leaves the root through '..'")
    return parts


class RootedTree:
    """A directory reached only through descriptors; no path ever follows a symlink."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.fd = os.open(self.root, _DIR_FLAGS)
        self._dirs: dict[tuple[str, ...], int] = {}

    def close(self) -> None:
        self.forget()
        os.close(self.fd)

    def __enter__(self) -> "RootedTree":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forget(self, under: tuple[str, ...] | None = None) -> None:
        """Drop cached directory descriptors: all of them, or those at and below ``under``
        (after it was removed, so a new directory of that name is not confused with it)."""
        for key in list(self._dirs):
            if under is None or key[:len(under)] == under:
                os.close(self._dirs.pop(key))

    def keep_path(self, parts: list[str] | tuple[str, ...]) -> None:
        """Drop cached descriptors of directories not on the way to ``parts``: a depth-first
        walk then holds O(depth) descriptors, however many directories it visits."""
        key = tuple(parts)
        for cached in list(self._dirs):
            if cached != key[:len(cached)] and cached in self._dirs:
                self.forget(under=cached)

    def trim(self) -> None:
        """Keep the descriptor cache bounded; only called where no caller holds one."""
        if len(self._dirs) > 512:
            self.forget()

    def dir_fd(self, parts: list[str] | tuple[str, ...], create: bool = True) -> int:
        """The descriptor of directory ``parts`` (created 0755 if missing and ``create``).
        It stays valid until ``forget``/``trim``/``remove`` of a directory above it."""
        key = tuple(parts)
        if not key:
            return self.fd
        cached = self._dirs.get(key)
        if cached is not None:
            return cached
        parent = self.dir_fd(key[:-1], create)
        fd = self._open_child_dir(parent, key, create)
        self._dirs[key] = fd
        return fd

    def _open_child_dir(self, parent: int, key: tuple[str, ...], create: bool) -> int:
        name = key[-1]
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            where = "/".join(key)
            if stat.S_ISLNK(st.st_mode):
                raise EscapeAttempt(f"path goes through symlink {where!r}") from None
            raise LayerCorrupt(f"{where!r} is not a directory but has entries under it") from None

    def lstat(self, parent: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def remove(self, parts: tuple[str, ...] | list[str], keep_dir: bool = False) -> None:
        """Remove the entry ``parts`` whatever it is; a directory stays when ``keep_dir``."""
        key = tuple(parts)
        parent = self.dir_fd(key[:-1])
        st = self.lstat(parent, key[-1])
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            self.forget(under=key)
            shutil.rmtree(key[-1], dir_fd=parent)
        else:
            os.unlink(key[-1], dir_fd=parent)


def _xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr."):]
        # overlay's own attributes could redirect lookups into other layers: never taken from a tar.
        if name.startswith("trusted.overlay.") or name.startswith("user.overlay."):
            continue
        yield name, value.encode("utf-8", "surrogateescape")


class _Applier:
    def __init__(self, tree: RootedTree, allow_devices: bool) -> None:
        self.tree = tree
        self.allow_devices = allow_devices
        self.is_root = os.geteuid() == 0
        self.dir_times: dict[tuple[str, ...], int] = {}
        self.skipped_devices = 0

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        self.tree.trim()
        parts = split_name(member.name)
        if not parts:
            if member.isdir():
                self._set_meta_fd(self.tree.fd, member)
                self.dir_times[()] = self._mtime_ns(member)
            return
        name = parts[-1]
        parent = self.tree.dir_fd(parts[:-1])
        if name == OPAQUE_MARKER:
            os.setxattr(parent, OPAQUE_XATTR, b"y")
            return
        if name.startswith(WHITEOUT_PREFIX):
            if not name.startswith(WHITEOUT_PREFIX * 2):
                self._whiteout(parts[:-1] + [name[len(WHITEOUT_PREFIX):]])
            return
        if member.isdir():
            self._directory(parts, member)
            return
        self.tree.remove(parts)
        if member.isreg():
            self._regular(parent, name, member, tar)
        elif member.issym():
            self._symlink(parent, name, member)
        elif member.islnk():
            self._hardlink(parent, name, member)
        elif member.ischr() or member.isblk():
            self._device(parent, name, member)
        elif member.isfifo():
            os.mkfifo(name, 0o600, dir_fd=parent)
            self._set_meta_path(parent, name, member)

    def _whiteout(self, parts: list[str]) -> None:
        if parts[-1] in ("", ".", ".."):
            return
        self.tree.remove(parts)
        parent = self.tree.dir_fd(parts[:-1])
        os.mknod(parts[-1], stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)

    def _directory(self, parts: list[str], member: tarfile.TarInfo) -> None:
        self.tree.remove(parts, keep_dir=True)
        fd = self.tree.dir_fd(parts)
        self._set_meta_fd(fd, member)
        self.dir_times[tuple(parts)] = self._mtime_ns(member)

    def _regular(self, parent: int, name: str, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent)
        try:
            src = tar.extractfile(member)
            if src is not None:
                remaining = member.size
                while remaining > 0:
                    chunk = src.read(min(_CHUNK, remaining))
                    if not chunk:
                        raise LayerCorrupt(f"layer ends inside {member.name!r}")
                    _write_all(fd, chunk)
                    remaining -= len(chunk)
            self._set_meta_fd(fd, member)
            os.utime(fd, ns=(self._mtime_ns(member),) * 2)
        finally:
            os.close(fd)

    def _symlink(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        # A symlink's target is only ever read inside the container; creating one is harmless.
        os.symlink(member.linkname, name, dir_fd=parent)
        if self.is_root:
            os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        self._set_xattrs(f"/proc/self/fd/{parent}/{name}", member, follow=False)
        os.utime(name, ns=(self._mtime_ns(member),) * 2, dir_fd=parent, follow_symlinks=False)

    def _hardlink(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        target = split_name(member.linkname)
        if not target:
            raise EscapeAttempt(f"hardlink {member.name!r} points at the root")
        try:
            tparent = self.tree.dir_fd(target[:-1], create=False)
        except FileNotFoundError:
            raise LayerCorrupt(f"hardlink {member.name!r}: target {member.linkname!r} is not in the layer") from None
        st = self.tree.lstat(tparent, target[-1])
        if st is None:
            raise LayerCorrupt(f"hardlink {member.name!r}: target {member.linkname!r} is not in the layer")
        if stat.S_ISDIR(st.st_mode):
            raise LayerCorrupt(f"hardlink {member.name!r}: target {member.linkname!r} is a directory")
        os.link(target[-1], name, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)

    def _device(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        # Device nodes are inert in a container (its rootfs is mounted nodev), but only root can
        # make them and they are only wanted when the caller says so.
        if not (self.allow_devices and self.is_root):
            self.skipped_devices += 1
            return
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(name, kind | (member.mode & 0o7777), os.makedev(member.devmajor, member.devminor),
                 dir_fd=parent)
        self._set_meta_path(parent, name, member)

    @staticmethod
    def _mtime_ns(member: tarfile.TarInfo) -> int:
        return int(member.mtime * 1_000_000_000)

    def _set_meta_fd(self, fd: int, member: tarfile.TarInfo) -> None:
        # chown clears set-id bits, so the mode goes second.
        if self.is_root:
            os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & 0o7777)
        self._set_xattrs(fd, member)

    def _set_meta_path(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        if self.is_root:
            os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        os.chmod(name, member.mode & 0o7777, dir_fd=parent)
        os.utime(name, ns=(self._mtime_ns(member),) * 2, dir_fd=parent, follow_symlinks=False)

    @staticmethod
    def _set_xattrs(target: int | str, member: tarfile.TarInfo, follow: bool = True) -> None:
        for key, value in _xattrs(member):
            try:
                os.setxattr(target, key, value, follow_symlinks=follow)
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL):
                    raise

    def finish(self) -> None:
        """Directory mtimes last, deepest first: writing children changed them."""
        for parts in sorted(self.dir_times, key=len, reverse=True):
            try:
                fd = self.tree.dir_fd(parts, create=False)
            except (FileNotFoundError, EscapeAttempt, LayerCorrupt):
                continue
            os.utime(fd, ns=(self.dir_times[parts],) * 2)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def apply_layer(blob: str | os.PathLike[str], target: str | os.PathLike[str],
                expected_diff_id: str | None = None, limits: Limits | None = None,
                allow_devices: bool = True) -> UnpackStats:
    """Apply the layer at ``blob`` (gzip, zstd or plain tar) onto the directory ``target``.

    Raises EscapeAttempt, LayerTooLarge or LayerCorrupt; on error ``target`` may hold part of the
    layer (callers unpack into a temporary directory), but nothing outside it was touched.
    """
    import tarfile  # only needed when a layer is actually unpacked; keeps `hoist run` lean

    limits = limits or Limits()
    stream = open_decompressed(blob)
    reader = _HashingReader(stream, limits.max_bytes)
    stats = UnpackStats()
    try:
        with RootedTree(target) as tree:
            applier = _Applier(tree, allow_devices)
            try:
                tar = tarfile.open(fileobj=reader, mode="r|")  # type: ignore[call-overload]
                for member in tar:
                    stats.entries += 1
                    if stats.entries > limits.max_entries:
                        raise LayerTooLarge(f"layer has more than {limits.max_entries} entries")
                    applier.apply(member, tar)
                reader.drain()
            except RuntimeFailure:
                raise
            except OSError as e:
                if e.errno is not None:
                    raise
                raise LayerCorrupt(f"layer {os.fspath(blob)!r} cannot be read: {e}") from None
            except Exception as e:
                # tarfile, zlib, isal and zstandard each have their own decode errors.
                raise LayerCorrupt(f"layer {os.fspath(blob)!r} is not a readable tar: {e}") from None
            applier.finish()
            stats.skipped_devices = applier.skipped_devices
    finally:
        stream.close()
    stats.bytes = reader.count
    stats.diff_id = f"sha256:{reader.hasher.hexdigest()}"
    if expected_diff_id and stats.diff_id != expected_diff_id:
        raise LayerCorrupt(f"layer {os.fspath(blob)!r} unpacks to {stats.diff_id}, expected {expected_diff_id}")
    return stats

