"""Unpacked layers, shared by chain id, and the root filesystem a container runs on.

::

    <root>/snapshots/
    ├── <chain id hex>/        one layer as an overlay diff (see unpack.py), read-only by convention
    ├── flat-<chain id hex>/   a chain merged into one directory of hard links (a RUN step's bind
    │                          mount of a stage: read-only, so sharing the snapshots' inodes is safe)
    ├── .unpack-<hex>/         a layer being unpacked (renamed into place when complete; a
    │                          leftover of a killed unpack is removed before the next try)
    └── .locks/<hex>           flock so two processes do not unpack the same layer at once

``snapshots/`` is 0700: a snapshot's own mode is its layer's ``./`` entry (the container's ``/``,
0777 if the image says so), so only its parent keeps other host users out.

ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)) (OCI image spec).

A container's root is an overlay of its chain with its own upper directory; the upper directory
is the container's diff, which ``storage.tree.walk_changes`` lists for the builder. The lowerdirs
are named relative to the snapshot root; a chain whose names do not fit in one page of mount
data is named through short symlinks in the container's folder (``lowers/0``, ``lowers/1``, ...:
docker's overlay2 ``l/`` links), and only a chain deeper than overlay's 500 layers is merged, into
the container's folder (removed with it). Without overlay the chain is merged into a plain copy
(reflinked where the filesystem can). ``storage.layered.LayeredTree`` reads a chain's merged
view in place, with no mount and no copy (the builder's COPY --from).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import EscapeAttempt, ImageConfigInvalid, ImageError, LayerCorrupt, RuntimeFailure
from storage.errors import TreeError, TreeEscape
from storage.fsutil import file_lock, private_dir
from storage.tarlimits import Budget, Limits
from storage.tree import remove_tree as _remove_tree

if TYPE_CHECKING:
    from runtime.unpack import UnpackStats
from storage.tree import RootedTree, copy_meta, copy_node, is_opaque, is_whiteout

# Re-exported: tests/runtime/test_run.py reads a container's diff through this module.
from storage.tree import walk_changes as walk_changes

# The kernel copies at most a page of mount data; keep a margin for upperdir/workdir.
MOUNT_DATA_MAX = 4096 - 1
OVERLAY_MAX_LOWERS = 500  # the kernel's OVL_MAX_STACK
_FICLONE = 0x40049409


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Chain ids of every prefix of ``diff_ids`` (OCI image spec, "Layer ChainID")."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def _hex(chain_id: str) -> str:
    algo, _, hexd = chain_id.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        raise ImageConfigInvalid(f"invalid diff_id or chain id {chain_id!r}")
    return hexd


def remove_tree(path: str | os.PathLike[str]) -> None:
    """``rm -rf path`` at any depth, never following a symlink below ``path``; missing is fine.
    (storage.tree.remove_tree, its errors as RuntimeFailure; every runtime module removes trees with it.)"""
    try:
        _remove_tree(path)
    except TreeError as e:
        raise RuntimeFailure(str(e)) from None


class SnapshotStore:
    def __init__(self, root: str | os.PathLike[str], limits: Limits | None = None) -> None:
        self.root = Path(root)
        self.limits = limits

    def path(self, chain_id: str) -> Path:
        return self.root / _hex(chain_id)

    def has(self, chain_id: str) -> bool:
        return self.path(chain_id).is_dir()

    def ensure(self, blob: Path, diff_id: str, chain_id: str, lowers: list[Path] | None = None,
               budget: Budget | None = None) -> Path:
        """The snapshot for ``chain_id``, unpacking ``blob`` into it first if needed;
        ``lowers`` are the snapshots below it (where its hardlinks may point)."""
        dest = self.path(chain_id)
        if dest.is_dir():
            return dest
        if not blob.is_file():
            raise ImageError(f"layer {blob.name} is missing from the image store (pull the image again)")
        private_dir(self.root)
        with file_lock(self.root / ".locks" / dest.name):
            if dest.is_dir():
                return dest
            self._unpack(blob, diff_id, dest, lowers or [], budget)
        return dest

    def _unpack(self, blob: Path, diff_id: str, dest: Path, lowers: list[Path],
                budget: Budget | None) -> UnpackStats:
        # Named after the snapshot and made under its lock: whatever a killed unpack left is
        # removed here, and a failed one removes its own.
        tmp = self.root / f".unpack-{dest.name}"
        remove_tree(tmp)
        tmp.mkdir()
        # The container's "/" unless the layer has a "./" entry; snapshots/ keeps others out.
        os.chmod(tmp, 0o755)
        try:
            from runtime.unpack import apply_layer  # only when a layer is unpacked (start-up time)

            stats = apply_layer(blob, tmp, diff_id, self.limits, lowers=lowers, budget=budget)
            os.rename(tmp, dest)
            return stats
        except BaseException:
            remove_tree(tmp)
            raise

    def adopt(self, upper: Path, chain_id: str) -> Path:
        """Make the directory ``upper`` (an overlay diff on this store's file system, e.g. a
        build step's upper dir) the snapshot of ``chain_id``, moving it, never unpacking; if the
        snapshot exists already, ``upper`` is removed and the existing one kept."""
        dest = self.path(chain_id)
        private_dir(self.root)
        with file_lock(self.root / ".locks" / dest.name):
            if dest.is_dir():
                remove_tree(upper)
                return dest
            os.rename(upper, dest)
        return dest

    def ensure_chain(self, blobs: list[Path], diff_ids: list[str]) -> list[Path]:
        """Snapshots for every layer of an image, lowest first."""
        if len(blobs) != len(diff_ids):
            raise ImageConfigInvalid(
                f"the image has {len(blobs)} layers but its config lists {len(diff_ids)} diff_ids")
        private_dir(self.root)
        budget = Budget()
        chain: list[Path] = []
        for blob, diff_id, chain_id in zip(blobs, diff_ids, chain_ids(diff_ids), strict=False):
            chain.append(self.ensure(blob, diff_id, chain_id, list(chain), budget))
        return chain

    def flattened(self, chain: list[Path]) -> Path:
        """One directory holding the merge of ``chain`` (cached under the top layer's chain id),
        its regular files hard links to the snapshots' (so it must only ever be bound read-only;
        a copy of the data is made where the store cannot link)."""
        dest = self.root / f"flat-{chain[-1].name}" if chain else self.root / "flat-empty"
        if dest.is_dir():
            return dest
        with file_lock(self.root / ".locks" / dest.name):
            if dest.is_dir():
                return dest
            tmp = self.root / f".flatten-{dest.name}"
            remove_tree(tmp)
            tmp.mkdir()
            os.chmod(tmp, 0o755)
            try:
                merge_into(chain, tmp, link=True)
                os.rename(tmp, dest)
            except BaseException:
                remove_tree(tmp)
                raise
        return dest


@dataclass(frozen=True)
class RootfsPlan:
    """How the container init builds the root: an overlay (``options`` relative to ``cwd``),
    or a bind mount of the ready-made directory ``copy``."""

    kind: str               # "overlay" | "copy"
    cwd: str = ""
    options: str = ""
    copy: str = ""

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "cwd": self.cwd, "options": self.options, "copy": self.copy}

    @classmethod
    def from_json(cls, doc: dict[str, str]) -> RootfsPlan:
        return cls(doc["kind"], doc.get("cwd", ""), doc.get("options", ""), doc.get("copy", ""))


def _unsafe_for_options(path: str) -> bool:
    return any(c in path for c in ",:\\\n")


def overlay_options(lowers: list[str], upper: str, work: str, volatile: bool = False) -> str:
    """``volatile``: no syncfs of the upper dir's file system at unmount (nor fsync through the
    overlay); for an upper dir used once, a build step's (``runtime.unsynced``), never for a
    container's, whose upper and work dirs are mounted again at each start (the kernel refuses
    to mount a work dir that was mounted volatile)."""
    return f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}" + (",volatile" if volatile else "")


def plan_rootfs(store: SnapshotStore, chain: list[Path], container_dir: Path,
                use_overlay: bool = True, volatile: bool = False) -> RootfsPlan:
    """Pick overlay (names relative to the snapshot root, to fit more layers into one page of
    mount data) or, when overlay is off, a merged copy in ``container_dir/rootfs``."""
    upper, work = container_dir / "upper", container_dir / "work"
    if use_overlay and not any(_unsafe_for_options(str(p)) for p in (upper, work)):
        upper.mkdir(mode=0o755, exist_ok=True)
        work.mkdir(mode=0o700, exist_ok=True)
        cwd, options = overlay_mount_data(store, chain, container_dir, upper, work, volatile)
        return RootfsPlan("overlay", cwd=cwd, options=options)
    rootfs = container_dir / "rootfs"
    rootfs.mkdir(mode=0o755, exist_ok=True)
    merge_into(chain, rootfs)
    return RootfsPlan("copy", copy=str(rootfs))


def overlay_mount_data(store: SnapshotStore, chain: list[Path], folder: Path, upper: Path,
                       work: Path, volatile: bool = False) -> tuple[str, str]:
    """(directory to mount from, overlay options) for ``chain`` (lowest first) under the upper
    and work dirs: the snapshots' names relative to the store, or, when they do not fit in a
    page, short symlinks ``folder/lowers/N`` to them (overlay follows them when it is mounted,
    as docker's overlay2 ``l/`` links); a chain past overlay's own limit (or one whose links
    still do not fit) is merged into ``folder/lower``, which goes when ``folder`` does."""
    lowers = [p.name for p in reversed(chain)] or [_empty_lower(store)]
    options = overlay_options(lowers, str(upper), str(work), volatile)
    if len(options) <= MOUNT_DATA_MAX and all(store.root / name == layer for name, layer in
                                              zip(lowers, reversed(chain), strict=False)):
        return str(store.root), options
    if len(chain) <= OVERLAY_MAX_LOWERS:
        links = folder / "lowers"
        remove_tree(links)
        links.mkdir(mode=0o700)
        for index, layer in enumerate(reversed(chain)):
            os.symlink(os.path.abspath(layer), links / str(index))
        options = overlay_options([str(i) for i in range(len(chain))], str(upper), str(work), volatile)
        if len(options) <= MOUNT_DATA_MAX:
            return str(links), options
    merged = folder / "lower"
    remove_tree(merged)
    merged.mkdir(mode=0o755)
    merge_into(chain, merged, link=True)  # a lowerdir is never written: links are safe
    return str(folder), overlay_options([merged.name], str(upper), str(work), volatile)


def _empty_lower(store: SnapshotStore) -> str:
    private_dir(store.root)
    (store.root / "empty").mkdir(mode=0o755, exist_ok=True)
    return "empty"


# -- merging diffs (the copy fallback) ---------------------------------------------------------

def merge_into(chain: list[Path], target: Path, link: bool = False) -> None:
    """Apply the overlay diffs ``chain`` (lowest first) onto ``target`` as overlayfs would show
    them: whiteouts delete, opaque directories hide what was below, nothing follows a symlink.
    With ``link`` regular files are hard links to the layers' (copied where linking fails)."""
    try:
        with RootedTree(target) as dest:
            for layer in chain:
                with RootedTree(layer) as src:
                    _Merger(src, dest, link).merge()
    except TreeEscape as e:
        raise EscapeAttempt(str(e)) from None
    except TreeError as e:
        raise LayerCorrupt(str(e)) from None


class _Merger:
    """One layer onto the merged tree, depth first with an explicit stack (no recursion, so a
    path of any depth merges)."""

    def __init__(self, src: RootedTree, dest: RootedTree, link: bool = False) -> None:
        self.src, self.dest = src, dest
        self.link = link
        self.links: dict[tuple[int, int], tuple[str, ...]] = {}

    def merge(self) -> None:
        # Each frame: a directory and the names in it still to merge (sorted, popped from the end).
        stack: list[tuple[tuple[str, ...], list[str]]] = [((), self._names(()))]
        while stack:
            parts, names = stack[-1]
            if not names:
                stack.pop()
                self._trim()
                copy_meta(self.src.dir_fd(parts, create=False), self.dest.dir_fd(parts))
                continue
            path = parts + (names.pop(),)
            self._trim()
            st = os.stat(path[-1], dir_fd=self.src.dir_fd(parts, create=False), follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) and not is_whiteout(st):
                opaque = is_opaque(self.src.dir_fd(path, create=False))
                self.dest.remove(path, keep_dir=not opaque)
                self.dest.dir_fd(path)
                stack.append((path, self._names(path)))
            else:
                self._merge_entry(path, st)

    def _trim(self) -> None:
        self.src.trim()
        self.dest.trim()

    def _names(self, parts: tuple[str, ...]) -> list[str]:
        return sorted(os.listdir(self.src.dir_fd(parts, create=False)), reverse=True)

    def _merge_entry(self, path: tuple[str, ...], st: os.stat_result) -> None:
        if is_whiteout(st):
            self.dest.remove(path)
            return
        self.dest.remove(path)
        dfd = self.dest.dir_fd(path[:-1])
        if st.st_nlink > 1:
            first = self.links.get((st.st_dev, st.st_ino))
            if first is not None:
                os.link(first[-1], path[-1], src_dir_fd=self.dest.dir_fd(first[:-1]), dst_dir_fd=dfd,
                        follow_symlinks=False)
                return
            self.links[(st.st_dev, st.st_ino)] = path
        sfd = self.src.dir_fd(path[:-1], create=False)
        if self.link and stat.S_ISREG(st.st_mode):
            try:
                os.link(path[-1], path[-1], src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
                return
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
        copy_node(sfd, dfd, path[-1], st)


