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
_libc = ctypes.CDLL(None, use_errno=True)


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """Open ``path`` under ``dirfd`` with the ``RESOLVE_*`` rules (always O_CLOEXEC); the fd.

    Raises OSError with errno set (EXDEV or ELOOP when a rule refused the path)."""
    number = _NUMBERS.get(platform.machine())
    if number is None:
        raise OSError(38, f"openat2: unsupported machine {platform.machine()}", path)
    how = ctypes.create_string_buffer(struct.pack("QQQ", flags | os.O_CLOEXEC, mode, resolve), 24)
    res = _libc.syscall(ctypes.c_long(number), ctypes.c_int(dirfd), path.encode(), how, ctypes.c_size_t(24))
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(res)
