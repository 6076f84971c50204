"""The container's mounts, made by its init in its own mount namespace before pivot_root.

Mount points inside the root are found with ``secure_join``: a symlink in the image is resolved
as if the root were ``/``, so an image whose ``/etc`` points at the host's ``/etc`` cannot make
hoist create or cover a host file. Everything happens in a private mount namespace, so nothing
propagates to the host and all of it disappears with the container.
"""

from __future__ import annotations

import errno
import os
import stat

from runtime import linux
from runtime.linux import (MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE,
                           MS_RDONLY, MS_REC, MS_REMOUNT)

HOST_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
MASKED_PATHS = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                "/proc/acpi", "/proc/scsi", "/sys/firmware")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
_MAX_LINKS = 40


def secure_join(root: str, path: str) -> str:
    """``root`` + ``path`` with every symlink resolved inside ``root`` (chroot semantics)."""
    todo = [p for p in path.split("/") if p]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            done.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, f"too many symlinks under {path}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            done = []
        todo = [p for p in target.split("/") if p] + todo
    return os.path.join(root, *done)


def _mkdirs_inside(root: str, path: str) -> str:
    """Create directory ``path`` inside ``root`` (resolving each level safely)."""
    parts = [p for p in path.split("/") if p]
    current = "/"
    for i in range(len(parts)):
        current = "/" + "/".join(parts[:i + 1])
        real = secure_join(root, current)
        if not os.path.isdir(real):
            if os.path.lexists(real):
                raise OSError(errno.ENOTDIR, f"{current} exists in the image and is not a directory")
            os.mkdir(real, 0o755)
    return secure_join(root, current)


def mountpoint(root: str, path: str, is_dir: bool) -> str:
    """The host path for mount point ``path`` inside ``root``, created if missing."""
    parent, _, name = path.rstrip("/").rpartition("/")
    if not name:
        return root
    if is_dir:
        return _mkdirs_inside(root, path)
    real = secure_join(_mkdirs_inside(root, parent) if parent else root, name)
    if not real.startswith(root.rstrip("/") + "/"):
        raise OSError(errno.EXDEV, f"{path} resolves outside the container")
    if not os.path.lexists(real):
        os.close(os.open(real, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
    elif os.path.isdir(real):
        raise OSError(errno.EISDIR, f"{path} is a directory in the image; cannot mount a file on it")
    return real


def bind(source: str, target: str, readonly: bool = False, extra: int = 0) -> None:
    linux.mount(source, target, None, MS_BIND | MS_REC)
    if readonly or extra:
        flags = MS_BIND | MS_REMOUNT | extra | (MS_RDONLY if readonly else 0)
        linux.mount(None, target, None, flags)


def make_private() -> None:
    linux.mount(None, "/", None, MS_REC | MS_PRIVATE)


def mount_overlay(target: str, cwd: str, options: str) -> None:
    """Overlay with lowerdirs named relative to ``cwd`` (shorter option string)."""
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir(cwd)
        linux.mount("overlay", target, "overlay", MS_NODEV, options)
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


def mount_sys(root: str, own_netns: bool) -> None:
    target = mountpoint(root, "/sys", True)
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    if own_netns:
        try:
            linux.mount("sysfs", target, "sysfs", flags)
            return
        except OSError:
            pass
    # Sharing the host's network namespace, sysfs cannot be mounted afresh: bind it read-only.
    bind("/sys", target, readonly=True)


def mask_paths(root: str) -> None:
    """Hide and write-protect what docker hides and write-protects in /proc and /sys."""
    for path in MASKED_PATHS:
        real = secure_join(root, path)
        if not os.path.exists(real):
            continue
        if os.path.isdir(real):
            linux.mount("tmpfs", real, "tmpfs", MS_RDONLY)
        else:
            bind("/dev/null", real)
    for path in READONLY_PATHS:
        real = secure_join(root, path)
        if os.path.exists(real):
            bind(real, real, readonly=True)


def pivot(root: str) -> None:
    """pivot_root into ``root`` and drop the old root (the ``.``/``.`` trick needs no put_old)."""
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount2(".", MNT_DETACH)
    os.chdir("/")
