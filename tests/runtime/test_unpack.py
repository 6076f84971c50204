"""Layer unpacking: the tar features images use, and every way a layer could try to escape."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.errors import EscapeAttempt, LayerCorrupt, LayerTooLarge
from runtime.snapshots import remove_tree
from runtime.unpack import Budget, Limits, apply_layer
from storage.tree import OPAQUE_XATTR
from tests.images import EPOCH, Entry, layer_tar
from tests.peers import absent
from tests.runtime import hostile
from tests.runtime.conftest import REPO


def _blob(tmp_path: Path, entries: list[Entry], compression: str = "none") -> Path:
    raw = layer_tar(entries)
    path = tmp_path / f"layer-{hashlib.sha256(raw).hexdigest()[:8]}"
    if compression == "gzip":
        path.write_bytes(gzip.compress(raw))
    elif compression == "zstd":
        import zstandard
        path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    else:
        path.write_bytes(raw)
    return path


@pytest.fixture
def target(tmp_path: Path) -> Path:
    t = tmp_path / "target"
    t.mkdir()
    return t


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the target that no layer may change."""
    o = tmp_path / "outside"
    o.mkdir()
    (o / "keep").write_text("original")
    return o


def _snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    out = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        out[str(p)] = (st.st_mode, p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
    return out


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_files_dirs_links_modes_owners_times(tmp_path: Path, target: Path, compression: str) -> None:
    entries = [
        Entry("usr/", "dir", mode=0o755),
        Entry("usr/bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0),
        Entry("home/u/", "dir", mode=0o700, uid=1000, gid=1000),
        Entry("home/u/file", data=b"x" * 3000, mode=0o640, uid=1000, gid=100),
        Entry("usr/bin/alias", "symlink", link="tool"),
        Entry("usr/bin/hard", "hardlink", link="usr/bin/tool"),
        Entry("run/fifo", "fifo", mode=0o600),
        Entry("etc/cap", data=b"c", pax={"SCHILY.xattr.user.note": "hello"}),
    ]
    stats = apply_layer(_blob(tmp_path, entries, compression), target)
    assert stats.entries == len(entries)
    tool = target / "usr/bin/tool"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o4755
    assert (target / "home/u/file").stat().st_uid == 1000 and (target / "home/u/file").stat().st_gid == 100
    assert stat.S_IMODE((target / "home/u").stat().st_mode) == 0o700
    assert os.readlink(target / "usr/bin/alias") == "tool"
    assert (target / "usr/bin/hard").stat().st_ino == tool.stat().st_ino
    assert stat.S_ISFIFO((target / "run/fifo").lstat().st_mode)
    assert tool.stat().st_mtime == EPOCH and (target / "home/u").stat().st_mtime == EPOCH
    try:
        assert os.getxattr(target / "etc/cap", "user.note") == b"hello"
    except OSError:
        absent("filesystem without user xattrs")


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path, target: Path) -> None:
    entries = [Entry("etc/", "dir", mode=0o755), Entry("etc/.wh.passwd"), Entry("var/", "dir", mode=0o755),
               Entry("var/.wh..wh..opq"), Entry("var/new", data=b"n"),
               Entry("trusted", data=b"t", pax={"SCHILY.xattr.trusted.overlay.opaque": "y"})]
    apply_layer(_blob(tmp_path, entries), target)
    wh = (target / "etc/passwd").lstat()
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(target / "var", OPAQUE_XATTR) == b"y"
    assert (target / "var/new").read_bytes() == b"n"
    with pytest.raises(OSError):
        os.getxattr(target / "trusted", OPAQUE_XATTR)


def test_later_entry_replaces_earlier(tmp_path: Path, target: Path) -> None:
    entries = [Entry("a", "symlink", link="/etc/passwd"), Entry("a", data=b"file now"),
               Entry("d/", "dir"), Entry("d/x", data=b"x"), Entry("d", data=b"not a dir")]
    apply_layer(_blob(tmp_path, entries), target)
    assert (target / "a").read_bytes() == b"file now" and not (target / "a").is_symlink()
    assert (target / "d").read_bytes() == b"not a dir"


def test_diff_id_checked(tmp_path: Path, target: Path) -> None:
    blob = _blob(tmp_path, [Entry("f", data=b"1")], "gzip")
    with pytest.raises(LayerCorrupt, match="expected"):
        apply_layer(blob, target, expected_diff_id="sha256:" + "0" * 64)


def test_garbage_is_corrupt(tmp_path: Path, target: Path) -> None:
    blob = tmp_path / "junk"
    blob.write_bytes(b"\x1f\x8b" + os.urandom(500))
    with pytest.raises(LayerCorrupt):
        apply_layer(blob, target)


# -- escapes: each must fail or land inside, and leave `outside` untouched ----------------------

def _escape(tmp_path: Path, target: Path, outside: Path, entries: list[Entry]) -> Exception | None:
    before = _snapshot(outside)
    error = None
    try:
        apply_layer(_blob(tmp_path, entries), target)
    except (EscapeAttempt, LayerCorrupt) as e:
        error = e
    assert _snapshot(outside) == before
    return error


def test_absolute_path_lands_inside(tmp_path: Path, target: Path, outside: Path) -> None:
    assert _escape(tmp_path, target, outside, [Entry(str(outside / "keep"), data=b"pwned")]) is None
    assert (target / str(outside / "keep").lstrip("/")).read_bytes() == b"pwned"


def test_dotdot_refused(tmp_path: Path, target: Path, outside: Path) -> None:
    err = _escape(tmp_path, target, outside, [Entry("../outside/keep", data=b"pwned")])
    assert isinstance(err, EscapeAttempt) and ".." in str(err)
    err = _escape(tmp_path, target, outside, [Entry("a/../../outside/new", data=b"pwned")])
    assert isinstance(err, EscapeAttempt)


def test_file_through_symlink_refused(tmp_path: Path, target: Path, outside: Path) -> None:
    for link in (str(outside), "../outside", "../../" + outside.name):
        err = _escape(tmp_path, target, outside,
                      [Entry("esc", "symlink", link=link), Entry("esc/keep", data=b"pwned"),
                       Entry("esc/new", data=b"pwned")])
        assert isinstance(err, EscapeAttempt) and "symlink" in str(err)


def test_symlink_to_etc_then_file(tmp_path: Path, target: Path) -> None:
    with pytest.raises(EscapeAttempt):
        apply_layer(_blob(tmp_path, [Entry("etc", "symlink", link="/etc"),
                                     Entry("etc/hoist-escape-test", data=b"x")]), target)
    assert not Path("/etc/hoist-escape-test").exists()


def test_hardlink_to_host_file_refused(tmp_path: Path, target: Path, outside: Path) -> None:
    host_file = outside / "keep"
    for link in (str(host_file), "../outside/keep"):
        err = _escape(tmp_path, target, outside, [Entry("stolen", "hardlink", link=link)])
        assert err is not None
        assert not (target / "stolen").exists()
    assert host_file.stat().st_nlink == 1


def test_hardlink_through_symlink_refused(tmp_path: Path, target: Path, outside: Path) -> None:
    err = _escape(tmp_path, target, outside, [Entry("o", "symlink", link=str(outside)),
                                              Entry("stolen", "hardlink", link="o/keep")])
    assert isinstance(err, EscapeAttempt)
    assert (outside / "keep").stat().st_nlink == 1


def test_whiteout_through_symlink_refused(tmp_path: Path, target: Path, outside: Path) -> None:
    err = _escape(tmp_path, target, outside, [Entry("o", "symlink", link=str(outside)), Entry("o/.wh.keep")])
    assert isinstance(err, EscapeAttempt)


def test_symlink_from_earlier_layer_is_not_followed(tmp_path: Path, target: Path, outside: Path) -> None:
    """Applying a second layer onto a tree that already has the symlink (the copy fallback)."""
    apply_layer(_blob(tmp_path, [Entry("esc", "symlink", link=str(outside))]), target)
    err = _escape(tmp_path, target, outside, [Entry("esc/keep", data=b"pwned")])
    assert isinstance(err, EscapeAttempt)


def test_tar_bomb_entries(tmp_path: Path, target: Path) -> None:
    entries = [Entry(f"f{i}", data=b"") for i in range(200)]
    with pytest.raises(LayerTooLarge, match="more than 100 entries"):
        apply_layer(_blob(tmp_path, entries, "gzip"), target, limits=Limits(max_entries=100))


def test_tar_bomb_bytes(tmp_path: Path, target: Path) -> None:
    blob = _blob(tmp_path, [Entry("zeros", data=b"\0" * (4 << 20))], "gzip")
    assert blob.stat().st_size < 64 << 10
    with pytest.raises(LayerTooLarge, match="bytes"):
        apply_layer(blob, target, limits=Limits(max_bytes=1 << 20))


def test_limits_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOIST_UNPACK_MAX_ENTRIES", "7")
    assert Limits().max_entries == 7


# -- hostile layers must not exhaust the host ---------------------------------------------------

def _raw(tmp_path: Path, data: bytes, name: str = "raw.tar") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("fmt", hostile.SPARSE_FORMATS)
def test_sparse_entry_is_unpacked_with_its_holes(tmp_path: Path, target: Path, fmt: str) -> None:
    regions = [(4096, b"head"), (3 << 20, b"tail!")]
    size = (3 << 20) + 8192
    blob = _raw(tmp_path, hostile.sparse_entry(fmt, "sparse.img", size, regions) + hostile.end())
    stats = apply_layer(blob, target)
    data = (target / "sparse.img").read_bytes()
    assert len(data) == size and stats.bytes == size
    assert data[4096:4100] == b"head" and data[3 << 20:(3 << 20) + 5] == b"tail!"
    assert data.count(0) == size - 9
    # Holes stay holes: far fewer blocks than the file's length.
    assert (target / "sparse.img").stat().st_blocks * 512 < 1 << 20


@pytest.mark.parametrize("fmt", hostile.SPARSE_FORMATS)
def test_sparse_entry_counts_its_expanded_size(tmp_path: Path, target: Path, fmt: str) -> None:
    """A 10 KiB layer that expands to 2 GiB under an 8 MiB limit (it used to write 2 GiB)."""
    blob = _raw(tmp_path, hostile.sparse_entry(fmt, "bomb", 2 << 30, [((2 << 30) - 1, b"x")]) + hostile.end())
    assert blob.stat().st_size < 10 << 10
    with pytest.raises(LayerTooLarge, match="writes more than 8388608 bytes"):
        apply_layer(blob, target, limits=Limits(max_bytes=8 << 20))
    assert not (target / "bomb").exists()


def test_sparse_map_outside_the_file_is_corrupt(tmp_path: Path, target: Path) -> None:
    blob = _raw(tmp_path, hostile.sparse_entry("pax0.1", "f", 100, [(4096, b"x")]) + hostile.end())
    with pytest.raises(LayerCorrupt, match="invalid sparse map"):
        apply_layer(blob, target)


def _child_unpack(tmp_path: Path, blob: Path) -> tuple[str, int]:
    """Unpack in a fresh interpreter; its error line and peak RSS (KiB)."""
    code = ("import sys\n"
            "from runtime.unpack import apply_layer\n"
            "try:\n"
            "    apply_layer(sys.argv[1], sys.argv[2])\n"
            "    print('ok')\n"
            "except Exception as e:\n"
            "    print(type(e).__name__, str(e)[:200])\n"
            # VmHWM is this process's own peak (a fresh mm since exec); ru_maxrss would start
            # at pytest's size, which it inherits across fork and exec.
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')))\n")
    target = tmp_path / "child-target"
    target.mkdir()
    res = subprocess.run([sys.executable, "-c", code, str(blob), str(target)], capture_output=True,
                         text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    return lines[0], int(lines[1])


def _zeros_gzip(tmp_path: Path, head: bytes, zeros: int) -> Path:
    path = tmp_path / "huge.tar.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(head)
        block = bytes(1 << 20)
        for _ in range(zeros >> 20):
            f.write(block)
    return path


@pytest.mark.parametrize("kind", [b"x", b"g", b"L", b"K"])
def test_huge_extended_header_is_refused_before_it_is_read(tmp_path: Path, kind: bytes) -> None:
    """Go caps PAX headers and GNU long names at 1 MiB; tarfile read them whole (a 1 GiB PAX
    header, 1 MB compressed, took 3.1 GiB of RSS)."""
    size = 256 << 20
    blob = _zeros_gzip(tmp_path, hostile.header("././@LongLink" if kind in b"LK" else "hdr", size, kind,
                                                gnu=kind in b"LK"), size)
    assert blob.stat().st_size < 2 << 20
    line, rss_kib = _child_unpack(tmp_path, blob)
    print(f"unpack of a {size >> 20} MiB {kind.decode()} header: {line!r}, peak RSS {rss_kib >> 10} MiB")
    assert line.startswith("LayerTooLarge") and "extended header" in line
    assert rss_kib < 128 << 10


def test_header_under_the_cap_is_read(tmp_path: Path, target: Path) -> None:
    records = hostile.pax_records([("comment", "v" * (900 << 10))])
    data = hostile.header("PaxHeader", len(records), b"x") + hostile.pad(records)
    data += hostile.header("f", 1) + hostile.pad(b"1") + hostile.end()
    apply_layer(_raw(tmp_path, data), target)
    assert (target / "f").read_bytes() == b"1"


def test_chain_of_extended_headers_is_refused_without_recursing(tmp_path: Path, target: Path) -> None:
    data = b"".join(hostile.pax([("comment", str(i))]) for i in range(5000))
    data += hostile.header("f", 0) + hostile.end()
    with pytest.raises(LayerCorrupt, match="more than 32 extended tar headers"):
        apply_layer(_raw(tmp_path, data), target)


def test_global_headers_are_bounded_in_total(tmp_path: Path, target: Path) -> None:
    one = hostile.pax_records([("comment", "c" * (512 << 10))])
    data = b"".join(hostile.header("g", len(one), b"g") + hostile.pad(one) + hostile.header(f"f{i}", 0)
                    for i in range(3))
    with pytest.raises(LayerTooLarge, match="global PAX headers"):
        apply_layer(_raw(tmp_path, data + hostile.end()), target)


def test_gzip_bomb_stops_at_the_layer_limit(tmp_path: Path, target: Path) -> None:
    blob = _zeros_gzip(tmp_path, hostile.header("zeros", 64 << 20), 64 << 20)
    assert blob.stat().st_size < 1 << 20
    with pytest.raises(LayerTooLarge, match="HOIST_UNPACK_MAX_BYTES"):
        apply_layer(blob, target, limits=Limits(max_bytes=8 << 20))
    assert not (target / "zeros").exists()


def test_image_total_is_shared_across_layers(tmp_path: Path, target: Path) -> None:
    budget = Budget()
    limits = Limits(max_total_bytes=10 << 20)
    apply_layer(_blob(tmp_path, [Entry("a", data=b"a" * (6 << 20))], "gzip"), target, limits=limits, budget=budget)
    second = tmp_path / "second"
    second.mkdir()
    with pytest.raises(LayerTooLarge, match="image writes more than 10485760 bytes"):
        apply_layer(_blob(tmp_path, [Entry("b", data=b"b" * (6 << 20))], "gzip"), second, limits=limits,
                    budget=budget)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        absent("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_unpack_stops_before_the_disk_fills(tmp_path: Path, small_fs: Path) -> None:
    target = small_fs / "target"
    target.mkdir()
    blob = _blob(tmp_path, [Entry("small", data=b"s" * (4 << 20)), Entry("big", data=b"\0" * (40 << 20))], "gzip")
    with pytest.raises(LayerTooLarge, match="would leave less than 16777216 bytes free"):
        apply_layer(blob, target, limits=Limits(min_free_bytes=16 << 20))
    st = os.statvfs(small_fs)
    assert st.f_bavail * st.f_frsize >= 16 << 20
    assert (target / "small").stat().st_size == 4 << 20 and not (target / "big").exists()


def test_default_reserve_is_the_smaller_of_1gib_and_5_percent(small_fs: Path) -> None:
    assert Limits(min_free_bytes=None).reserve(os.statvfs(small_fs)) == (48 << 20) // 20
    assert Limits(min_free_bytes=None).reserve(os.statvfs("/")) <= 1 << 30


def _deep_layer(tmp_path: Path, depth: int) -> Path:
    entries = [Entry("d/" * i, "dir", mode=0o755) for i in range(1, depth + 1)]
    entries.append(Entry("d/" * depth + "leaf", data=b"deep"))
    return _blob(tmp_path, entries, "gzip")


def test_deep_path_is_refused_with_a_clear_message(tmp_path: Path, target: Path) -> None:
    with pytest.raises(LayerTooLarge, match="1025 levels deep; the limit is 1024") as err:
        apply_layer(_deep_layer(tmp_path, 3000), target)
    assert "recursion" not in str(err.value)
    remove_tree(target)  # pytest's own clean-up of tmp_path recurses


def test_deep_path_under_the_limit_unpacks(tmp_path: Path, target: Path) -> None:
    apply_layer(_deep_layer(tmp_path, 1020), target)
    fd = os.open(target, os.O_RDONLY)
    for _ in range(1020):
        fd2 = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = fd2
    try:
        with open(os.open("leaf", os.O_RDONLY, dir_fd=fd), "rb") as f:
            assert f.read() == b"deep"
    finally:
        os.close(fd)
    remove_tree(target)
    assert not target.exists()
