"""Which compression a blob or archive uses, from its first bytes, and a reader of its content.

Media types are sometimes wrong in the wild, and a ``docker save`` tar does not say how its
layers are compressed, so readers sniff the magic bytes: gzip ``1f 8b``, zstd ``28 b5 2f fd``,
bzip2 ``BZh``, xz ``fd 37 7a 58 5a 00``; anything else is taken as uncompressed.
"""

from __future__ import annotations

from typing import IO, Any, cast

GZIP, ZSTD, BZIP2, XZ, NONE = "gzip", "zstd", "bzip2", "xz", "none"

MAGIC: tuple[tuple[str, bytes], ...] = (
    (GZIP, b"\x1f\x8b"),
    (ZSTD, b"\x28\xb5\x2f\xfd"),
    (BZIP2, b"BZh"),
    (XZ, b"\xfd7zXZ\x00"),
)
HEAD_BYTES = max(len(magic) for _, magic in MAGIC)


def sniff(head: bytes) -> str:
    """"gzip", "zstd", "bzip2", "xz" or "none" for data that starts with ``head``."""
    for kind, magic in MAGIC:
        if head.startswith(magic):
            return kind
    return NONE


def sniff_file(f: IO[bytes]) -> str:
    """Sniff a seekable file from where it stands, leaving it there."""
    pos = f.tell()
    head = f.read(HEAD_BYTES)
    f.seek(pos)
    return sniff(head)


def decompressed(f: IO[bytes], kind: str) -> IO[bytes]:
    """A reader of the uncompressed content of ``f`` compressed as ``kind``; for "none", ``f``
    itself. Closing the reader closes ``f``."""
    reader: Any
    if kind == GZIP:
        try:
            from isal import igzip as gz
        except ImportError:  # pragma: no cover - isal is a dependency; the stdlib is a fallback
            import gzip as gz  # type: ignore[no-redef]
        reader = gz.GzipFile(fileobj=f, mode="rb")
    elif kind == ZSTD:
        import zstandard
        reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True, closefd=True)
    elif kind == BZIP2:
        import bz2
        reader = bz2.BZ2File(f, "rb")
    elif kind == XZ:
        import lzma
        reader = lzma.LZMAFile(f, "rb")
    elif kind == NONE:
        return f
    else:
        raise ValueError(f"unknown compression {kind!r}")
    return cast(IO[bytes], _Closing(reader, f) if kind in (GZIP, BZIP2, XZ) else reader)


class _Closing:
    """A decompressing reader that also closes the file under it (gzip, bz2 and lzma readers
    given a file object leave it open)."""

    def __init__(self, reader: Any, raw: IO[bytes]) -> None:
        self._reader, self._raw = reader, raw

    def read(self, n: int = -1) -> bytes:
        return bytes(self._reader.read(n))

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            self._raw.close()

    def __enter__(self) -> _Closing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
