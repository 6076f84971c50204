"""builder/layers.py: deterministic layer blobs, read back by hoist's unpacker, tarfile, umoci,
skopeo and a real overlay mount. Nothing here is mocked; trees are made on disk as root."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import random
import resource
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard

from builder.errors import LayerError, LayerInputInvalid, LayerOutputError, LayerSourceError
from builder.layers import FileEntry, LayerBlob, layer_from_files, layer_from_upper
from runtime.unpack import apply_layer
from storage import mediatypes as mt
from storage.digest import Digest
from tests.peers import absent, need_tool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="device nodes, chown and trusted.* xattrs need root")

OLD, NEW, EPOCH = 1_600_000_000, 1_900_000_000, 1_700_000_000
BIG = random.Random(7).randbytes(3 * (1 << 20) + 123)     # crosses the 1 MiB block boundaries
LONG = "ünïcödé-" + "l" * 120                                # non-ASCII and over ustar's 100 bytes


@dataclass(frozen=True)
class Node:
    path: str
    kind: str                   # dir file symlink hardlink fifo chr blk whiteout opaque
    mode: int = 0o644
    data: bytes = b""
    target: str = ""
    uid: int = 0
    gid: int = 0
    mtime: int = OLD
    rdev: tuple[int, int] = (0, 0)
    xattrs: dict[str, bytes] = field(default_factory=dict)


SPEC = [
    Node("big", "file", 0o644, BIG, mtime=NEW),
    Node("bin", "dir", 0o755),
    Node("bin/tool", "file", 0o4755, b"#!/bin/sh\necho hi\n"),
    Node("dev", "dir", 0o755),
    Node("dev/blk", "blk", 0o660, rdev=(7, 0)),
    Node("dev/null", "chr", 0o666, rdev=(1, 3)),
    Node("dev/pipe", "fifo", 0o600),
    Node("etc", "dir", 0o755, xattrs={"user.dir": b"d"}, mtime=NEW),
    # Created second, but sorts first: the layer stores the data under a-link.
    Node("etc/a-link", "hardlink", target="etc/passwd"),
    Node("etc/passwd", "file", 0o644, b"root:x:0:0\n",
         xattrs={"user.bin": b"\x00\xffvalue", "trusted.overlay.origin": b"overlay-internal"}),
    Node("etc/resolv.conf", "symlink", target="../run/resolv.conf"),
    Node("gone", "whiteout", 0),
    Node("home", "dir", 0o755),
    Node("home/user", "dir", 0o2750, uid=1000, gid=1000),
    Node(f"home/user/{LONG}", "file", 0o600, b"long name", uid=1000, gid=1000),
    Node("home/user/.profile", "file", 0o600, b"PS1=x\n", uid=1000, gid=1000, mtime=NEW),
    Node("opaque", "opaque", 0o755),
    Node("opaque/only", "file", 0o644, b"only this"),
    Node("sort", "dir", 0o755),
    Node("sort/a", "dir", 0o755),
    Node("sort/a/x", "file", 0o644, b"x"),
    Node("sort/a-b", "file", 0o644, b"a-b"),
    Node("tmp", "dir", 0o1777),
]

# (name, type, mode, uid, gid, linkname): what tarfile must see, in this order.
EXPECTED_ENTRIES = [
    ("big", tarfile.REGTYPE, 0o644, 0, 0, ""),
    ("bin", tarfile.DIRTYPE, 0o755, 0, 0, ""),
    ("bin/tool", tarfile.REGTYPE, 0o4755, 0, 0, ""),
    ("dev", tarfile.DIRTYPE, 0o755, 0, 0, ""),
    ("dev/blk", tarfile.BLKTYPE, 0o660, 0, 0, ""),
    ("dev/null", tarfile.CHRTYPE, 0o666, 0, 0, ""),
    ("dev/pipe", tarfile.FIFOTYPE, 0o600, 0, 0, ""),
    ("etc", tarfile.DIRTYPE, 0o755, 0, 0, ""),
    ("etc/a-link", tarfile.REGTYPE, 0o644, 0, 0, ""),
    ("etc/passwd", tarfile.LNKTYPE, 0o644, 0, 0, "etc/a-link"),
    ("etc/resolv.conf", tarfile.SYMTYPE, 0o777, 0, 0, "../run/resolv.conf"),
    (".wh.gone", tarfile.REGTYPE, 0, 0, 0, ""),
    ("home", tarfile.DIRTYPE, 0o755, 0, 0, ""),
    ("home/user", tarfile.DIRTYPE, 0o2750, 1000, 1000, ""),
    ("home/user/.profile", tarfile.REGTYPE, 0o600, 1000, 1000, ""),
    (f"home/user/{LONG}", tarfile.REGTYPE, 0o600, 1000, 1000, ""),
    ("opaque", tarfile.DIRTYPE, 0o755, 0, 0, ""),
    ("opaque/.wh..wh..opq", tarfile.REGTYPE, 0, 0, 0, ""),
    ("opaque/only", tarfile.REGTYPE, 0o644, 0, 0, ""),
    ("sort", tarfile.DIRTYPE, 0o755, 0, 0, ""),
    ("sort/a", tarfile.DIRTYPE, 0o755, 0, 0, ""),
    ("sort/a/x", tarfile.REGTYPE, 0o644, 0, 0, ""),
    ("sort/a-b", tarfile.REGTYPE, 0o644, 0, 0, ""),
    ("tmp", tarfile.DIRTYPE, 0o1777, 0, 0, ""),
]


# -- making trees ------------------------------------------------------------------------------

def user_xattrs_supported(where: Path) -> bool:
    probe = where / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


def make_tree(root: Path, spec: list[Node], reverse: bool = False, umask: int = 0o022,
              atime: int = 1_000_000_000) -> Path:
    """Build ``spec`` under ``root``: directories first, then the other nodes in ``spec`` order
    (or reversed), then hardlinks, then metadata deepest first (chown before chmod, which would
    clear setuid otherwise; directory times last)."""
    old_umask = os.umask(umask)
    try:
        root.mkdir(parents=True)
        order = list(reversed(spec)) if reverse else list(spec)
        dirs = [n for n in order if n.kind in ("dir", "opaque")]
        for node in sorted(dirs, key=lambda n: n.path.count("/")):
            (root / node.path).mkdir()
        for node in order:
            _create(root, node)
        for node in order:
            if node.kind == "hardlink":
                os.link(root / node.target, root / node.path)
        for node in sorted(spec, key=lambda n: (n.kind in ("dir", "opaque"), -n.path.count("/"))):
            _set_metadata(root / node.path, node, atime)
    finally:
        os.umask(old_umask)
    return root


def _create(root: Path, node: Node) -> None:
    path = root / node.path
    if node.kind == "file":
        path.write_bytes(node.data)
    elif node.kind == "symlink":
        os.symlink(node.target, path)
    elif node.kind == "fifo":
        os.mkfifo(path)
    elif node.kind in ("chr", "blk"):
        kind = stat.S_IFCHR if node.kind == "chr" else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(*node.rdev))
    elif node.kind == "whiteout":
        os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))


def _set_metadata(path: Path, node: Node, atime: int) -> None:
    if node.kind == "hardlink":
        return
    os.chown(path, node.uid, node.gid, follow_symlinks=False)
    if node.kind != "symlink":
        os.chmod(path, node.mode)
    for key, value in node.xattrs.items():
        os.setxattr(path, key, value)
    if node.kind == "opaque":
        os.setxattr(path, "trusted.overlay.opaque", b"y")
    os.utime(path, (atime, node.mtime), follow_symlinks=False)


def describe(root: Path, skip_markers: bool = False) -> dict[str, tuple]:
    """Everything a layer should carry about each node under ``root``."""
    nodes: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            nodes[str(path.relative_to(root))] = os.lstat(path)
    first_name: dict[int, str] = {}
    out: dict[str, tuple] = {}
    for rel in sorted(nodes, key=lambda p: p.split("/")):
        st, path = nodes[rel], root / rel
        whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        if whiteout and skip_markers:
            continue
        link_group = first_name.setdefault(st.st_ino, rel) if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode) else rel
        out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                    None if whiteout else st.st_mtime_ns // 10**9, _content(path, st), link_group,
                    _kept_xattrs(path, skip_markers))
    return out


def _content(path: Path, st: os.stat_result) -> object:
    if stat.S_ISREG(st.st_mode):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(path)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return (os.major(st.st_rdev), os.minor(st.st_rdev))
    return None


def _kept_xattrs(path: Path, skip_markers: bool) -> dict[str, bytes]:
    kept = ("user.",) if skip_markers else ("user.", "trusted.overlay.opaque")
    return {k: os.getxattr(path, k, follow_symlinks=False)
            for k in os.listxattr(path, follow_symlinks=False) if k.startswith(kept)}


def entries(blob: LayerBlob) -> list[tarfile.TarInfo]:
    with tarfile.open(blob.path) as tar:
        return tar.getmembers()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if not user_xattrs_supported(tmp_path):
        pytest.skip("this filesystem has no user.* xattrs")
    return make_tree(tmp_path / "upper", SPEC)


# -- determinism -------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_same_tree_gives_identical_blobs(tmp_path: Path, tree: Path, compression: str) -> None:
    # Another creation order, umask, atime and (by being made later) ctime and inode numbers.
    again = make_tree(tmp_path / "again", SPEC, reverse=True, umask=0o077, atime=1_234_567_890)
    first = layer_from_upper(tree, tmp_path / "out1", compression)
    second = layer_from_upper(again, tmp_path / "out2", compression)
    assert (first.digest, first.diff_id, first.size) == (second.digest, second.diff_id, second.size)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.path == tmp_path / "out1" / first.digest.hex
    assert sorted(os.listdir(tmp_path / "out1")) == [first.digest.hex]     # no temporary left


def test_same_files_give_identical_blobs_whatever_the_entry_order(tmp_path: Path) -> None:
    files = [FileEntry("app/bin/run", b"#!/bin/sh\n", 0o755, 0, 0, OLD),
             FileEntry("app/data", BIG, 0o644, 1000, 1000, NEW),
             FileEntry("app/link", mode=stat.S_IFLNK | 0o777, link="data")]
    first = layer_from_files(files, tmp_path / "a", "zstd")
    second = layer_from_files(list(reversed(files)), tmp_path / "b", "zstd")
    assert first.path.read_bytes() == second.path.read_bytes()


def test_source_date_epoch_clamps_newer_mtimes(tmp_path: Path, tree: Path) -> None:
    clamped = layer_from_upper(tree, tmp_path / "out", source_date_epoch=EPOCH)
    mtimes = {m.name: m.mtime for m in entries(clamped)}
    assert mtimes["big"] == EPOCH and mtimes["etc"] == EPOCH and mtimes["home/user/.profile"] == EPOCH
    assert mtimes["bin/tool"] == OLD and mtimes["etc/passwd"] == OLD
    assert mtimes[".wh.gone"] == 0 and mtimes["opaque/.wh..wh..opq"] == 0
    unclamped = layer_from_upper(tree, tmp_path / "out")
    assert {m.name: m.mtime for m in entries(unclamped)}["big"] == NEW
    assert unclamped.diff_id != clamped.diff_id


def test_compressed_bytes_and_identities(tmp_path: Path, tree: Path) -> None:
    gz = layer_from_upper(tree, tmp_path / "gz", "gzip")
    zst = layer_from_upper(tree, tmp_path / "zst", "zstd")
    raw = layer_from_upper(tree, tmp_path / "raw", "none")
    tar_bytes = raw.path.read_bytes()
    assert raw.digest == raw.diff_id == Digest.of(tar_bytes) and raw.size == len(tar_bytes)
    assert gz.diff_id == zst.diff_id == raw.diff_id
    gz_bytes = gz.path.read_bytes()
    # No name, mtime 0, no extra flags, OS "unknown"; Python checks the CRC and length trailer.
    assert gz_bytes[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    assert gzip.decompress(gz_bytes) == tar_bytes and gz.digest == Digest.of(gz_bytes)
    zst_bytes = zst.path.read_bytes()
    assert zstandard.ZstdDecompressor().decompressobj().decompress(zst_bytes) == tar_bytes
    assert zst.digest == Digest.of(zst_bytes) and zst.size == len(zst_bytes)
    assert (gz.media_type, zst.media_type, raw.media_type) == (mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD, mt.OCI_LAYER)


def test_a_gzip_layer_of_many_blocks_is_one_valid_stream_and_the_same_each_time(tmp_path: Path) -> None:
    # Past one 1 MiB block the deflate is made block by block on threads (builder.layers._Gzip):
    # the stream must read back with Python's gzip and GNU gzip, and be the same bytes each time
    # whatever the threads' timing, and about as small as one stream (each block is primed with
    # the 32 KiB before it).
    rng = random.Random(5)
    words = [rng.randbytes(rng.randrange(3, 12)) for _ in range(2000)]
    upper = tmp_path / "upper"
    upper.mkdir()
    for i in range(6):                      # ~5 MiB of text-like data across block boundaries
        (upper / f"f{i}").write_bytes(b" ".join(rng.choice(words) for _ in range(90_000)))
    blobs = [layer_from_upper(upper, tmp_path / f"out{n}", "gzip") for n in range(3)]
    raw = layer_from_upper(upper, tmp_path / "raw", "none").path.read_bytes()
    data = blobs[0].path.read_bytes()
    assert len({b.digest for b in blobs}) == 1 and len(raw) > 4 << 20
    assert gzip.decompress(data) == raw
    assert subprocess.run(["gzip", "-dc"], input=data, capture_output=True, check=True).stdout == raw
    from isal import isal_zlib

    one_stream = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)      # the same level, one stream
    assert len(data) < 1.02 * len(one_stream.compress(raw) + one_stream.flush())


def test_each_gzip_block_is_primed_with_the_data_before_it(tmp_path: Path) -> None:
    # A 16 KiB random pattern repeated over 5 MiB: one stream stores the pattern once; blocks
    # deflated without the 32 KiB before them would store it again in each of the five.
    from isal import isal_zlib

    pattern = random.Random(9).randbytes(16 << 10)
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "f").write_bytes(pattern * 320)
    raw = layer_from_upper(upper, tmp_path / "raw", "none").path.read_bytes()
    # Level 3: ISA-L's level 1 finds few of these matches even in one stream.
    data = layer_from_upper(upper, tmp_path / "gz", "gzip", level=3).path.read_bytes()
    assert gzip.decompress(data) == raw
    one_stream = isal_zlib.compressobj(3, isal_zlib.DEFLATED, -15)
    assert len(data) < 1.5 * len(one_stream.compress(raw) + one_stream.flush())


def test_tar_headers_carry_only_deterministic_fields(tmp_path: Path, tree: Path) -> None:
    blob = layer_from_upper(tree, tmp_path / "out", "none")
    for member in entries(blob):
        assert member.uname == member.gname == ""
        assert not {"atime", "ctime", "mtime", "uname", "gname"} & set(member.pax_headers)
    headers = {m.name: m.pax_headers for m in entries(blob)}
    # A value that is not UTF-8 is stored as raw bytes, which the PAX header declares.
    assert headers["etc/a-link"] == {"hdrcharset": "BINARY", "SCHILY.xattr.user.bin": "\x00\udcffvalue"}
    assert headers["etc"] == {"SCHILY.xattr.user.dir": "d"}
    assert not any("trusted.overlay" in key for h in headers.values() for key in h)


# -- content ---------------------------------------------------------------------------------

def test_tarfile_sees_the_expected_entries(tmp_path: Path, tree: Path) -> None:
    blob = layer_from_upper(tree, tmp_path / "out")
    seen = [(m.name, m.type, m.mode, m.uid, m.gid, m.linkname) for m in entries(blob)]
    assert seen == EXPECTED_ENTRIES
    members = {m.name: m for m in entries(blob)}
    assert members["big"].size == len(BIG) and members["etc/passwd"].size == 0
    assert (members["dev/null"].devmajor, members["dev/null"].devminor) == (1, 3)


def test_hoist_unpack_reproduces_the_tree(tmp_path: Path, tree: Path) -> None:
    for compression in ("gzip", "zstd", "none"):
        blob = layer_from_upper(tree, tmp_path / f"out-{compression}", compression)
        target = tmp_path / f"unpacked-{compression}"
        target.mkdir()
        stats = apply_layer(blob.path, target, expected_diff_id=str(blob.diff_id))
        assert stats.skipped_devices == 0
        assert describe(target) == describe(tree)


def test_files_layer_matches_the_same_tree_from_an_upper_dir(tmp_path: Path) -> None:
    spec = [Node("app", "dir", 0o755, mtime=0), Node("app/bin", "dir", 0o755, mtime=0),
            Node("app/bin/run", "file", 0o755, b"#!/bin/sh\n"), Node("app/data", "file", 0o640, BIG, uid=7, gid=8),
            Node("app/link", "symlink", target="data"),
            # Small files take _UpperWriter's direct header; these sizes hit each padding case.
            Node("app/p0", "file", 0o600, b"", uid=70000, gid=3), Node("app/p512", "file", 0o4711, b"b" * 512),
            Node("app/p513", "file", 0o644, b"c" * 513)]
    upper = make_tree(tmp_path / "upper", spec)
    (tmp_path / "context").mkdir()
    (tmp_path / "context" / "data").write_bytes(BIG)
    files: list[FileEntry | tuple] = [
        ("app/bin/run", b"#!/bin/sh\n", 0o755, 0, 0, OLD),
        ("/app/data", str(tmp_path / "context" / "data"), 0o640, 7, 8, OLD),
        FileEntry("app/link", mode=stat.S_IFLNK | 0o777, mtime=OLD, link="data"),
        ("app/p0", b"", 0o600, 70000, 3, OLD), ("app/p512", b"b" * 512, 0o4711, 0, 0, OLD),
        ("app/p513", b"c" * 513, 0o644, 0, 0, OLD),
    ]
    from_files = layer_from_files(files, tmp_path / "out1", "none")
    from_upper = layer_from_upper(upper, tmp_path / "out2", "none")
    assert from_files.diff_id == from_upper.diff_id
    target = tmp_path / "unpacked"
    target.mkdir()
    apply_layer(from_files.path, target, str(from_files.diff_id))
    assert describe(target) == describe(upper)


def test_many_directories_fit_in_a_small_descriptor_limit(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    for i in range(400):
        (upper / f"d{i:03d}").mkdir(parents=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        blob = layer_from_upper(upper, tmp_path / "out", "none")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(entries(blob)) == 400


# -- a real overlay mount ----------------------------------------------------------------------

@contextlib.contextmanager
def overlay(base: Path) -> Iterator[tuple[Path, Path]]:
    """An overlay mount of ``base/lower`` with a fresh upper dir; yields (merged, upper) and
    always unmounts."""
    for name in ("upper", "work", "merged"):
        (base / name).mkdir()
    mount, umount = need_tool("mount", "mount"), need_tool("umount", "mount")
    options = f"lowerdir={base / 'lower'},upperdir={base / 'upper'},workdir={base / 'work'}"
    res = subprocess.run([mount, "-t", "overlay", "overlay", "-o", options, str(base / "merged")],
                         capture_output=True, text=True)
    if res.returncode != 0:
        absent(f"cannot mount overlay here: {res.stderr.strip()}")
    try:
        yield base / "merged", base / "upper"
    finally:
        subprocess.run([umount, str(base / "merged")], check=True)


def test_upper_dir_of_a_real_overlay_mount(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "etc" / "old.d").mkdir(parents=True)
    (lower / "etc" / "old.d" / "a.conf").write_text("a")
    (lower / "etc" / "hosts").write_text("lower")
    (lower / "gone").write_text("lower")
    with overlay(tmp_path) as (merged, upper):
        (merged / "gone").unlink()
        subprocess.run(["rm", "-rf", str(merged / "etc" / "old.d")], check=True)
        (merged / "etc" / "old.d").mkdir()
        (merged / "etc" / "old.d" / "b.conf").write_text("b")
        (merged / "etc" / "hosts").write_text("upper")
        (merged / "new").write_text("new")
    blob = layer_from_upper(upper, tmp_path / "out")
    assert [m.name for m in entries(blob)] == [
        "etc", "etc/hosts", "etc/old.d", "etc/old.d/.wh..wh..opq", "etc/old.d/b.conf", ".wh.gone", "new"]
    target = tmp_path / "unpacked"
    target.mkdir()
    apply_layer(blob.path, target, str(blob.diff_id))
    assert os.getxattr(target / "etc" / "old.d", "trusted.overlay.opaque") == b"y"
    assert os.lstat(target / "gone").st_rdev == 0 and stat.S_ISCHR(os.lstat(target / "gone").st_mode)
    assert (target / "etc" / "hosts").read_text() == "upper"


# -- other tools read it -----------------------------------------------------------------------

def write_oci_image(layout: Path, blob: LayerBlob, tag: str) -> None:
    """A one-layer image in the OCI layout whose blobs/sha256 already holds ``blob``."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [str(blob.diff_id)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": str(Digest.of(config)), "size": len(config)},
        "layers": [{"mediaType": blob.media_type, "digest": str(blob.digest), "size": blob.size}],
    }).encode()
    for doc in (config, manifest):
        (layout / "blobs" / "sha256" / Digest.of(doc).hex).write_bytes(doc)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": mt.OCI_MANIFEST, "digest": str(Digest.of(manifest)), "size": len(manifest),
        "annotations": {mt.ANNOTATION_REF_NAME: tag}}]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


@pytest.mark.peer("umoci")
@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_umoci_unpacks_the_layer(tmp_path: Path, tree: Path, compression: str) -> None:
    umoci = need_tool("umoci")
    layout = tmp_path / "layout"
    blob = layer_from_upper(tree, layout / "blobs" / "sha256", compression)
    write_oci_image(layout, blob, "v1")
    bundle = tmp_path / "bundle"
    res = subprocess.run([umoci, "unpack", "--image", f"{layout}:v1", str(bundle)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # On an empty base a whiteout deletes nothing and an opaque marker hides nothing.
    assert describe(bundle / "rootfs", skip_markers=True) == describe(tree, skip_markers=True)


@pytest.mark.peer("skopeo")
def test_skopeo_reads_the_image(tmp_path: Path, tree: Path) -> None:
    skopeo = need_tool("skopeo")
    layout = tmp_path / "layout"
    blob = layer_from_upper(tree, layout / "blobs" / "sha256", "zstd")
    write_oci_image(layout, blob, "v1")
    res = subprocess.run([skopeo, "inspect", f"oci:{layout}:v1"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["Layers"] == [str(blob.digest)]


# -- bad input ---------------------------------------------------------------------------------

def test_missing_upper_dir(tmp_path: Path) -> None:
    with pytest.raises(LayerSourceError, match="upper directory .*missing.*No such file"):
        layer_from_upper(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_upper_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(LayerSourceError, match="Not a directory"):
        layer_from_upper(tmp_path / "file", tmp_path / "out")


@pytest.mark.parametrize("kwargs, message", [
    ({"compression": "lz4"}, "unknown layer compression 'lz4' \\(choose one of gzip, zstd, none\\)"),
    ({"compression": "gzip", "level": 9}, "gzip level 9 is out of range \\(0..3\\)"),
    ({"source_date_epoch": -1}, "SOURCE_DATE_EPOCH must be a non-negative integer"),
    ({"source_date_epoch": "1700000000"}, "SOURCE_DATE_EPOCH must be a non-negative integer"),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    (tmp_path / "upper").mkdir()
    with pytest.raises(LayerInputInvalid, match=message):
        layer_from_upper(tmp_path / "upper", tmp_path / "out", **kwargs)
    with pytest.raises(LayerInputInvalid, match=message):
        layer_from_files([("f", b"x")], tmp_path / "out", **kwargs)


def test_reserved_whiteout_name_in_upper_dir(tmp_path: Path) -> None:
    (tmp_path / "upper" / "d").mkdir(parents=True)
    (tmp_path / "upper" / "d" / ".wh.sneaky").write_text("x")
    with pytest.raises(LayerInputInvalid, match="'d/.wh.sneaky': names starting with '.wh.' are reserved"):
        layer_from_upper(tmp_path / "upper", tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []


def test_unwritable_destination(tmp_path: Path) -> None:
    (tmp_path / "upper").mkdir()
    (tmp_path / "dest").write_text("a file, not a directory")
    with pytest.raises(LayerOutputError, match="cannot write a layer to"):
        layer_from_upper(tmp_path / "upper", tmp_path / "dest")


@pytest.mark.parametrize("files, error, message", [
    ([("../etc/passwd", b"x")], LayerInputInvalid, "contains '..'"),
    ([("/", b"x")], LayerInputInvalid, "names the root"),
    ([("a", b"1"), ("./a", b"2")], LayerInputInvalid, "listed more than once"),
    ([("a", b"1"), ("a/b", b"2")], LayerInputInvalid, "'a/b' is under 'a', which is not a directory"),
    ([("x/.wh.y", b"")], LayerInputInvalid, "reserved for whiteouts"),
    ([("a", b"1", 0o644, -1)], LayerInputInvalid, "uid -1 is not valid"),
    ([("a", b"1", stat.S_IFIFO | 0o644)], LayerInputInvalid, "is not a regular file, directory or symlink"),
    ([FileEntry("l", mode=stat.S_IFLNK | 0o777)], LayerInputInvalid, "a symlink needs a link target"),
    ([("d", b"x", stat.S_IFDIR | 0o755)], LayerInputInvalid, "only a regular file has a source"),
    (["just-a-string"], LayerInputInvalid, "must be a FileEntry"),
])
def test_bad_file_entries(tmp_path: Path, files: list, error: type[LayerError], message: str) -> None:
    with pytest.raises(error, match=message):
        layer_from_files(files, tmp_path / "out")


def test_bad_source_files(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("x")
    os.symlink(tmp_path / "real", tmp_path / "link")
    (tmp_path / "dir").mkdir()
    for source, message in ((tmp_path / "absent", "No such file"), (tmp_path / "link", "symbolic links"),
                            (tmp_path / "dir", "is not a regular file")):
        with pytest.raises(LayerSourceError, match=message) as info:
            layer_from_files([("f", source)], tmp_path / "out")
        assert str(source) in str(info.value)
    assert os.listdir(tmp_path / "out") == []


def test_direct_ustar_headers_match_tarfile_byte_for_byte() -> None:
    """layers._ustar_block builds the common header itself; wherever it does, the block must be
    the one tarfile's PAX writer makes, and it must step aside for everything needing PAX."""
    from builder.layers import _header, _ustar_block

    rng = random.Random(11)
    kinds = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
             tarfile.BLKTYPE, tarfile.FIFOTYPE]
    edges = [0, 1, 8 ** 7 - 1, 8 ** 7, 8 ** 11 - 1, 8 ** 11, 1_700_000_000]
    built = fell_back = 0
    for _ in range(20_000):
        length = rng.choice([1, 7, 99, 100, 101, 140])
        name = "".join(rng.choice("ab/._-é" if rng.random() < 0.05 else "ab/._-") for _ in range(length))
        link = rng.choice(["", "t", "x" * 100, "x" * 101, "ünï"])
        info = _header(name, rng.choice(kinds), rng.randrange(0o200000), rng.choice(edges), rng.choice(edges),
                       rng.choice(edges), size=rng.choice(edges), linkname=link,
                       device=(rng.choice([0, 8, 8 ** 7 - 1]), rng.choice([0, 259])),
                       xattrs={"user.k": b"v"} if rng.random() < 0.05 else None)
        block = _ustar_block(info)
        if block is None:
            fell_back += 1
            continue
        built += 1
        assert block == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), (info.name, info.type)
    assert built > 500 and fell_back > 500
    for needs_pax in (_header("d" * 100, tarfile.DIRTYPE, 0o755, 0, 0, 0),      # 101 with its slash
                      _header(LONG, tarfile.REGTYPE, 0o644, 0, 0, 0),
                      _header("f", tarfile.REGTYPE, 0o644, 8 ** 7, 0, 0),
                      _header("f", tarfile.REGTYPE, 0o644, 0, 0, 0, xattrs={"user.a": b"b"})):
        assert _ustar_block(needs_pax) is None


def test_full_destination_fails_cleanly(tmp_path: Path) -> None:
    """A write that fails in the compressing thread surfaces as LayerOutputError in the caller,
    and the unfinished blob is removed."""
    upper, dest = tmp_path / "upper", tmp_path / "dest"
    upper.mkdir()
    dest.mkdir()
    for i in range(3):
        (upper / f"big{i}").write_bytes(BIG)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(dest)], check=True)
    try:
        for compression in ("none", "gzip"):
            with pytest.raises(LayerOutputError, match="cannot write a layer to"):
                layer_from_upper(upper, dest, compression)
            assert os.listdir(dest) == []
    finally:
        subprocess.run(["umount", str(dest)], check=True)
