"""Layer unpacking: the tar features images use, and every way a layer could try to escape."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
from pathlib import Path

import pytest

from runtime.errors import EscapeAttempt, LayerCorrupt, LayerTooLarge
from runtime.unpack import OPAQUE_XATTR, Limits, apply_layer
from tests.peers import absent
from tests.runtime.images import EPOCH, Entry, layer_tar


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
