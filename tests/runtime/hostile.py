"""Hostile layer tars written byte by byte: what Python's tarfile cannot write (sparse entries
in the four GNU/PAX formats, headers that lie about their size), for the unpacker and `hoist load`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

BLOCK = 512
EPOCH = 1_700_000_000


def header(name: bytes | str, size: int, typeflag: bytes = b"0", *, mode: int = 0o644,
           gnu: bool = False, sparse: Iterable[tuple[int, int]] = (), realsize: int = 0,
           extended: bool = False) -> bytes:
    """One 512-byte ustar (or GNU, for type S) header with a correct checksum."""
    if isinstance(name, str):
        name = name.encode()
    buf = bytearray(BLOCK)
    buf[0:len(name[:100])] = name[:100]
    buf[100:108] = b"%07o\0" % mode
    buf[108:116] = b"%07o\0" % 0
    buf[116:124] = b"%07o\0" % 0
    buf[124:136] = b"%011o\0" % size
    buf[136:148] = b"%011o\0" % EPOCH
    buf[156:157] = typeflag
    buf[257:265] = b"ustar  \0" if gnu else b"ustar\x0000"
    for i, (offset, length) in enumerate(list(sparse)[:4]):
        pos = 386 + 24 * i
        buf[pos:pos + 12] = b"%011o\0" % offset
        buf[pos + 12:pos + 24] = b"%011o\0" % length
    if gnu:
        buf[482] = 1 if extended else 0
        buf[483:495] = b"%011o\0" % realsize
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def pax_records(records: list[tuple[str, str]]) -> bytes:
    out = b""
    for key, value in records:
        body = f" {key}={value}\n".encode()
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n = len(str(n)) + len(body)
        out += str(n).encode() + body
    return out


def pax(records: list[tuple[str, str]], name: str = "PaxHeader") -> bytes:
    data = pax_records(records)
    return header(name, len(data), b"x") + pad(data)


def end() -> bytes:
    return bytes(2 * BLOCK)


def sparse_entry(fmt: str, name: str, realsize: int, regions: list[tuple[int, bytes]]) -> bytes:
    """A sparse regular file in format ``fmt`` ("gnu", "pax0.0", "pax0.1", "pax1.0"): ``regions``
    are (offset, data); everything else is a hole."""
    data = b"".join(d for _, d in regions)
    mapping = [(off, len(d)) for off, d in regions]
    if fmt == "gnu":
        return header(name, len(data), b"S", gnu=True, sparse=mapping, realsize=realsize) + pad(data)
    if fmt == "pax0.0":
        recs = [("GNU.sparse.size", str(realsize)), ("GNU.sparse.numblocks", str(len(mapping)))]
        for off, n in mapping:
            recs += [("GNU.sparse.offset", str(off)), ("GNU.sparse.numbytes", str(n))]
        return pax(recs) + header(name, len(data)) + pad(data)
    if fmt == "pax0.1":
        flat = ",".join(f"{off},{n}" for off, n in mapping)
        recs = [("GNU.sparse.size", str(realsize)), ("GNU.sparse.numblocks", str(len(mapping))),
                ("GNU.sparse.map", flat)]
        return pax(recs) + header(name, len(data)) + pad(data)
    if fmt == "pax1.0":
        sparse_map = pad(("\n".join([str(len(mapping))] + [f"{off}\n{n}" for off, n in mapping]) + "\n").encode())
        recs = [("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.name", name),
                ("GNU.sparse.realsize", str(realsize))]
        body = sparse_map + data
        return pax(recs) + header("GNUSparseFile.0/" + name[-80:], len(body)) + pad(body)
    raise ValueError(fmt)


SPARSE_FORMATS = ("gnu", "pax0.0", "pax0.1", "pax1.0")


def write(path: str | os.PathLike[str], *chunks: bytes) -> None:
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
