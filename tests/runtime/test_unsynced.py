"""runtime.unsynced: a build's snapshots are written without a sync, under a marker holding the
boot id; a marker of another boot (a crash before the sync) makes the store drop every snapshot
that came into place after it, and nothing older."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

import pytest

from runtime import unsynced
from runtime.unsynced import UnsyncedWrites, boot_id, recover

FOREIGN = "00000000-0000-4000-8000-000000000000"


def markers(root: Path) -> list[str]:
    folder = root / "snapshots" / ".unsynced"
    return sorted(n for n in os.listdir(folder) if not n.startswith(".")) if folder.is_dir() else []


def snapshot(root: Path, name: str) -> Path:
    path = root / "snapshots" / name
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "f").write_text(name)
    return path


def plant(root: Path, name: str, boot: str) -> Path:
    folder = root / "snapshots" / ".unsynced"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(boot + "\n")
    return folder / name


@pytest.fixture(autouse=True)
def _no_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real slack (2 s) errs towards removing; the tests tell before from after by 50 ms.
    monkeypatch.setattr(unsynced, "_SLACK_NS", 0)
    monkeypatch.setattr(unsynced, "_recovered", set())


def later() -> None:
    time.sleep(0.05)


def test_a_build_holds_a_marker_until_the_sync(tmp_path: Path) -> None:
    writes = UnsyncedWrites(tmp_path)
    writes.open()
    assert markers(tmp_path) == [writes.token]
    assert (tmp_path / "snapshots" / ".unsynced" / writes.token).read_text().strip() == boot_id() != ""
    snapshot(tmp_path, "a" * 64)
    assert writes.close() is None
    assert markers(tmp_path) == []
    assert (tmp_path / "snapshots" / ("a" * 64) / "etc" / "f").read_text() == "a" * 64


def test_the_cli_leaves_the_sync_to_a_detached_process(tmp_path: Path) -> None:
    writes = UnsyncedWrites(tmp_path)
    writes.open()
    assert writes.close(wait=False) is None
    deadline = time.monotonic() + 30
    while markers(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert markers(tmp_path) == []


def test_a_crash_before_the_sync_drops_what_came_after_the_marker(tmp_path: Path) -> None:
    old = snapshot(tmp_path, "1" * 64)
    later()
    plant(tmp_path, "f" * 16, FOREIGN)       # a build of the boot that went down
    later()
    new = snapshot(tmp_path, "2" * 64)
    flat = snapshot(tmp_path, "flat-" + "2" * 64)
    removed = recover(tmp_path / "snapshots")
    assert sorted(removed) == sorted([new, flat])
    assert old.is_dir() and not new.exists() and not flat.exists()
    assert markers(tmp_path) == []
    assert (tmp_path / "snapshots" / ".unsynced").is_dir()


def test_a_snapshot_moved_into_place_after_the_marker_is_dropped(tmp_path: Path) -> None:
    # Adopting an upper dir renames it, which sets its ctime: written before, adopted after.
    upper = tmp_path / "step" / "upper"
    (upper / "x").mkdir(parents=True)
    later()
    plant(tmp_path, "f" * 16, FOREIGN)
    later()
    os.rename(upper, tmp_path / "snapshots" / ("3" * 64))
    assert recover(tmp_path / "snapshots") == [tmp_path / "snapshots" / ("3" * 64)]


def test_this_boots_markers_are_no_crash(tmp_path: Path) -> None:
    plant(tmp_path, "e" * 16, boot_id())     # a build running now, or killed in this boot
    later()
    new = snapshot(tmp_path, "4" * 64)
    assert recover(tmp_path / "snapshots") == []
    assert new.is_dir() and markers(tmp_path) == ["e" * 16]


def test_a_dead_builds_marker_goes_with_the_next_builds_sync(tmp_path: Path) -> None:
    plant(tmp_path, "d" * 16, boot_id())     # its owner's lock file is gone: dead
    writes = UnsyncedWrites(tmp_path)
    writes.open()
    assert markers(tmp_path) == sorted(["d" * 16, writes.token])
    assert writes.close() is None
    assert markers(tmp_path) == []


def test_a_live_builds_marker_stays(tmp_path: Path) -> None:
    other = "c" * 16                          # another build, alive: it holds its owner lock
    owners = tmp_path / "build" / "owners"
    owners.mkdir(parents=True)
    fd = os.open(owners / f"{other}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        plant(tmp_path, other, boot_id())
        writes = UnsyncedWrites(tmp_path)
        writes.open()
        assert writes.close() is None
        assert markers(tmp_path) == [other]
    finally:
        os.close(fd)


def test_a_writeback_error_keeps_the_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime import linux

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "syncfs: Input/output error")

    monkeypatch.setattr(linux, "syncfs", failing)
    writes = UnsyncedWrites(tmp_path)
    writes.open()
    error = writes.close()
    assert error is not None and error.errno == errno.EIO
    assert markers(tmp_path) == [writes.token]


def test_a_runtime_recovers_before_it_uses_the_store(tmp_path: Path) -> None:
    from runtime.lifecycle import Runtime

    plant(tmp_path, "f" * 16, FOREIGN)
    later()
    new = snapshot(tmp_path, "5" * 64)
    Runtime(tmp_path)
    assert not new.exists() and markers(tmp_path) == []


def test_a_marker_a_crash_left_empty_is_another_boots(tmp_path: Path) -> None:
    # Only the marker's name is made durable: after a crash its content may be gone.
    plant(tmp_path, "b" * 16, "").write_text("")
    later()
    new = snapshot(tmp_path, "6" * 64)
    assert recover(tmp_path / "snapshots") == [new]


def test_a_kernel_without_volatile_mounts_without_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before Linux 5.10 overlay refuses the option with EINVAL: the step then mounts as before
    # (and its unmount syncs). Any other failure, or one without the option, is raised.
    from runtime import linux, mounts

    calls: list[str] = []
    refusal = [errno.EINVAL]

    def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
        calls.append(data or "")
        if data and data.endswith(",volatile"):
            raise OSError(refusal[0], "mount: refused")

    monkeypatch.setattr(linux, "mount", mount)
    options = "lowerdir=a,upperdir=/u,workdir=/w"
    mounts.mount_overlay(str(tmp_path), str(tmp_path), options + ",volatile")
    assert calls == [options + ",volatile", options]
    calls.clear()
    refusal[0] = errno.EPERM
    with pytest.raises(OSError):
        mounts.mount_overlay(str(tmp_path), str(tmp_path), options + ",volatile")
    assert calls == [options + ",volatile"]


def test_several_crash_markers_count_from_the_earliest(tmp_path: Path) -> None:
    old = snapshot(tmp_path, "7" * 64)
    later()
    plant(tmp_path, "a" * 16, FOREIGN)
    later()
    between = snapshot(tmp_path, "8" * 64)
    later()
    plant(tmp_path, "9" * 16, FOREIGN)
    assert recover(tmp_path / "snapshots") == [between]
    assert old.is_dir() and markers(tmp_path) == []
