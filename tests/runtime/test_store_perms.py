"""The store is not reachable by other host users, and removal works at any depth."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from tests.images import Entry, busybox_image
from tests.runtime.conftest import Hoist, need_root_and_busybox


def _as_nobody_can_open(path: Path) -> bool:
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.open(path, os.O_RDONLY)
            os._exit(0)
        except OSError:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def test_other_users_cannot_reach_the_store() -> None:
    need_root_and_busybox()
    base = Path(tempfile.mkdtemp(prefix="hoist-perms-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        root = base / "root"
        root.mkdir(mode=0o755)
        (root / "images").mkdir(mode=0o755)  # as an older hoist left it
        busybox_image(root / "images", extra=[Entry("bin/suid", data=b"x", mode=0o4755),
                                              Entry("./", "dir", mode=0o777)])
        os.chmod(root / "images", 0o755)
        h = Hoist(root)
        h.ok("images")
        h.ok("run", "--name", "keep", "busybox", "true")
        snap = next(p for p in (root / "snapshots").iterdir() if len(p.name) == 64)
        assert stat.S_IMODE(snap.stat().st_mode) == 0o777  # the container's "/" keeps the image's mode
        for d in (root, root / "images", root / "snapshots", root / "containers"):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
        assert not _as_nobody_can_open(snap / "bin" / "suid")
        assert not _as_nobody_can_open(snap)
        assert not _as_nobody_can_open(next((root / "containers").glob("*/upper")))
        assert _as_nobody_can_open(base)  # the probe itself works
        h.cleanup()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_rm_of_a_container_with_a_1200_deep_directory(hoist: Hoist) -> None:
    hoist.ok("run", "--name", "deep", "busybox", "sh", "-c",
             "i=0; while [ $i -lt 1200 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done", timeout=120)
    res = hoist("rm", "deep")
    assert res.returncode == 0, res.stderr.decode()
    assert b"recursion" not in res.stderr
    assert not [p for p in (hoist.root / "containers").iterdir() if len(p.name) == 64]


def test_run_alone_tightens_an_old_store() -> None:
    """``hoist run`` as the first command on a store an older hoist made 0755."""
    need_root_and_busybox()
    base = Path(tempfile.mkdtemp(prefix="hoist-perms-", dir="/tmp"))
    try:
        root = base / "root"
        busybox_image(root / "images")
        for d in (root, root / "images", root / "images" / "blobs"):
            os.chmod(d, 0o755)
        h = Hoist(root)
        h.ok("run", "--rm", "busybox", "true")
        for d in (root, root / "images", root / "snapshots", root / "containers"):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
        h.cleanup()
    finally:
        shutil.rmtree(base, ignore_errors=True)
