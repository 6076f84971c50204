"""The container's mounts, made by its init in its own mount namespace before pivot_root.

Every mount point inside the root is opened with ``openat2(RESOLVE_IN_ROOT)`` (``open_in_root``):
a symlink in the image, or one swapped in by another container sharing a volume, is resolved as
if the root were ``/``, and the mount is made on the opened descriptor (``/proc/self/fd/N``), so
no path is looked up twice and none is ever followed on the host. Everything happens in a private
mount namespace, so nothing propagates to the host and all of it disappears with the container.

What a container may write to is mounted ``nodev`` (its root, /dev, /dev/shm, every volume and
every mount below a volume) and, for volumes, ``nosuid``; /sys is a fresh read-only sysfs with a
read-only view of the container's own cgroups (a cgroup namespace) at /sys/fs/cgroup.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from runtime import linux
from runtime.linux import (
    MNT_DETACH,
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_STRICTATIME,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
)

HOST_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
SPECIAL_DIRS = ("/proc", "/sys", "/dev")
_MAX_LINKS = 40
_PER_MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                    "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
                    "strictatime": MS_STRICTATIME}
_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


def fd_path(fd: int) -> str:
    """The path that names an open descriptor for mount(2)."""
    return f"/proc/self/fd/{fd}"


def _open_parent(rootfd: int, parts: list[str]) -> tuple[int, str]:
    """Open the directory holding ``parts[-1]`` inside the root, creating missing levels.
    Returns (O_PATH fd of the parent, the final name). Symlinks resolve inside the root."""
    links = 0
    todo = list(parts)
    done: list[str] = []
    while len(todo) > 1:
        part = todo.pop(0)
        here = "/".join(done + [part]) or "."
        try:
            fd = linux.openat2(rootfd, here, os.O_PATH | os.O_DIRECTORY, _RESOLVE)
            os.close(fd)
            done.append(part)
            continue
        except FileNotFoundError:
            pass
        parent = linux.openat2(rootfd, "/".join(done) or ".", os.O_PATH | os.O_DIRECTORY, _RESOLVE)
        try:
            try:
                st = os.stat(part, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=parent)
                done.append(part)
                continue
            if not stat.S_ISLNK(st.st_mode):
                raise OSError(errno.ENOTDIR, f"/{here} exists in the image and is not a directory")
            # A dangling symlink: create its target inside the root, as runc does.
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, f"too many symlinks under /{'/'.join(parts)}")
            target = os.readlink(part, dir_fd=parent)
        finally:
            os.close(parent)
        todo = [p for p in target.split("/") if p] + todo
        if target.startswith("/"):
            done = []
    parent = linux.openat2(rootfd, "/".join(done) or ".", os.O_PATH | os.O_DIRECTORY, _RESOLVE)
    return parent, todo[0]


def _clean_parts(path: str) -> list[str]:
    parts: list[str] = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
            continue
        parts.append(p)
    return parts


def open_in_root(root: str, path: str, is_dir: bool) -> int:
    """An O_PATH descriptor of mount point ``path`` inside ``root``, created (as a directory, or
    an empty file) if missing. Symlinks, absolute or relative, resolve inside ``root``; nothing
    outside it is ever looked up or created. Raises OSError."""
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parts = _clean_parts(path)
        if not parts:
            return os.dup(rootfd)
        for _ in range(_MAX_LINKS):
            parent, name = _open_parent(rootfd, parts)
            try:
                try:
                    fd = linux.openat2(parent, name, os.O_PATH, _RESOLVE)
                except FileNotFoundError:
                    fd = -1
                if fd >= 0:
                    st = os.fstat(fd)
                    if is_dir and not stat.S_ISDIR(st.st_mode):
                        os.close(fd)
                        raise OSError(errno.ENOTDIR, f"{path} exists in the image and is not a directory")
                    if not is_dir and stat.S_ISDIR(st.st_mode):
                        os.close(fd)
                        raise OSError(errno.EISDIR, f"{path} is a directory in the image; cannot mount a file on it")
                    return fd
                try:
                    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                except FileNotFoundError:
                    if is_dir:
                        os.mkdir(name, 0o755, dir_fd=parent)
                    else:
                        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                         | os.O_CLOEXEC, 0o644, dir_fd=parent))
                    return linux.openat2(parent, name, os.O_PATH | os.O_NOFOLLOW, _RESOLVE)
                # A dangling final symlink: follow it (inside the root) and create its target.
                target = os.readlink(name, dir_fd=parent)
            finally:
                os.close(parent)
            base = [] if target.startswith("/") else parts[:-1]
            parts = _clean_parts("/".join(base + [target]))
            if not parts:
                return os.dup(rootfd)
        raise OSError(errno.ELOOP, f"too many symlinks under {path}")
    finally:
        os.close(rootfd)


@contextmanager
def mountpoint_fd(root: str, path: str, is_dir: bool) -> Iterator[str]:
    """``open_in_root`` as a context: yields the ``/proc/self/fd/N`` name to mount on."""
    fd = open_in_root(root, path, is_dir)
    try:
        yield fd_path(fd)
    finally:
        os.close(fd)


def mountpoint(root: str, path: str, is_dir: bool) -> str:
    """The host path of mount point ``path`` inside ``root`` (created if missing), for mounts
    made before anything in the container runs (its own /proc, /dev, /sys)."""
    fd = open_in_root(root, path, is_dir)
    try:
        return os.readlink(fd_path(fd))
    finally:
        os.close(fd)


def _mount_flags(options: str) -> int:
    flags = 0
    for opt in options.split(","):
        flags |= _PER_MOUNT_FLAGS.get(opt, 0)
    return flags


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(target: str) -> list[tuple[str, int]]:
    """(mount point, per-mount flags) of every mount at or below ``target``, parents first."""
    target = target.rstrip("/") or "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = _unescape(fields[4])
            if point == target or point.startswith(target.rstrip("/") + "/"):
                found.append((point, _mount_flags(fields[5])))
    return found


def remount_tree(target: str, add: int) -> None:
    """Add ``add`` (MS_RDONLY, MS_NODEV, ...) to every mount at or below ``target``: a recursive
    bind copies its submounts with their own flags, and a remount changes only the top one."""
    for point, flags in mounts_under(target):
        linux.mount(None, point, None, MS_BIND | MS_REMOUNT | flags | add)


def bind(source: str, target: str, readonly: bool = False, extra: int = 0) -> None:
    """Recursive bind of ``source`` on the host path ``target``, every mount of it given
    ``extra`` (and MS_RDONLY when ``readonly``)."""
    linux.mount(source, target, None, MS_BIND | MS_REC)
    add = extra | (MS_RDONLY if readonly else 0)
    if add:
        remount_tree(target, add)


_ATTRS = {MS_RDONLY: linux.MOUNT_ATTR_RDONLY, MS_NOSUID: linux.MOUNT_ATTR_NOSUID,
          MS_NODEV: linux.MOUNT_ATTR_NODEV, MS_NOEXEC: linux.MOUNT_ATTR_NOEXEC}


def bind_into(root: str, source: str, target: str, flags: int) -> None:
    """Bind ``source`` (recursively) on ``target`` inside ``root`` with ``flags`` (MS_NODEV,
    MS_NOSUID, MS_RDONLY...) on every mount of the tree. The tree is cloned detached, given its
    flags, then attached to the descriptor of the mount point: it is never visible without them,
    and the mount point is never looked up by path again."""
    fd = open_in_root(root, target, os.path.isdir(source))
    try:
        try:
            tree = linux.open_tree(source, linux.OPEN_TREE_CLONE | linux.AT_RECURSIVE)
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
            # Before Linux 5.12: bind on the descriptor, then remount by the path it now has.
            linux.mount(source, fd_path(fd), None, MS_BIND | MS_REC)
            remount_tree(os.readlink(fd_path(fd)), flags)
            return
        try:
            linux.mount_setattr(tree, sum(v for k, v in _ATTRS.items() if flags & k))
            linux.move_mount_fd(tree, fd)
        finally:
            os.close(tree)
    finally:
        os.close(fd)


def tmpfs_into(root: str, target: str, flags: int, options: str) -> None:
    """A fresh tmpfs with ``options`` (size, nr_inodes...) and ``flags`` on directory ``target``
    inside ``root``, mounted on the descriptor of the mount point (opened as ``bind_into``
    opens it: symlinks resolve inside the root)."""
    fd = open_in_root(root, target, True)
    try:
        linux.mount("tmpfs", fd_path(fd), "tmpfs", flags, options)
    finally:
        os.close(fd)


def check_special_dirs(root: str) -> None:
    """/proc, /sys and /dev must be real directories (or absent) in the image: a symlink there
    would put the kernel's file systems somewhere else in the tree (runc refuses it too)."""
    for path in SPECIAL_DIRS:
        try:
            st = os.lstat(os.path.join(root, path.lstrip("/")))
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, f"{path} in the image is not a directory")


def make_private() -> None:
    linux.mount(None, "/", None, MS_REC | MS_PRIVATE)


def mount_overlay(target: str, cwd: str, options: str) -> None:
    """Overlay with lowerdirs named relative to ``cwd`` (shorter option string). A kernel
    without ``volatile`` (before 5.10) mounts without it: the unmount then syncs, as before."""
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir(cwd)
        try:
            linux.mount("overlay", target, "overlay", MS_NODEV, options)
        except OSError as e:
            if e.errno != errno.EINVAL or not options.endswith(",volatile"):
                raise
            linux.mount("overlay", target, "overlay", MS_NODEV, options.removesuffix(",volatile"))
    finally:
        os.fchdir(here)
        os.close(here)


def mount_rootfs_copy(target: str, copy: str) -> None:
    bind(copy, target, extra=MS_NODEV)


def mount_proc(root: str) -> None:
    linux.mount("proc", mountpoint(root, "/proc", True), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_dev(root: str) -> None:
    dev = mountpoint(root, "/dev", True)
    # nodev: a device node made inside the container is inert; the allowed ones are bind mounts.
    linux.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=65536k")
    for name in HOST_DEVICES:
        target = os.path.join(dev, name)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))
        try:
            bind(f"/dev/{name}", target)
        except OSError:
            if name != "tty":
                raise
            os.unlink(target)
    os.mkdir(os.path.join(dev, "pts"), 0o755)
    linux.mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    linux.mount("shm", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "mode=1777,size=65536k")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("core", "/proc/kcore")):
        os.symlink(target, os.path.join(dev, name))


def mount_sys(root: str, own_netns: bool, with_cgroups: bool = True) -> str | None:
    """A fresh read-only sysfs (it shows the network namespace's own devices); only where the
    kernel refuses one (a user namespace that does not own the network namespace) the host's
    /sys bound with every submount read-only. Then the cgroup view, or, ``with_cgroups`` false,
    the path where the caller is to mount it (``mount_cgroups``) once the process is in its
    cgroups; None when there is no view to make (the host's /sys is bound)."""
    target = mountpoint(root, "/sys", True)
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    try:
        linux.mount("sysfs", target, "sysfs", flags)
    except OSError:
        bind("/sys", target, extra=flags)
        return None
    view = os.path.join(target, "fs/cgroup")
    if not with_cgroups:
        return view
    mount_cgroups(view)
    return None


def _host_cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) of the host's cgroup file systems."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, superopts = fields[sep + 1], fields[sep + 3] if len(fields) > sep + 3 else ""
            if fstype in ("cgroup", "cgroup2"):
                found.append((_unescape(fields[4]), fstype, superopts))
    return found


def mount_cgroups(target: str) -> None:
    """A read-only view of the container's own cgroups at ``target`` (/sys/fs/cgroup): a new
    cgroup namespace makes the container's cgroup each hierarchy's root, so the view shows its
    limits (as docker's does) and nothing of the host's tree, and nothing in it is writable."""
    linux.unshare(linux.CLONE_NEWCGROUP)
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    hosts = _host_cgroup_mounts()
    unified = [m for m in hosts if m[0] == "/sys/fs/cgroup" and m[1] == "cgroup2"]
    if unified:
        linux.mount("cgroup2", target, "cgroup2", flags)
        return
    linux.mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k")
    for point, fstype, superopts in hosts:
        if not point.startswith("/sys/fs/cgroup/"):
            continue
        name = point[len("/sys/fs/cgroup/"):]
        if "/" in name:
            continue
        options = ",".join(o for o in superopts.split(",") if o not in ("rw", "ro"))
        where = os.path.join(target, name)
        os.mkdir(where, 0o555)
        try:
            linux.mount("cgroup", where, fstype, flags, options if fstype == "cgroup" else None)
        except OSError:
            os.rmdir(where)   # a hierarchy the kernel will not show again: leave it out
    linux.mount(None, target, None, MS_BIND | MS_REMOUNT | flags)


def _open_existing(root: str, path: str) -> int | None:
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return linux.openat2(rootfd, path.lstrip("/"), os.O_PATH, _RESOLVE)
    except (FileNotFoundError, NotADirectoryError):
        return None
    finally:
        os.close(rootfd)


def mask_paths(root: str) -> None:
    """Hide and write-protect what docker hides and write-protects in /proc and /sys."""
    for path in MASKED_PATHS:
        fd = _open_existing(root, path)
        if fd is None:
            continue
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                linux.mount("tmpfs", fd_path(fd), "tmpfs", MS_RDONLY, "size=0")
            else:
                linux.mount("/dev/null", fd_path(fd), None, MS_BIND)
        finally:
            os.close(fd)
    for path in READONLY_PATHS:
        fd = _open_existing(root, path)
        if fd is None:
            continue
        try:
            bind_into(root, fd_path(fd), path, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        finally:
            os.close(fd)


def pivot(root: str) -> None:
    """pivot_root into ``root`` and drop the old root (the ``.``/``.`` trick needs no put_old)."""
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount2(".", MNT_DETACH)
    os.chdir("/")
