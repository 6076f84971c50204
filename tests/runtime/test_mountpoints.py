"""``runtime.mounts.open_in_root``: mount points are resolved inside the container's root with
chroot semantics and created there; nothing outside the root is looked up or made."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from runtime.mounts import fd_path, open_in_root


def _resolve(root: Path, path: str, is_dir: bool = True) -> str:
    fd = open_in_root(str(root), path, is_dir)
    try:
        return os.readlink(fd_path(fd))
    finally:
        os.close(fd)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "hosts").write_text("x")
    return r


def test_plain_paths_and_creation(root: Path) -> None:
    assert _resolve(root, "/etc") == str(root / "etc")
    assert _resolve(root, "/a/b/c") == str(root / "a/b/c") and (root / "a/b/c").is_dir()
    assert _resolve(root, "/etc/new", is_dir=False) == str(root / "etc/new")
    assert (root / "etc/new").is_file()
    assert _resolve(root, "/") == str(root)


@pytest.mark.parametrize("link", ["/outside-target", "../../../../outside-target",
                                  "../../../../../../../../outside-target"])
def test_symlinks_escaping_the_root_stay_inside(root: Path, tmp_path: Path, link: str) -> None:
    (root / "data").symlink_to(link)
    assert _resolve(root, "/data/x") == str(root / "outside-target/x")
    assert not (tmp_path / "outside-target").exists() and not Path("/outside-target").exists()


def test_dangling_final_symlink_creates_its_target_inside(root: Path) -> None:
    (root / "etc" / "resolv.conf").symlink_to("/run/systemd/resolve/stub-resolv.conf")
    where = _resolve(root, "/etc/resolv.conf", is_dir=False)
    assert where == str(root / "run/systemd/resolve/stub-resolv.conf")
    assert Path(where).is_file()


def test_dotdot_in_the_path_cannot_climb_out(root: Path) -> None:
    assert _resolve(root, "/../../etc") == str(root / "etc")


def test_symlink_loops_and_type_mismatches(root: Path) -> None:
    (root / "loop").symlink_to("loop2")
    (root / "loop2").symlink_to("loop")
    with pytest.raises(OSError) as e:
        _resolve(root, "/loop/x")
    assert e.value.errno == errno.ELOOP
    with pytest.raises(OSError) as e:
        _resolve(root, "/etc/hosts", is_dir=True)
    assert e.value.errno == errno.ENOTDIR
    with pytest.raises(OSError) as e:
        _resolve(root, "/etc", is_dir=False)
    assert e.value.errno == errno.EISDIR


def test_proc_self_links_resolve_inside_the_root(root: Path) -> None:
    (root / "fd").symlink_to("/proc/self/root")
    assert _resolve(root, "/fd/x") == str(root / "proc/self/root/x")
