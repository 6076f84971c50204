"""Apply one OCI layer tar to a directory, never writing outside it.

The target receives the layer as an overlayfs diff: a whiteout ``.wh.NAME`` becomes a character
device 0/0 named NAME and ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` on its directory,
so the directory can be an overlay lowerdir as it is (``snapshots.py`` merges diffs when overlay
is not available).

Safety: every path is resolved one component at a time with ``openat(O_NOFOLLOW)`` from a
descriptor of the target, so neither an absolute name, nor ``..``, nor a symlink (from this tar
or anywhere else) can lead outside. Absolute names are made relative (as tar does); ``..``, a path
through a symlink and a hardlink whose target is outside or missing are refused. A hardlink to a
file of a lower layer (``lowers``) gets that file copied up into this layer first, as overlayfs
would; the lower layers are searched through descriptors too, never outside them.

Bounds (``Limits``, each from the environment; a layer that passes one fails cleanly):

- entries per layer (``HOIST_UNPACK_MAX_ENTRIES``, 1,000,000);
- bytes *written* per layer, the expanded size of sparse files included
  (``HOIST_UNPACK_MAX_BYTES``, 16 GiB), and across the layers of one image
  (``HOIST_UNPACK_MAX_TOTAL_BYTES``, 64 GiB); the uncompressed tar stream itself may exceed the
  per-layer figure only by 1.5 KiB per allowed entry (its headers);
- free space: unpacking stops before the target's filesystem would have less than
  ``HOIST_UNPACK_MIN_FREE`` bytes left (default: 1 GiB or 5% of the filesystem, the smaller);
- path depth (``HOIST_UNPACK_MAX_DEPTH``, 1024 directories);
- PAX headers, GNU long names and sparse maps: 1 MiB each, as Go's archive/tar; at most 32
  extended headers before one entry. They are checked before tarfile reads them.

The uncompressed stream is hashed and checked against the expected diff_id at its end (it cannot
be known sooner); the bounds above limit the work a wrong layer can cause.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from runtime.errors import EscapeAttempt, LayerCorrupt, LayerTooLarge, RuntimeFailure
from storage import compression
from storage.errors import TreeError, TreeEscape
from storage.tarlimits import Budget, Limits, bounded_tarinfo
from storage.tree import (
    DIR_FLAGS,
    OPAQUE_MARKER,
    OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIXES,
    WHITEOUT_PREFIX,
    RootedTree,
    copy_meta,
    copy_node,
    is_opaque,
    is_whiteout,
    short_name,
)

if TYPE_CHECKING:
    import tarfile

_HEADER_SLACK = 1536
_CHUNK = 1 << 20
_FREE_CHECK_EVERY = 64 << 20
_ZEROS = bytes(_CHUNK)


@dataclass
class UnpackStats:
    entries: int = 0
    bytes: int = 0          # bytes written (expanded), not bytes read
    diff_id: str = ""
    skipped_devices: int = 0


class _HashingReader:
    """Counts and hashes the uncompressed stream; enforces a byte limit as it reads."""

    def __init__(self, raw: BinaryIO, max_bytes: int) -> None:
        self.raw, self.max_bytes = raw, max_bytes
        self.hasher = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n is not None and n >= 0 else _CHUNK)
        self.count += len(data)
        if self.count > self.max_bytes:
            raise LayerTooLarge(f"the layer's tar stream is longer than {self.max_bytes} bytes "
                                "(HOIST_UNPACK_MAX_BYTES)")
        self.hasher.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def open_decompressed(path: str | os.PathLike[str]) -> BinaryIO:
    """The uncompressed bytes of a layer blob; compression is sniffed from the magic bytes
    (media types are sometimes wrong in the wild). Layers are gzip, zstd or plain tars."""
    f = open(path, "rb")
    kind = compression.sniff_file(f)
    if kind not in (compression.GZIP, compression.ZSTD):
        kind = compression.NONE
    return compression.decompressed(f, kind)  # type: ignore[return-value]


def split_name(name: str) -> list[str]:
    """Tar member name → path components inside the root; ``..`` is refused, ``/`` stripped."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise EscapeAttempt(f"layer entry {short_name(name)!r} leaves the root through '..'")
    return parts


def _bounded_tarinfo() -> type:
    return bounded_tarinfo(LayerTooLarge, LayerCorrupt)


def _sparse_regions(member: tarfile.TarInfo) -> list[tuple[int, int]]:
    """The data regions of a sparse member, checked: in order, not overlapping, inside the file."""
    end = 0
    # tarfile keeps the unused (0, 0) slots of a GNU header's four.
    sparse = cast("list[tuple[int, int]]", member.sparse or [])
    regions = [(o, n) for o, n in sparse if o or n]
    for offset, length in regions:
        if offset < end or length < 0 or offset + length > member.size:
            raise LayerCorrupt(f"{short_name(member.name)!r} has an invalid sparse map")
        end = offset + length
    return regions


# -- the lower layers, for hardlinks into them -------------------------------------------------

class _Found:
    """A hardlink target found in one layer: the open descriptors of its directories."""

    def __init__(self, dir_fds: list[int], st: os.stat_result) -> None:
        self.dir_fds, self.st = dir_fds, st

    def close(self) -> None:
        for fd in self.dir_fds[1:]:
            os.close(fd)


def _look_up(root_fd: int, parts: list[str], where: str) -> tuple[str, _Found | None]:
    """Find ``parts`` in one overlay diff: ("found", …), ("missing", None) when this layer does
    not have it (a lower one may), or ("hidden", None) when this layer hides it (a whiteout, a
    non-directory on the way, or an opaque directory that does not have it)."""
    fds = [root_fd]
    opaque = False
    try:
        for i, name in enumerate(parts):
            try:
                st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
            except FileNotFoundError:
                return ("hidden" if opaque else "missing"), None
            if is_whiteout(st):
                return "hidden", None
            if i == len(parts) - 1:
                found = _Found(fds, st)
                fds = []
                return "found", found
            if stat.S_ISLNK(st.st_mode):
                raise EscapeAttempt(f"hardlink target {where!r} goes through a symlink")
            if not stat.S_ISDIR(st.st_mode):
                return "hidden", None
            fds.append(os.open(name, DIR_FLAGS, dir_fd=fds[-1]))
            opaque = opaque or is_opaque(fds[-1])
        return "missing", None
    finally:
        for fd in fds[1:]:
            os.close(fd)


def _xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr."):]
        if name.startswith(OVERLAY_XATTR_PREFIXES):
            continue
        yield name, value.encode("utf-8", "surrogateescape")


class _Applier:
    def __init__(self, tree: RootedTree, allow_devices: bool, limits: Limits, budget: Budget,
                 lowers: Sequence[str | os.PathLike[str]]) -> None:
        self.tree = tree
        self.allow_devices = allow_devices
        self.limits, self.budget = limits, budget
        self.lowers = list(lowers)
        self.is_root = os.geteuid() == 0
        self.dir_times: dict[tuple[str, ...], int] = {}
        self.skipped_devices = 0
        self.written = 0
        self._next_free_check = 0

    # -- bounds ----------------------------------------------------------------------------
    def charge(self, size: int, name: str) -> None:
        """Count ``size`` bytes about to be written, before writing them."""
        if self.written + size > self.limits.max_bytes:
            raise LayerTooLarge(f"the layer writes more than {self.limits.max_bytes} bytes "
                                f"(at {short_name(name)!r}; HOIST_UNPACK_MAX_BYTES)")
        if self.budget.written + size > self.limits.max_total_bytes:
            raise LayerTooLarge(f"the image writes more than {self.limits.max_total_bytes} bytes "
                                f"(at {short_name(name)!r}; HOIST_UNPACK_MAX_TOTAL_BYTES)")
        self.written += size
        self.budget.written += size
        if size >= _CHUNK or self.written >= self._next_free_check:
            self._check_free(size, name)

    def _check_free(self, size: int, name: str) -> None:
        fs = os.fstatvfs(self.tree.fd)
        reserve = self.limits.reserve(fs)
        free = fs.f_bavail * fs.f_frsize
        if free - size < reserve:
            raise LayerTooLarge(f"unpacking {short_name(name)!r} ({size} bytes) would leave less than "
                                f"{reserve} bytes free on the filesystem of {self.tree.root} "
                                f"({free} free; HOIST_UNPACK_MIN_FREE)")
        self._next_free_check = self.written + _FREE_CHECK_EVERY

    def parts_of(self, name: str) -> list[str]:
        parts = split_name(name)
        if len(parts) > self.limits.max_depth:
            raise LayerTooLarge(f"layer entry {short_name(name)!r} is {len(parts)} levels deep; the limit "
                                f"is {self.limits.max_depth} (HOIST_UNPACK_MAX_DEPTH)")
        return parts

    # -- entries ---------------------------------------------------------------------------
    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        self.tree.trim()
        parts = self.parts_of(member.name)
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
            self._hardlink(parts, member)
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
        # The expanded size counts, not what the tar holds: a sparse entry can be tiny in the tar.
        self.charge(member.size, member.name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent)
        try:
            if member.sparse is not None:
                self._write_sparse(fd, member, tar)
            else:
                src = tar.extractfile(member)
                if src is not None:
                    self._copy(src, fd, member.size, member.name)
            self._set_meta_fd(fd, member)
            os.utime(fd, ns=(self._mtime_ns(member),) * 2)
        finally:
            os.close(fd)

    def _copy(self, src: IO[bytes], fd: int, size: int, name: str) -> None:
        remaining, since_check = size, 0
        while remaining > 0:
            chunk = src.read(min(_CHUNK, remaining))
            if not chunk:
                raise LayerCorrupt(f"layer ends inside {short_name(name)!r}")
            _write_all(fd, chunk)
            remaining -= len(chunk)
            since_check += len(chunk)
            if since_check >= _FREE_CHECK_EVERY:
                # Others may be filling the same filesystem while a big file is written.
                self._check_free(remaining, name)
                since_check = 0

    def _write_sparse(self, fd: int, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        # Data regions are stored one after the other; holes stay holes on disk.
        regions = _sparse_regions(member)
        tar.fileobj.seek(member.offset_data)
        for offset, length in regions:
            os.lseek(fd, offset, os.SEEK_SET)
            self._copy(tar.fileobj, fd, length, member.name)  # type: ignore[arg-type]
        os.ftruncate(fd, member.size)

    def _symlink(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        # A symlink's target is only ever read inside the container; creating one is harmless.
        os.symlink(member.linkname, name, dir_fd=parent)
        if self.is_root:
            os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        self._set_xattrs(f"/proc/self/fd/{parent}/{name}", member, follow=False)
        os.utime(name, ns=(self._mtime_ns(member),) * 2, dir_fd=parent, follow_symlinks=False)

    def _hardlink(self, parts: list[str], member: tarfile.TarInfo) -> None:
        target = self.parts_of(member.linkname)
        if not target:
            raise EscapeAttempt(f"hardlink {short_name(member.name)!r} points at the root")
        where = short_name(member.linkname)
        state, found = _look_up(self.tree.fd, target, where)
        if state == "missing":
            # Not in this layer: the newest lower layer that has it (overlay's lookup order).
            for lower in reversed(self.lowers):
                lfd = os.open(lower, DIR_FLAGS)
                try:
                    state, found = _look_up(lfd, target, where)
                    if found is not None:
                        try:
                            self._copy_up(target, found)
                        finally:
                            found.close()
                            found = None
                        state = "copied"
                finally:
                    os.close(lfd)
                if state != "missing":
                    break
        if found is not None:
            found.close()
        if state in ("missing", "hidden"):
            raise LayerCorrupt(f"hardlink {short_name(member.name)!r}: target {where!r} is neither in "
                               "the layer nor in the layers below it")
        tparent = self.tree.dir_fd(target[:-1], create=False)
        st = self.tree.lstat(tparent, target[-1])
        if st is None or stat.S_ISDIR(st.st_mode):
            raise LayerCorrupt(f"hardlink {short_name(member.name)!r}: target {where!r} is a directory")
        if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and not (self.allow_devices and self.is_root):
            self.skipped_devices += 1
            return
        parent = self.tree.dir_fd(parts[:-1])
        os.link(target[-1], parts[-1], src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)

    def _copy_up(self, target: list[str], found: _Found) -> None:
        """Copy a lower layer's file, and the directories above it this layer lacks, into this
        layer with their metadata, as overlayfs does before it links a lower file."""
        for level in range(1, len(target)):
            key = tuple(target[:level])
            parent = self.tree.dir_fd(key[:-1])
            if self.tree.lstat(parent, key[-1]) is None:
                src = found.dir_fds[level]
                os.mkdir(key[-1], 0o700, dir_fd=parent)
                dst = self.tree.dir_fd(key)
                copy_meta(src, dst)
                self.dir_times[key] = os.fstat(src).st_mtime_ns
        st = found.st
        if stat.S_ISDIR(st.st_mode):
            raise LayerCorrupt(f"hardlink target {short_name('/'.join(target))!r} is a directory")
        if stat.S_ISREG(st.st_mode):
            self.charge(st.st_size, "/".join(target))
        copy_node(found.dir_fds[-1], self.tree.dir_fd(target[:-1]), target[-1], st,
                  devices=self.allow_devices and self.is_root)

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
            self.tree.trim()
            try:
                fd = self.tree.dir_fd(parts, create=False)
            except (FileNotFoundError, TreeError):
                continue
            os.utime(fd, ns=(self.dir_times[parts],) * 2)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def apply_layer(blob: str | os.PathLike[str], target: str | os.PathLike[str],
                expected_diff_id: str | None = None, limits: Limits | None = None,
                allow_devices: bool = True, lowers: Sequence[str | os.PathLike[str]] = (),
                budget: Budget | None = None) -> UnpackStats:
    """Apply the layer at ``blob`` (gzip, zstd or plain tar) onto the directory ``target``.

    ``lowers`` are the unpacked layers below this one (lowest first), where a hardlink's target
    may live; ``budget`` carries the bytes written by earlier layers of the same image.

    Raises EscapeAttempt, LayerTooLarge or LayerCorrupt; on error ``target`` may hold part of the
    layer (callers unpack into a temporary directory), but nothing outside it was touched.
    """
    import tarfile

    limits = limits or Limits()
    budget = budget or Budget()
    stream = open_decompressed(blob)
    reader = _HashingReader(stream, limits.max_bytes + _HEADER_SLACK * limits.max_entries)
    stats = UnpackStats()
    try:
        with RootedTree(target) as tree:
            applier = _Applier(tree, allow_devices, limits, budget, lowers)
            try:
                tar = tarfile.open(fileobj=reader, mode="r|", tarinfo=_bounded_tarinfo())  # type: ignore[call-overload]
                while (member := tar.next()) is not None:
                    # tarfile keeps every member it read; a layer may have a million.
                    tar.members.clear()
                    stats.entries += 1
                    if stats.entries > limits.max_entries:
                        raise LayerTooLarge(f"layer has more than {limits.max_entries} entries "
                                            "(HOIST_UNPACK_MAX_ENTRIES)")
                    applier.apply(member, tar)
                reader.drain()
            except RuntimeFailure:
                raise
            except TreeEscape as e:
                raise EscapeAttempt(str(e)) from None
            except TreeError as e:
                raise LayerCorrupt(str(e)) from None
            except OSError as e:
                if e.errno is not None:
                    raise
                raise LayerCorrupt(f"layer {os.fspath(blob)!r} cannot be read: {e}") from None
            except Exception as e:
                # tarfile, zlib, isal and zstandard each have their own decode errors.
                raise LayerCorrupt(f"layer {os.fspath(blob)!r} is not a readable tar: {e}") from None
            applier.finish()
            stats.skipped_devices = applier.skipped_devices
            stats.bytes = applier.written
    finally:
        stream.close()
    stats.diff_id = f"sha256:{reader.hasher.hexdigest()}"
    if expected_diff_id and stats.diff_id != expected_diff_id:
        raise LayerCorrupt(f"layer {os.fspath(blob)!r} unpacks to {stats.diff_id}, expected {expected_diff_id}")
    return stats
