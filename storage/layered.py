"""The merged view of a chain of overlay diffs, read in place: nothing is mounted or copied.

A snapshot chain (runtime/snapshots.py) is a list of directories in overlay's diff format
(storage/tree.py: whiteouts are 0/0 character devices, an opaque directory carries
``trusted.overlay.opaque=y``). ``LayeredTree`` answers what a read-only overlay mount of the
chain would show, by overlayfs's lookup rules:

- the top-most layer holding a name decides what it is; a whiteout hides the name in every
  layer below it;
- a directory merges with the directories at the same path in the layers below it, down to the
  first one that is opaque, or the first layer holding a whiteout or a non-directory there
  (which, like everything below it, is hidden);
- a non-directory hides everything below it; the root merges every layer's root.

Every path is opened with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` from a descriptor
of one layer's root and names are then used relative to directory descriptors, so nothing is
ever followed and no name, ``..`` or symlink in a layer leads outside it. Symlinks are entries
like any other: a caller that follows them resolves them itself, as if the merged root were
``/`` (builder/copy.py's ``resolve_in_root``), and looks the result up again. Descriptors of the
layers' roots are opened once (``O_PATH``), so the tree keeps working after a ``chroot``.

Layer indexes count from the top (0 is the top layer), as the lookups go.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from storage.openat2 import RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, openat2
from storage.tree import OPAQUE_XATTR

_STRICT = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV)


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class LayeredTree:
    """The merged view of ``layers`` (lowest first, as a chain is listed); see the module doc.

    Merged directories are cached with their per-layer descriptors, so a walk opens each
    directory of each layer once: the first ``CACHED_DEPTH`` levels and the directories asked
    for, at most ``MAX_CACHED`` beyond the path in use (a path of any depth costs a bounded
    number of descriptors)."""

    MAX_CACHED = 256
    CACHED_DEPTH = 64

    def __init__(self, layers: Sequence[str | os.PathLike[str]]) -> None:
        self.paths = [os.fspath(p) for p in reversed(layers)]
        self.roots: list[int] = []
        try:
            for path in self.paths:
                self.roots.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        except BaseException:
            self.close()
            raise
        # parts -> [(layer, descriptor of that layer's directory)], top first
        self._dirs: dict[tuple[str, ...], list[tuple[int, int]]] = {}

    def close(self) -> None:
        self.forget()
        for fd in self.roots:
            os.close(fd)
        self.roots = []

    def __enter__(self) -> LayeredTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forget(self) -> None:
        for stack in self._dirs.values():
            for _, fd in stack:
                os.close(fd)
        self._dirs.clear()

    # -- lookups ---------------------------------------------------------------------------------

    def dir_stack(self, parts: Sequence[str]) -> list[tuple[int, int]]:
        """The layers whose directory ``parts`` make up the merged directory, top first, each
        with a descriptor of that directory (owned by the tree); empty when ``parts`` is not a
        directory of the merged view."""
        key = tuple(parts)
        cached = self._dirs.get(key)
        if cached is not None:
            return cached
        if not _names_ok(key):
            return []
        # Iterative (a path may be deeper than Python's recursion limit): from the longest
        # cached prefix down, one level at a time.
        depth = len(key)
        while depth and key[:depth] not in self._dirs:
            depth -= 1
        if depth == 0 and () not in self._dirs:
            self._remember((), [(i, os.open(".", _DIR, dir_fd=root)) for i, root in enumerate(self.roots)])
        stack = self._dirs[key[:depth]]
        transient = False  # levels past CACHED_DEPTH are not kept: their descriptors are closed
        for level in range(depth + 1, len(key) + 1):
            child = self._child_stack(stack, key[level - 1])
            if transient:
                for _, fd in stack:
                    os.close(fd)
            transient = level > self.CACHED_DEPTH and level < len(key)
            stack = child if transient else self._remember(key[:level], child)
        return stack

    @staticmethod
    def _child_stack(parent: list[tuple[int, int]], name: str) -> list[tuple[int, int]]:
        stack: list[tuple[int, int]] = []
        try:
            for layer, pfd in parent:
                st = _lstat(pfd, name)
                if st is None:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    break  # a whiteout or a non-directory hides the rest
                fd = os.open(name, _DIR, dir_fd=pfd)
                stack.append((layer, fd))
                if _opaque(fd):
                    break
        except BaseException:
            for _, fd in stack:
                os.close(fd)
            raise
        return stack

    def _remember(self, key: tuple[str, ...], stack: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if len(self._dirs) >= self.MAX_CACHED:
            # Only directories off the path to ``key`` are dropped (its parents are in use).
            self._evict(key)
        self._dirs[key] = stack
        return stack

    def _evict(self, keep: tuple[str, ...]) -> None:
        for cached in [k for k in self._dirs if k != keep[:len(k)]]:
            for _, fd in self._dirs.pop(cached):
                os.close(fd)

    def lookup(self, parts: Sequence[str]) -> tuple[int, os.stat_result] | None:
        """The layer holding the visible entry ``parts`` and its lstat, or None when the merged
        view has no such entry. The root is the top layer's root."""
        if not parts:
            return (0, os.fstat(self.roots[0])) if self.roots else None
        if not _names_ok(parts[-1:]):
            return None
        for layer, pfd in self.dir_stack(parts[:-1]):
            st = _lstat(pfd, parts[-1])
            if st is None:
                continue
            return None if _whiteout(st) else (layer, st)
        return None

    def present_anywhere(self, parts: Sequence[str]) -> bool:
        """Whether any layer holds an entry at ``parts`` in its own tree, visible in the merged
        view or not (a whiteout, or what a whiteout or an opaque directory hides, counts):
        what a new entry made at ``parts`` in a layer above would have to hide. A layer where a
        component of the path is not a directory holds nothing there."""
        if not parts:
            return True
        if not _names_ok(parts):
            return True     # not a plain path: the caller takes its careful way
        parent = "/".join(parts[:-1]) or "."
        for root in self.roots:
            try:
                fd = openat2(root, parent, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, _STRICT)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue
                raise
            try:
                if _lstat(fd, parts[-1]) is not None:
                    return True
            finally:
                os.close(fd)
        return False

    def lstat(self, parts: Sequence[str]) -> os.stat_result | None:
        found = self.lookup(parts)
        return found[1] if found is not None else None

    def scandir(self, parts: Sequence[str]) -> list[tuple[str, int, os.stat_result]]:
        """The merged directory ``parts``: (name, layer, lstat) of each visible entry, unsorted.
        Raises NotADirectoryError when ``parts`` is not a directory of the merged view."""
        stack = self.dir_stack(parts)
        if not stack:
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/".join(parts) or ".")
        seen: set[str] = set()
        out: list[tuple[str, int, os.stat_result]] = []
        for layer, fd in stack:
            for name in os.listdir(fd):
                if name in seen:
                    continue
                seen.add(name)
                st = _lstat(fd, name)
                if st is not None and not _whiteout(st):
                    out.append((name, layer, st))
        return out

    def parent_fd(self, layer: int, parts: Sequence[str]) -> int:
        """A descriptor (owned by the tree) of the directory holding ``parts`` in ``layer``,
        where ``parts`` is the visible entry of that layer; valid until the next lookup."""
        for i, fd in self.dir_stack(parts[:-1]):
            if i == layer:
                return fd
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/".join(parts))

    # -- opening ---------------------------------------------------------------------------------

    def open_in(self, layer: int, parts: Sequence[str], flags: int) -> int:
        """Open ``parts`` as it is in ``layer`` (the layer ``lookup`` named), following nothing."""
        if not _names_ok(parts):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/".join(parts))
        path = "/".join(parts)
        return openat2(self.roots[layer], path or ".", flags | os.O_NOFOLLOW if path else flags, _STRICT)

    def open(self, parts: Sequence[str], flags: int) -> int:
        """Open the visible entry ``parts`` (of a directory: only its top layer's directory)."""
        found = self.lookup(parts)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/".join(parts))
        return self.open_in(found[0], parts, flags)

    def readlink(self, parts: Sequence[str]) -> str:
        found = self.lookup(parts)
        if found is None or not parts:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/".join(parts))
        return os.readlink(parts[-1], dir_fd=self.parent_fd(found[0], parts))


def _names_ok(parts: Sequence[str]) -> bool:
    # Components only: "..", "." or a slash would leave the directory they are looked up in.
    return all(p and p not in (".", "..") and "/" not in p for p in parts)


def _lstat(dirfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except OSError as e:
        if e.errno in _MISSING:
            return None
        raise


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


__all__ = ["LayeredTree"]
