"""Bounds for reading untrusted tar archives (image layers, `ADD` archives, `hoist load`).

``Limits`` are the unpack bounds, each from the environment (``HOIST_UNPACK_*``);
``bounded_tarinfo`` is the TarInfo class that checks tarfile's extended headers (PAX, GNU long
names, sparse maps) against ``MAX_HEADER`` before they are read whole into memory. The runtime's
unpacker and the builder's ADD extraction both read with these, so a hostile tar meets one set of
bounds whichever way it comes in.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tarfile

# Go's archive/tar maxSpecialFileSize: PAX headers, GNU long names, sparse maps.
MAX_HEADER = 1 << 20
MAX_HEADER_CHAIN = 32
GiB = 1 << 30


def _env_int(name: str, default: int | None) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default


def _env_limit(name: str, default: int) -> int:
    value = _env_int(name, default)
    return default if value is None else value


@dataclass(frozen=True)
class Limits:
    """Guards against hostile layers; the environment can lower or raise each one."""

    max_entries: int = field(default_factory=lambda: _env_limit("HOIST_UNPACK_MAX_ENTRIES", 1_000_000))
    max_bytes: int = field(default_factory=lambda: _env_limit("HOIST_UNPACK_MAX_BYTES", 16 * GiB))
    max_total_bytes: int = field(default_factory=lambda: _env_limit("HOIST_UNPACK_MAX_TOTAL_BYTES", 64 * GiB))
    # None: 1 GiB or 5% of the filesystem, whichever is smaller.
    min_free_bytes: int | None = field(default_factory=lambda: _env_int("HOIST_UNPACK_MIN_FREE", None))
    max_depth: int = field(default_factory=lambda: _env_limit("HOIST_UNPACK_MAX_DEPTH", 1024))

    def reserve(self, fs: os.statvfs_result) -> int:
        if self.min_free_bytes is not None:
            return self.min_free_bytes
        return min(GiB, fs.f_blocks * fs.f_frsize // 20)



class Budget:
    """Bytes written so far across the layers of one image (``max_total_bytes``)."""

    def __init__(self) -> None:
        self.written = 0


# -- tar headers, bounded before tarfile reads them -----------------------------------------

@functools.cache
def bounded_tarinfo(too_large: type[Exception], corrupt: type[Exception]) -> type:
    """The TarInfo class to read untrusted tars with: every extended header is bounded before
    tarfile reads it, raising ``too_large`` or ``corrupt`` (the caller's error classes). tarfile
    is imported only when a tar is actually read, which keeps `hoist run` of an unpacked image lean."""
    import tarfile

    _nti = tarfile.nti  # type: ignore[attr-defined]  # private number-field parser (Python 3.11)
    special = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
               tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)

    class _BoundedTarInfo(tarfile.TarInfo):
        """tarfile reads a PAX header, a GNU long name and a sparse map whole into memory, and
        recurses once per extended header: each is checked here, before it is read.

        (These hooks are tarfile's private methods; Python is pinned to 3.11, whose code they mirror.)
        """

        def _proc_member(self, tar: tarfile.TarFile):
            if self.type in special:
                if self.size > MAX_HEADER:
                    raise too_large(f"a tar extended header of {self.size} bytes (the limit is {MAX_HEADER})")
                chain = getattr(tar, "_hoist_chain", 0) + 1
                if chain > MAX_HEADER_CHAIN:
                    raise corrupt(f"more than {MAX_HEADER_CHAIN} extended tar headers before one entry")
                if self.type == tarfile.XGLTYPE:
                    seen = getattr(tar, "_hoist_global", 0) + self.size
                    if seen > MAX_HEADER:
                        raise too_large(f"global PAX headers add up to more than {MAX_HEADER} bytes")
                    tar._hoist_global = seen  # type: ignore[attr-defined]
                tar._hoist_chain = chain  # type: ignore[attr-defined]
                try:
                    return super()._proc_member(tar)  # type: ignore[misc]
                finally:
                    tar._hoist_chain = chain - 1  # type: ignore[attr-defined]
            return super()._proc_member(tar)  # type: ignore[misc]

        def _proc_sparse(self, tar: tarfile.TarFile):
            # Old GNU sparse: the map continues in 512-byte extension blocks, as many as it says.
            structs, isextended, origsize = self._sparse_structs  # type: ignore[attr-defined]
            del self._sparse_structs  # type: ignore[attr-defined]
            blocks = 0
            while isextended:
                blocks += 1
                if blocks * tarfile.BLOCKSIZE > MAX_HEADER:
                    raise too_large(f"a GNU sparse map longer than {MAX_HEADER} bytes")
                buf = tar.fileobj.read(tarfile.BLOCKSIZE)
                if len(buf) < tarfile.BLOCKSIZE:
                    raise corrupt("the layer ends inside a GNU sparse map")
                for pos in range(0, 21 * 24, 24):
                    try:
                        offset = _nti(buf[pos:pos + 12])
                        numbytes = _nti(buf[pos + 12:pos + 24])
                    except ValueError:
                        break
                    if offset and numbytes:
                        structs.append((offset, numbytes))
                isextended = bool(buf[504])
            self.sparse = structs
            self.offset_data = tar.fileobj.tell()
            tar.offset = self.offset_data + self._block(self.size)  # type: ignore[attr-defined]
            self.size = origsize
            return self

        def _proc_gnusparse_10(self, next: tarfile.TarInfo, pax_headers: dict[str, str],
                               tar: tarfile.TarFile) -> None:
            # PAX sparse 1.0: the map is a list of decimal numbers at the start of the data.
            buf = tar.fileobj.read(tarfile.BLOCKSIZE)
            read = len(buf)
            numbers: list[int] = []
            wanted = None
            while wanted is None or len(numbers) < wanted:
                if b"\n" not in buf:
                    if read >= MAX_HEADER:
                        raise too_large(f"a PAX sparse map longer than {MAX_HEADER} bytes")
                    more = tar.fileobj.read(tarfile.BLOCKSIZE)
                    if not more:
                        raise corrupt("the layer ends inside a PAX sparse map")
                    buf += more
                    read += len(more)
                    continue
                line, buf = buf.split(b"\n", 1)
                if not line.isdigit() or len(line) > 20:
                    raise corrupt("a PAX sparse map holds something that is not a number")
                if wanted is None:
                    wanted = 2 * int(line)
                    if wanted * 2 > MAX_HEADER:
                        raise too_large(f"a PAX sparse map longer than {MAX_HEADER} bytes")
                else:
                    numbers.append(int(line))
            next.offset_data = tar.fileobj.tell()
            next.sparse = list(zip(numbers[::2], numbers[1::2], strict=False))  # type: ignore[assignment]

    return _BoundedTarInfo
