"""Directory trees reached only through descriptors, and the overlay diff format on disk.

An image layer unpacked (runtime/unpack.py), a snapshot merged (runtime/snapshots.py) and a RUN
step's upper directory read into a layer (builder/layers.py) are all overlayfs diffs: a deleted
name is a whiteout (a 0/0 character device; ``.wh.NAME`` in a layer tar) and a directory that
hides everything below it is opaque (``trusted.overlay.opaque=y``; ``.wh..wh..opq`` in a tar).

``RootedTree`` opens every path one component at a time with ``openat(O_NOFOLLOW)`` from a
descriptor of its root, so no name, ``..`` or symlink can lead outside it; ``remove_dir_at`` and
``remove_tree`` delete at any depth the same way; ``walk_changes`` lists a diff; ``copy_node``
copies one entry between trees with its metadata (reflinked where the filesystem can).

Errors: ``TreeEscape`` (a path through a symlink), ``TreeConflict`` (a non-directory where a
directory must be, a tree moved while being removed); OSError for what the system refuses.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from storage.errors import TreeConflict, TreeEscape

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# overlay's own attributes could redirect lookups into other layers: never copied or taken in.
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FICLONE = 0x40049409


def short_name(name: str) -> str:
    """A path cut to a length an error message can hold."""
    return name if len(name) <= 120 else f"{name[:60]}...{name[-40:]}"


# -- descriptors -------------------------------------------------------------------------------

class RootedTree:
    """A directory reached only through descriptors; no path ever follows a symlink.

    Directory descriptors are cached by path. Only the first ``CACHED_DEPTH`` levels and the
    directories asked for are kept, and ``trim`` empties the cache past ``MAX_CACHED`` entries,
    so a very deep path costs a bounded number of descriptors (no recursion, whatever the depth).
    """

    CACHED_DEPTH = 64
    MAX_CACHED = 256

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.fd = os.open(self.root, DIR_FLAGS)
        self._dirs: dict[tuple[str, ...], int] = {}

    def close(self) -> None:
        self.forget()
        os.close(self.fd)

    def __enter__(self) -> RootedTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forget(self, under: tuple[str, ...] | None = None) -> None:
        """Drop cached directory descriptors: all of them, or those at and below ``under``
        (after it was removed, so a new directory of that name is not confused with it)."""
        if under is None:
            for fd in self._dirs.values():
                os.close(fd)
            self._dirs.clear()
            return
        n = len(under)
        for key in [k for k in self._dirs if k[:n] == under]:
            os.close(self._dirs.pop(key))

    def keep_path(self, parts: list[str] | tuple[str, ...]) -> None:
        """Drop cached descriptors of directories not on the way to ``parts``: a depth-first
        walk then holds O(depth) descriptors, however many directories it visits."""
        key = tuple(parts)
        for cached in [k for k in self._dirs if k != key[:len(k)]]:
            os.close(self._dirs.pop(cached))

    def trim(self) -> None:
        """Keep the descriptor cache bounded; only called where no caller holds one."""
        if len(self._dirs) > self.MAX_CACHED:
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
        depth = len(key) - 1
        while depth and key[:depth] not in self._dirs:
            depth -= 1
        fd = self._dirs[key[:depth]] if depth else self.fd
        transient = -1  # an opened descriptor that is not cached, closed once its child is open
        try:
            for level in range(depth + 1, len(key) + 1):
                child = self._open_child_dir(fd, key[:level], create)
                if transient >= 0:
                    os.close(transient)
                    transient = -1
                if level <= self.CACHED_DEPTH or level == len(key):
                    self._dirs[key[:level]] = child
                else:
                    transient = child
                fd = child
        except BaseException:
            if transient >= 0:
                os.close(transient)
            raise
        return fd

    def _open_child_dir(self, parent: int, key: tuple[str, ...], create: bool) -> int:
        name = key[-1]
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            where = short_name("/".join(key))
            if stat.S_ISLNK(st.st_mode):
                raise TreeEscape(f"path goes through symlink {where!r}") from None
            raise TreeConflict(f"{where!r} is not a directory but has entries under it") from None

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
            remove_dir_at(parent, key[-1])
        else:
            os.unlink(key[-1], dir_fd=parent)


# -- removal at any depth ----------------------------------------------------------------------

def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _clear_files(fd: int) -> list[str]:
    """Unlink everything but directories in ``fd``; return the names of its subdirectories."""
    subdirs = []
    for name in os.listdir(fd):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            subdirs.append(name)
        else:
            try:
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                pass
    return subdirs


def remove_dir_at(parent: int, name: str) -> None:
    """Remove directory ``name`` of ``parent`` and everything below it, at any depth.

    Iterative, with two descriptors at a time: it walks down by ``openat(O_NOFOLLOW)`` and back
    up by ``..``, checking on the way up that ``..`` is the directory it came from (so a tree
    moved while being removed is never mistaken for another). Memory grows with the number of
    directories still to visit, not with the call stack.
    """
    fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    # One frame per directory on the way down: its name, identity and subdirectories left.
    frames: list[tuple[str, tuple[int, int], list[str] | None]] = [(name, _identity(fd), None)]
    try:
        while True:
            here, ident, pending = frames[-1]
            if pending is None:
                pending = _clear_files(fd)
                frames[-1] = (here, ident, pending)
            if pending:
                child = pending.pop()
                try:
                    cfd = os.open(child, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    os.unlink(child, dir_fd=fd)  # replaced by a non-directory meanwhile
                    continue
                os.close(fd)
                fd = cfd
                frames.append((child, _identity(fd), None))
                continue
            frames.pop()
            if not frames:
                break
            up = os.open("..", DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            if _identity(fd) != frames[-1][1]:
                raise TreeConflict(f"{name!r} was moved while it was being removed")
            os.rmdir(here, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """``rm -rf path`` at any depth, never following a symlink below ``path``; missing is fine."""
    full = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(full)
    if not name:
        raise TreeConflict("refusing to remove /")
    try:
        pfd = os.open(parent, DIR_FLAGS & ~os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            remove_dir_at(pfd, name)
        else:
            os.unlink(name, dir_fd=pfd)
    finally:
        os.close(pfd)


# -- whiteouts and opaque directories ----------------------------------------------------------

def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


# -- copying one entry between trees -----------------------------------------------------------

def copy_xattrs(src: int, dst: int) -> None:
    """The extended attributes of ``src`` onto ``dst`` (descriptors), overlay's own left out;
    attributes the target filesystem or the caller may not set are skipped."""
    for key in os.listxattr(src):
        if key.startswith(OVERLAY_XATTR_PREFIXES):
            continue
        try:
            os.setxattr(dst, key, os.getxattr(src, key))
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL):
                raise


def copy_meta(src: int, dst: int) -> None:
    """Owner (when root), mode, xattrs and times of ``src`` onto ``dst`` (descriptors). chown
    clears set-id bits, so the mode goes second."""
    st = os.fstat(src)
    if os.geteuid() == 0:
        os.fchown(dst, st.st_uid, st.st_gid)
    os.fchmod(dst, stat.S_IMODE(st.st_mode))
    copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_file(src: int, dst: int, size: int) -> None:
    """``size`` bytes from descriptor ``src`` to ``dst``: a reflink when the filesystem can,
    else an in-kernel copy, else a plain one."""
    import fcntl
    try:
        fcntl.ioctl(dst, _FICLONE, src)
        return
    except OSError:
        pass
    copied = 0
    while copied < size:
        try:
            n = os.copy_file_range(src, dst, size - copied)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL):
                raise
            shutil.copyfileobj(os.fdopen(os.dup(src), "rb"), os.fdopen(os.dup(dst), "wb"))
            return
        if n == 0:
            break
        copied += n


def copy_node(sfd: int, dfd: int, name: str, st: os.stat_result, devices: bool = True) -> bool:
    """Copy the non-directory ``name`` of directory ``sfd`` (whose lstat is ``st``) into ``dfd``
    with its metadata, never following a symlink. Devices are copied only when ``devices``;
    False when nothing was copied (a socket, or a device left out)."""
    if stat.S_ISDIR(st.st_mode):
        raise TreeConflict(f"{short_name(name)!r} is a directory")
    if stat.S_ISREG(st.st_mode):
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
        try:
            dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o600, dir_fd=dfd)
            try:
                copy_file(src, dst, os.fstat(src).st_size)
                copy_meta(src, dst)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        return True
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(name, 0o600, dir_fd=dfd)
    elif (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and devices:
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dfd)
    else:
        return False
    if os.geteuid() == 0:
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dfd)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
    return True


# -- an overlay upper directory as a list of changes -------------------------------------------

@dataclass(frozen=True)
class Change:
    """One entry of a container's diff. ``kind`` is "deleted" (an overlay whiteout), "opaque" (a
    directory that hides everything below it; its own entries follow as changes) or "changed"."""

    path: str
    kind: str
    stat: os.stat_result


def walk_changes(upper: str | os.PathLike[str]) -> Generator[Change, None, None]:
    """The container's changes, parents before children, names sorted, never following links;
    iterative, so a directory of any depth is walked."""
    with RootedTree(upper) as tree:
        stack: list[tuple[tuple[str, ...], list[str]]] = [((), _sorted_names(tree, ()))]
        while stack:
            parts, names = stack[-1]
            if not names:
                stack.pop()
                # Done with this subtree: release its descriptors, so a tree with more
                # directories than the open-file limit can be walked.
                if parts:
                    tree.forget(under=parts)
                continue
            name = names.pop()
            tree.trim()
            fd = tree.dir_fd(parts, create=False)
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            path = parts + (name,)
            text = "/".join(path)
            if is_whiteout(st):
                yield Change(text, "deleted", st)
            elif stat.S_ISDIR(st.st_mode):
                child = tree.dir_fd(path, create=False)
                yield Change(text, "opaque" if is_opaque(child) else "changed", st)
                stack.append((path, _sorted_names(tree, path)))
            else:
                yield Change(text, "changed", st)


def _sorted_names(tree: RootedTree, parts: tuple[str, ...]) -> list[str]:
    return sorted(os.listdir(tree.dir_fd(parts, create=False)), reverse=True)
