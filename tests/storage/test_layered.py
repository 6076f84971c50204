"""LayeredTree: a chain of overlay diffs read in place, checked against a real read-only overlay
mount of the same layers (the kernel's lookup is the oracle), and against hostile layers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from storage.layered import LayeredTree
from storage.tree import OPAQUE_XATTR

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and trusted.* xattrs need root")


def _whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))


def _opaque(path: Path) -> None:
    os.setxattr(path, OPAQUE_XATTR, b"y")


def _file(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _chain(tmp_path: Path) -> list[Path]:
    """Three layers (lowest first) with every rule: whiteouts of files and directories, an
    opaque directory, a directory over a file, a file over a directory, a directory merged
    across all three, symlinks and a hard link."""
    l0, l1, l2 = (tmp_path / f"l{i}" for i in range(3))
    for layer in (l0, l1, l2):
        layer.mkdir()
    _file(l0 / "a", "a0")
    _file(l0 / "gone", "g0")
    _file(l0 / "d/old", "old")
    _file(l0 / "d/sub/deep", "deep")
    _file(l0 / "merged/one", "1")
    _file(l0 / "was_file", "f")
    _file(l0 / "was_dir/inner", "i")
    _file(l0 / "rmdir/x", "x")
    os.symlink("/etc", l0 / "lnk")
    _file(l1 / "merged/two", "2")
    _whiteout(l1 / "gone")
    (l1 / "d").mkdir()
    _opaque(l1 / "d")
    _file(l1 / "d/new", "new")
    (l1 / "was_file").mkdir()
    _file(l1 / "was_file/now", "n")
    _file(l1 / "was_dir", "now a file")
    _whiteout(l1 / "rmdir")
    _file(l2 / "merged/three", "3")
    _file(l2 / "a", "a2", 0o600)
    os.link(l2 / "a", l2 / "a_link")
    _whiteout(l2 / "merged/one")
    os.symlink("../d", l2 / "rel")
    return [l0, l1, l2]


def _walk_tree(tree: LayeredTree) -> dict[str, list]:
    out: dict[str, list] = {}
    stack: list[tuple[str, ...]] = [()]
    while stack:
        parts = stack.pop()
        for name, layer, st in tree.scandir(parts):
            path = parts + (name,)
            found = tree.lookup(path)
            assert found is not None and found[0] == layer and found[1].st_ino == st.st_ino
            out["/".join(path)] = _describe(st, lambda p=path: _read(tree, p), lambda p=path: tree.readlink(p))
            if stat.S_ISDIR(st.st_mode):
                stack.append(path)
    return out


def _read(tree: LayeredTree, parts: tuple[str, ...]) -> str:
    fd = tree.open(parts, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode()


def _describe(st: os.stat_result, read, readlink) -> list:  # type: ignore[no-untyped-def]
    kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
    body = read() if kind == "f" else readlink() if kind == "l" else ""
    return [kind, stat.S_IMODE(st.st_mode), body]


_OVERLAY_WALK = r"""
import json, os, stat, subprocess, sys
lowers, target = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=" + lowers, target], check=True)
out = {}
for dirpath, dirs, files in os.walk(target):
    for name in dirs + files:
        full = os.path.join(dirpath, name)
        st = os.lstat(full)
        kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
        body = open(full).read() if kind == "f" else os.readlink(full) if kind == "l" else ""
        out[os.path.relpath(full, target)] = [kind, stat.S_IMODE(st.st_mode), body]
print(json.dumps(out))
"""


def _overlay_view(chain: list[Path], target: Path) -> dict[str, list]:
    """The same chain as the kernel shows it: a read-only overlay in a private mount namespace."""
    target.mkdir()
    lowers = ":".join(str(p) for p in reversed(chain))
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _OVERLAY_WALK,
                          lowers, str(target)], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        pytest.fail(f"cannot mount the oracle overlay: {res.stderr}")
    return json.loads(res.stdout)


def test_merged_view_is_what_overlayfs_shows(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    with LayeredTree(chain) as tree:
        ours = _walk_tree(tree)
    assert ours == _overlay_view(chain, tmp_path / "mnt")
    # The rules, spelled out (the oracle agrees with each):
    assert "gone" not in ours and "rmdir" not in ours and "merged/one" not in ours      # whiteouts
    assert sorted(k for k in ours if k.startswith("d/")) == ["d/new"]                     # opaque
    assert ours["was_file"][0] == "d" and "was_file/now" in ours                          # dir over file
    assert ours["was_dir"] == ["f", 0o644, "now a file"] and "was_dir/inner" not in ours  # file over dir
    assert {k for k in ours if k.startswith("merged/")} == {"merged/two", "merged/three"}
    assert ours["a"] == ["f", 0o600, "a2"]


def test_lookup_reports_the_layer_that_holds_an_entry(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    with LayeredTree(chain) as tree:
        assert tree.lookup(["merged", "two"])[0] == 1          # type: ignore[index]
        assert tree.lookup(["d", "sub", "deep"]) is None       # below an opaque dir
        assert [layer for layer, _ in tree.dir_stack(["merged"])] == [0, 1, 2]
        assert [layer for layer, _ in tree.dir_stack(["d"])] == [1]
        a, link = tree.lookup(["a"]), tree.lookup(["a_link"])
        assert a is not None and link is not None and a[1].st_ino == link[1].st_ino    # a hard link
        assert tree.lookup([]) is not None


def test_symlinks_are_entries_never_followed(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    outside = tmp_path / "outside"
    _file(outside / "secret", "host")
    os.symlink(str(outside), chain[2] / "abs")
    os.symlink("../../../../../../" + str(outside), chain[2] / "climb")
    with LayeredTree(chain) as tree:
        assert stat.S_ISLNK(tree.lstat(["lnk"]).st_mode)        # type: ignore[union-attr]
        assert tree.readlink(["lnk"]) == "/etc"
        for link in ("lnk", "abs", "climb", "rel"):
            # Nothing through a link: the name below it does not exist in the merged view...
            assert tree.lookup([link, "secret"]) is None
            assert tree.lookup([link, "passwd"]) is None
            with pytest.raises(OSError):
                tree.scandir([link])
            # ...and opening the link itself does not follow it.
            with pytest.raises(OSError):
                os.close(tree.open([link], os.O_RDONLY))


def test_dot_dot_and_odd_names_never_leave_a_layer(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    _file(tmp_path / "escaped", "host")
    with LayeredTree(chain) as tree:
        for parts in (["..", "escaped"], [".."], ["d", "..", "..", "escaped"], ["."], ["d/new"], [""]):
            assert tree.lookup(parts) is None
            with pytest.raises(OSError):
                os.close(tree.open_in(0, parts, os.O_RDONLY))
        assert tree.dir_stack([".."]) == []


def test_deep_paths_hold_a_bounded_number_of_descriptors(tmp_path: Path) -> None:
    layers = [tmp_path / "low", tmp_path / "high"]
    deep = "/".join(f"d{i}" for i in range(300))
    for layer in layers:
        (layer / deep).mkdir(parents=True)
    _file(layers[0] / deep / "f", "low")
    before = len(os.listdir("/proc/self/fd"))
    with LayeredTree(layers) as tree:
        found = tree.lookup(deep.split("/") + ["f"])
        assert found is not None and found[0] == 1           # index from the top: "low"
        held = len(os.listdir("/proc/self/fd")) - before
        assert held <= 2 * (LayeredTree.CACHED_DEPTH + 2) + len(layers)
    assert len(os.listdir("/proc/self/fd")) == before
