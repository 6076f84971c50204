"""A build's snapshots are written without a sync (runtime.unsynced): its RUN steps' overlays
are mounted volatile (a container's are not: it is mounted again at each start), the build's
marker goes once a sync after the build has written them back, and after a crash before that
sync, every snapshot that came into place since is dropped: its steps miss (or unpack again)
and the rebuild is the same image, never a hit on a snapshot cut short."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.cli.helpers import Hoist
from tests.cli.test_build_lazy_layers import BUILD_STEPS, build, ctx, h, lazy  # noqa: F401  (fixtures)

FOREIGN = "00000000-0000-4000-8000-000000000000"


def markers(hoist: Hoist) -> list[str]:
    folder = hoist.root / "snapshots" / ".unsynced"
    return sorted(n for n in os.listdir(folder) if not n.startswith(".")) if folder.is_dir() else []


def settled(hoist: Hoist) -> list[str]:
    """The markers left once the detached syncs have had their time."""
    deadline = time.monotonic() + 30
    while markers(hoist) and time.monotonic() < deadline:
        time.sleep(0.05)
    return markers(hoist)


def root_options(text: str) -> set[str]:
    """The super options of the root mount in a mountinfo."""
    line = next(line for line in text.splitlines() if " / / " in line)
    return set(line.split(" - ", 1)[1].split()[2].split(","))


def volatile(options: set[str]) -> bool:
    return bool(options & {"volatile", "fsync=volatile"})     # the kernel's two spellings


def test_run_steps_mount_volatile_containers_do_not(h: Hoist, tmp_path: Path) -> None:  # noqa: F811
    context = tmp_path / "mnt"
    context.mkdir()
    (context / "Dockerfile").write_text('FROM busybox\nRUN grep " / / " /proc/self/mountinfo > /root-mount\n'
                                        'CMD ["cat", "/root-mount"]\n')
    h("build", "-q", "-t", "mnt:1", str(context))
    step = root_options(h("run", "--rm", "mnt:1").out)
    assert any(o.startswith("upperdir=") for o in step) and volatile(step)
    container = root_options(h("run", "--rm", "busybox", "cat", "/proc/self/mountinfo").out)
    assert any(o.startswith("upperdir=") for o in container) and not volatile(container)
    assert settled(h) == []


def test_a_crash_before_the_sync_is_a_rebuild_of_the_same_image(h: Hoist, ctx: Path) -> None:  # noqa: F811
    _, ran, _ = build(h, ctx, "-t", "app:1")
    assert ran == set(BUILD_STEPS)
    first = h("images", "-q", "--no-trunc", "app:1").out.strip()
    assert settled(h) == []
    assert lazy(h)                       # the build stage's layers are its snapshots alone
    # The machine went down with a build's marker down (a boot that is not this one), after
    # which the build stage's snapshots came into place (a rename sets ctime, as chmod does).
    folder = h.root / "snapshots" / ".unsynced"
    (folder / ("f" * 16)).write_text(FOREIGN + "\n")
    time.sleep(2.2)                      # past the recovery's slack
    snapshots = [p for p in (h.root / "snapshots").iterdir() if not p.name.startswith(".") and p.name != "empty"]
    assert snapshots
    for path in snapshots:
        os.chmod(path, os.stat(path).st_mode & 0o7777)
    cached, ran, _ = build(h, ctx, "-t", "app:2")
    assert ran == set(BUILD_STEPS) and not cached, "a snapshot written before the crash was trusted"
    assert h("images", "-q", "--no-trunc", "app:2").out.strip() == first
    assert h("run", "--rm", "app:2").out == "version one\nbuilt\n"
    assert settled(h) == []


def test_a_killed_build_leaves_a_marker_the_next_build_clears(h: Hoist, ctx: Path) -> None:  # noqa: F811
    # A marker of this boot whose build is dead (killed before its sync) is no crash: nothing
    # is dropped, and the next build's sync covers what it wrote.
    build(h, ctx, "-t", "app:1")
    assert settled(h) == []
    folder = h.root / "snapshots" / ".unsynced"
    (folder / ("d" * 16)).write_text(Path("/proc/sys/kernel/random/boot_id").read_text())
    (ctx / "a.txt").write_text("version two\n")
    cached, ran, _ = build(h, ctx, "-t", "app:2")
    assert "RUN head -c" in cached and ran == {"COPY a.txt", "RUN cat /src/a.txt"}
    assert settled(h) == []
