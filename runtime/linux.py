"""Thin ctypes wrappers for the Linux calls Python 3.11 lacks (unshare, mount, pivot_root, setns,
prctl, capset) and for bringing loopback up. Every wrapper raises OSError with errno set.

Nothing here imports lazily: the container init calls these after pivot_root, when the host's
Python library is no longer reachable.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import struct

# openat2(2) lives in storage/ (the builder opens files in untrusted trees too); re-exported.
from storage.openat2 import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2  # noqa: F401

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# The new mount API (Linux 5.12): attributes set on a detached tree before it is attached.
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
OPEN_TREE_CLONE = 1
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40


PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_SET_MM = 35
PR_SET_MM_ARG_END = 9

KEYCTL_JOIN_SESSION_KEYRING = 1

# Syscalls glibc does not wrap, by machine.
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capset": 126, "keyctl": 250, "openat2": 437, "open_tree": 428,
               "move_mount": 429, "mount_setattr": 442},
    "aarch64": {"pivot_root": 41, "capset": 91, "keyctl": 219, "openat2": 437, "open_tree": 428,
                "move_mount": 429, "mount_setattr": 442},
}

# Docker's default capability set (moby/oci/caps/defaults.go), by number.
DEFAULT_CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_AF_INET = 2
_SOCK_DGRAM = 2
_SOCK_CLOEXEC = 0o2000000


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _syscall_number(name: str) -> int:
    table = _SYSCALLS.get(platform.machine())
    if table is None:
        raise OSError(38, f"{name}: unsupported machine {platform.machine()}")
    return table[name]


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    res = _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
    _check(res, f"mount {target}")


def open_tree(path: str, flags: int) -> int:
    """open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount tree at ``path``."""
    res = _libc.syscall(ctypes.c_long(_syscall_number("open_tree")), ctypes.c_int(-100),
                        path.encode(), ctypes.c_uint(flags | os.O_CLOEXEC))
    return _check(res, f"open_tree {path}")


def mount_setattr(fd: int, attr_set: int, recursive: bool = True) -> None:
    """mount_setattr(2) on the mount (tree) that ``fd`` names."""
    attr = ctypes.create_string_buffer(struct.pack("QQQQ", attr_set, 0, 0, 0), 32)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    res = _libc.syscall(ctypes.c_long(_syscall_number("mount_setattr")), ctypes.c_int(fd), b"",
                        ctypes.c_uint(flags), attr, ctypes.c_size_t(32))
    _check(res, "mount_setattr")


def move_mount_fd(from_fd: int, to_fd: int) -> None:
    """move_mount(2) the detached tree ``from_fd`` onto the directory or file ``to_fd``."""
    res = _libc.syscall(ctypes.c_long(_syscall_number("move_mount")), ctypes.c_int(from_fd), b"",
                        ctypes.c_int(to_fd), b"",
                        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH))
    _check(res, "move_mount")


def syncfs(fd: int) -> None:
    """syncfs(2): write back everything dirty of the file system ``fd`` is on, and wait (the
    GIL is released meanwhile); raises OSError on a writeback error since the last call."""
    _check(_libc.syncfs(ctypes.c_int(fd)), "syncfs")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    res = _libc.syscall(ctypes.c_long(_syscall_number("pivot_root")), new_root.encode(), put_old.encode())
    _check(res, "pivot_root")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    args = [ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5)]
    return _check(_libc.prctl(ctypes.c_int(option), *args), f"prctl {option}")


def set_process_name(name: str) -> None:
    """What ``ps`` and /proc/PID/comm show (at most 15 bytes)."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    _check(_libc.prctl(ctypes.c_int(PR_SET_NAME), buf, ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)), "prctl PR_SET_NAME")


def cap_last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def drop_bounding_set(keep: set[int], last_cap: int) -> None:
    """Drop every capability not in ``keep`` from the bounding set (needs CAP_SETPCAP)."""
    for cap in range(last_cap + 1):
        if cap not in keep:
            prctl(PR_CAPBSET_DROP, cap)


def capset(effective: set[int], permitted: set[int], inheritable: set[int]) -> None:
    """Set this thread's capability sets (version 3: two 32-bit words per set)."""
    def words(caps: set[int]) -> tuple[int, int]:
        mask = sum(1 << c for c in caps)
        return mask & 0xFFFFFFFF, mask >> 32

    header = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    (e0, e1), (p0, p1), (i0, i1) = words(effective), words(permitted), words(inheritable)
    data = struct.pack("6I", e0, p0, i0, e1, p1, i1)
    hbuf, dbuf = ctypes.create_string_buffer(header), ctypes.create_string_buffer(data)
    _check(_libc.syscall(ctypes.c_long(_syscall_number("capset")), hbuf, dbuf), "capset")


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def loopback_up() -> None:
    """Bring ``lo`` up in the current network namespace (ioctl, no ``ip`` binary needed)."""
    # socket(2) through libc: the socket module costs ~2 ms of start-up for this one call.
    fd = _check(_libc.socket(ctypes.c_int(_AF_INET), ctypes.c_int(_SOCK_DGRAM | _SOCK_CLOEXEC),
                             ctypes.c_int(0)), "socket")
    try:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(fd, _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(fd, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    finally:
        os.close(fd)


def sethostname(name: str) -> None:
    """sethostname(2) in the current UTS namespace."""
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def join_new_session_keyring() -> None:
    """Join a fresh anonymous session keyring, so the container neither possesses the caller's
    session keys nor leaves its own there (runc does the same)."""
    res = _libc.syscall(ctypes.c_long(_syscall_number("keyctl")), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING),
                        ctypes.c_void_p(None))
    _check(res, "keyctl(KEYCTL_JOIN_SESSION_KEYRING)")


def set_dumpable(dumpable: bool) -> None:
    """A non-dumpable process's /proc/PID/{exe,environ,mem,fd,...} need CAP_SYS_PTRACE to open,
    which a container never has; it stays so until the next execve."""
    prctl(PR_SET_DUMPABLE, 1 if dumpable else 0)


def close_fds_above_2(keep: tuple[int, ...] = ()) -> None:
    """Close every descriptor above 2 except ``keep`` (close_range(2) under os.closerange)."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 30)


def erase_command_line(name: str) -> None:
    """Overwrite this process's argv and environment strings (what /proc/PID/cmdline and
    /proc/PID/environ read) so a process forked from the caller shows ``name`` and none of the
    caller's arguments or variables. Python works from its own copies; ``os.environ`` is
    cleared first so libc's environ no longer points at the erased strings. Shrinking the argv
    range to ``name`` needs CAP_SYS_RESOURCE; without it the rest reads as NUL bytes."""
    os.environ.clear()
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rfind(b")") + 2:].split()
    # Fields 48-51 of stat(5) (arg_start, arg_end, env_start, env_end), counted after "comm".
    arg_start, arg_end, env_start, env_end = (int(v) for v in fields[45:49])
    ctypes.memset(env_start, 0, env_end - env_start)
    ctypes.memset(arg_start, 0, arg_end - arg_start)
    text = name.encode()[: max(0, arg_end - arg_start - 1)] + b"\0"
    ctypes.memmove(arg_start, text, len(text))
    try:
        prctl(PR_SET_MM, PR_SET_MM_ARG_END, arg_start + len(text))
    except OSError:
        pass  # EPERM without CAP_SYS_RESOURCE: the erased bytes are already what it would hide
