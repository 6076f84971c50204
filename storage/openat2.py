"""openat2(2), the one path-resolution primitive every package that opens files inside an
untrusted tree uses (the runtime's mount points, the builder's COPY sources and destinations).

``RESOLVE_IN_ROOT`` treats the directory descriptor as ``/`` for every absolute symlink and ``..``;
``RESOLVE_BENEATH`` refuses to leave it at all; ``RESOLVE_NO_SYMLINKS`` / ``RESOLVE_NO_MAGICLINKS``
refuse symlinks or /proc-style magic links anywhere on the path.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_NUMBERS = {"x86_64": 437, "aarch64": 437}
_NUMBER = _NUMBERS.get(platform.machine())
_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall          # this CDLL's own function object: its types are set here only
_syscall.restype = ctypes.c_long
_syscall.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t)
# struct open_how for each (flags, mode, resolve) asked: the kernel only reads it, and a COPY
# opens thousands of files with one set (building the struct each time was a third of a call).
_HOWS: dict[tuple[int, int, int], ctypes.Array[ctypes.c_char]] = {}


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """Open ``path`` under ``dirfd`` with the ``RESOLVE_*`` rules (always O_CLOEXEC); the fd.
    ``path`` is encoded as the file system's names are (``os.fsencode``: a name that is not
    UTF-8 comes back from ``os.listdir`` with surrogates).

    Raises OSError with errno set (EXDEV or ELOOP when a rule refused the path)."""
    if _NUMBER is None:
        raise OSError(38, f"openat2: unsupported machine {platform.machine()}", path)
    key = (flags, mode, resolve)
    how = _HOWS.get(key)
    if how is None:
        how = ctypes.create_string_buffer(struct.pack("QQQ", flags | os.O_CLOEXEC, mode, resolve), 24)
        if len(_HOWS) < 64:
            _HOWS[key] = how
    res = _syscall(_NUMBER, dirfd, os.fsencode(path), how, 24)
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(res)
