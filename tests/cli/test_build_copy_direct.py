"""A COPY that only adds to the chain is written straight into its new snapshot
(builder.copy.plan_direct_copy / copy_up, execute.BuildBackend._copy_directly); one that may
follow a symlink, replace or hide something goes through the overlay. Either way the image must
be the one the overlay way makes: each Dockerfile here is built both ways, with
SOURCE_DATE_EPOCH, and the digests (so every layer's bytes) must agree."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from builder.copy import plan_direct_copy, select_sources
from storage.layered import LayeredTree
from storage.layout import ImageLayout
from tests.cli.helpers import Hoist
from tests.images import busybox_image

EPOCH = "1700000000"

CASES = {
    "into existing directories (copied up)": """\
FROM busybox
RUN mkdir -p /srv/deep/deeper && chmod 0700 /srv && chown 5:6 /srv/deep && chmod 2750 /srv/deep && \
    touch -d "2020-01-02 03:04:05" /srv /srv/deep /srv/deep/deeper
COPY tree/ /srv/deep/deeper/
COPY tree/ /srv/deep/
COPY --chown=7:8 --chmod=0640 a.txt /srv/
""",
    "into new directories, relative to WORKDIR": """\
FROM busybox
WORKDIR /w/x
COPY a.txt .
COPY tree /new/place
COPY tree a.txt /other/
""",
    "replacing a file of a lower layer (overlay)": """\
FROM busybox
RUN mkdir /srv && echo old > /srv/a.txt && chmod 0600 /srv/a.txt
COPY a.txt /srv/
""",
    "through a symlink (overlay)": """\
FROM busybox
RUN mkdir /real && ln -s /real /link
COPY a.txt /link/
""",
    "where a whiteout hides a lower directory (overlay)": """\
FROM busybox
RUN mkdir -p /gone/x && touch /gone/x/f /gone/keep
RUN rm -rf /gone
COPY tree/ /gone/
""",
    "from a stage, and --link": """\
FROM busybox AS build
RUN mkdir -p /out/d && echo built > /out/d/f && chown -R 3:4 /out
FROM busybox
RUN mkdir /copied
COPY --from=build /out /copied/
COPY --from=build /out/d /fresh
COPY --link a.txt /linked/
""",
}


def _context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "tree" / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "a.txt").write_text("a\n")
    (ctx / "tree" / "t.txt").write_text("t\n")
    (ctx / "tree" / "sub" / "s.sh").write_text("#!/bin/sh\n")
    os.chmod(ctx / "tree" / "sub" / "s.sh", 0o755)
    os.symlink("t.txt", ctx / "tree" / "sub" / "ln")
    os.link(ctx / "tree" / "t.txt", ctx / "tree" / "hard.txt")
    return ctx


def _runner(tmp_path: Path, way: str) -> Hoist:
    """A runner with busybox and SOURCE_DATE_EPOCH that copies the ``way`` given ("direct" or
    "overlay": HOIST_BUILD_COPY_OVERLAY)."""
    hoist = Hoist(tmp_path / way)
    busybox_image(hoist.images)
    hoist.env["SOURCE_DATE_EPOCH"] = EPOCH
    if way == "overlay":
        hoist.env["HOIST_BUILD_COPY_OVERLAY"] = "1"
    return hoist


@pytest.mark.parametrize("dockerfile", list(CASES.values()), ids=list(CASES))
def test_direct_copy_makes_the_image_the_overlay_makes(tmp_path: Path, dockerfile: str) -> None:
    ctx = _context(tmp_path, dockerfile)
    digests = []
    for way in ("direct", "overlay"):
        hoist = _runner(tmp_path, way)
        hoist("build", "-t", "d:1", str(ctx))
        digests.append(str(ImageLayout(hoist.images).find("d:1").descriptor.digest))
    assert digests[0] == digests[1]


def test_plan_direct_copy(tmp_path: Path) -> None:
    """Which copies the plan takes (and the directories it copies up), and which it leaves to
    the overlay."""
    low, high = tmp_path / "low", tmp_path / "high"
    (low / "srv" / "old").mkdir(parents=True)
    (low / "srv" / "file").write_text("x")
    (low / "gone" / "x").mkdir(parents=True)
    high.mkdir()
    os.mknod(high / "gone", stat.S_IFCHR | 0o600, 0)           # a whiteout of /gone
    os.symlink("/srv", high / "link")
    ctx = _context(tmp_path, "FROM scratch\n")
    tree = select_sources(ctx, ["tree/"], ignore=None)
    one = select_sources(ctx, ["a.txt"], ignore=None)
    with LayeredTree([low, high]) as chain:
        plan = plan_direct_copy(chain, tree, "/srv/new/")
        assert plan is not None and [p for p, _, _ in plan] == [["srv"]]
        assert [p for p, _, _ in plan_direct_copy(chain, one, "/srv/") or []] == [["srv"]]
        assert plan_direct_copy(chain, one, "/fresh/dir/") == []
        assert plan_direct_copy(chain, one, "/link/") is None            # a symlink to follow
        assert plan_direct_copy(chain, tree, "/gone/") is None           # a new dir must be opaque
        assert plan_direct_copy(chain, tree, "/srv/file/") is None       # not a directory
        assert plan_direct_copy(chain, one, "/srv/a.txt") is None        # a file destination
        (ctx / "old").mkdir()
        (ctx / "old" / "file").write_text("y")
        assert plan_direct_copy(chain, select_sources(ctx, ["old"], ignore=None), "/srv/") is None  # exists
        assert plan_direct_copy(chain, select_sources(ctx, ["old"], ignore=None), "/new/") == []
    assert plan_direct_copy(None, tree, "/anything/") == []


# -- a rebuild links the files its COPY did not change (builder.copy.PreviousCopy) -------------

LINKED = """\
FROM busybox
COPY src/ /app/
RUN cat /app/a.txt /app/d/b.txt > /joined
"""


def _source_tree(ctx: Path) -> None:
    (ctx / "src" / "d").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(LINKED)
    for name, data, mode in (("a.txt", "a\n", 0o644), ("d/b.txt", "b\n", 0o600), ("run.sh", "#!/bin/sh\n", 0o755),
                             ("same-mtime.txt", "m\n", 0o644), ("moded.txt", "x\n", 0o644)):
        path = ctx / "src" / name
        path.write_text(data)
        os.chmod(path, mode)
        os.utime(path, (1_600_000_000, 1_600_000_000))
    os.link(ctx / "src" / "a.txt", ctx / "src" / "d" / "a-again.txt")   # a hardlink group: always copied
    os.symlink("a.txt", ctx / "src" / "ln")


def _app_files(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, link count) of each regular file under any snapshot's app/, by snapshot/path."""
    out = {}
    for snap in (root / "snapshots").iterdir():
        app = snap / "app"
        if app.is_dir() and not app.is_symlink():
            for path in app.rglob("*"):
                st = path.lstat()
                if stat.S_ISREG(st.st_mode):
                    out[f"{snap.name[:12]}/{path.relative_to(app)}"] = (st.st_ino, st.st_nlink)
    return out


def test_a_rebuild_links_unchanged_files_and_makes_the_image_a_fresh_build_makes(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    _source_tree(ctx)
    time.sleep(2.1)    # past the HashCache's racy window: the files' digests are kept
    hoist = Hoist(tmp_path / "runner")
    busybox_image(hoist.images)
    hoist.env["SOURCE_DATE_EPOCH"] = EPOCH
    hoist("build", "-t", "app:1", str(ctx))
    first = _app_files(hoist.root)
    old_snapshot = {k.split("/")[0] for k in first}
    assert len(old_snapshot) == 1
    assert {k.split("/", 1)[1]: n for k, (_, n) in first.items()} == {
        "a.txt": 2, "d/a-again.txt": 2, "d/b.txt": 1, "run.sh": 1, "same-mtime.txt": 1, "moded.txt": 1}

    # one file's content changes; one file only changes its mode; one only its mtime
    (ctx / "src" / "d" / "b.txt").write_text("b changed\n")
    os.chmod(ctx / "src" / "moded.txt", 0o640)
    os.utime(ctx / "src" / "same-mtime.txt", (1_600_000_100, 1_600_000_100))
    hoist("build", "-t", "app:2", str(ctx))
    second = {k: v for k, v in _app_files(hoist.root).items() if k.split("/")[0] not in old_snapshot}
    by_path = {k.split("/", 1)[1]: v for k, v in second.items()}
    old_by_path = {k.split("/", 1)[1]: v for k, v in first.items()}
    assert set(by_path) == {"a.txt", "d/b.txt", "d/a-again.txt", "run.sh", "same-mtime.txt", "moded.txt"}
    linked = {p for p, (ino, _) in by_path.items() if ino == old_by_path[p][0]}
    assert linked == {"run.sh"}, linked      # the hardlink group, the changed content, mode and mtime: copied
    assert by_path["run.sh"][1] == 2

    # the image is the one a fresh runner builds from the same context, and it runs
    fresh = Hoist(tmp_path / "fresh")
    busybox_image(fresh.images)
    fresh.env["SOURCE_DATE_EPOCH"] = EPOCH
    fresh("build", "-t", "app:2", str(ctx))
    assert ImageLayout(hoist.images).find("app:2").descriptor.digest == \
        ImageLayout(fresh.images).find("app:2").descriptor.digest
    # the first build's snapshot is as it was: the linked file's metadata was not touched
    snap = next(p for p in (hoist.root / "snapshots").iterdir() if p.name.startswith(next(iter(old_snapshot))))
    st = (snap / "app" / "run.sh").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_mtime, (snap / "app" / "d" / "b.txt").read_text()) == \
        (0o755, 1_600_000_000, "b\n")
    out = hoist("run", "--rm", "app:2", "sh", "-c", "cat /joined; stat -c '%a %Y' /app/run.sh /app/moded.txt")
    assert out.out.split("\n")[:4] == ["a", "b changed", "755 1600000000", "640 1600000000"]


def test_a_tampered_previous_snapshot_is_copied_from_the_context(tmp_path: Path) -> None:
    """What the previous snapshot holds must still be what its record says (size, mode, owner,
    mtime): a file someone changed there is copied, never linked."""
    ctx = tmp_path / "ctx"
    _source_tree(ctx)
    time.sleep(2.1)
    hoist = Hoist(tmp_path / "runner")
    busybox_image(hoist.images)
    hoist("build", "-t", "app:1", str(ctx))
    (snap_file,) = [p for p in (hoist.root / "snapshots").glob("*/app/run.sh")]
    os.chmod(snap_file, 0o700)
    (ctx / "src" / "a.txt").write_text("a changed\n")
    hoist("build", "-t", "app:2", str(ctx))
    made = [p for p in (hoist.root / "snapshots").glob("*/app/run.sh") if p != snap_file]
    assert len(made) == 1 and made[0].stat().st_ino != snap_file.stat().st_ino
    assert stat.S_IMODE(made[0].stat().st_mode) == 0o755


def test_copy_records_are_bounded_and_go_with_their_snapshots(tmp_path: Path) -> None:
    from builder.execute import keep_newest

    ctx = tmp_path / "ctx"
    _source_tree(ctx)
    hoist = Hoist(tmp_path / "runner")
    busybox_image(hoist.images)
    copies = hoist.root / "cache" / "build" / "copies"
    hoist("build", "-t", "app:1", str(ctx))
    # the files were just written (inside the HashCache's racy window): no digests, no record yet
    time.sleep(2.1)
    (ctx / "src" / "a.txt").write_text("a changed\n")
    os.utime(ctx / "src" / "a.txt", (1_600_000_000, 1_600_000_000))
    hoist("build", "-t", "app:1", str(ctx))
    assert len(list(copies.glob("*.json"))) == 1
    hoist("rmi", "app:1")
    hoist("builder", "prune", "--all")
    assert list(copies.glob("*.json")) == []     # its snapshot went with the image
    # at most the newest N records are kept
    for i in range(5):
        (copies / f"{i}.json").write_text("{}")
        os.utime(copies / f"{i}.json", ns=(i * 10**9, i * 10**9))
    keep_newest(copies, 2)
    assert sorted(p.name for p in copies.iterdir()) == ["3.json", "4.json"]


# -- names that are not UTF-8 ------------------------------------------------------------------

def test_a_name_that_is_not_utf8_is_copied_byte_for_byte(tmp_path: Path) -> None:
    """A context file named with Latin-1 bytes (as os.listdir gives them back: surrogates) is
    opened, hashed, copied and written into the layer under its own bytes, both ways; it was
    a traceback in openat2 (its name encoded as UTF-8)."""
    import io
    import tarfile

    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY src/ /src/\n"
                                    "RUN for f in /src/*; do printf '%s' \"$f\" | od -An -tx1; done > /names\n")
    name = os.fsdecode(b"caf\xe9.txt")
    (ctx / "src" / name).write_bytes(b"latin-1\n")
    digests = []
    for way in ("direct", "overlay"):
        hoist = _runner(tmp_path, way)
        hoist("build", "-t", "u:1", str(ctx))
        layout = ImageLayout(hoist.images)
        digests.append(str(layout.find("u:1").descriptor.digest))
        _, manifest = layout.resolve_image("u:1")
        with tarfile.open(fileobj=io.BytesIO(layout.read_blob(manifest.layers[-2].digest)),
                          encoding="utf-8", errors="surrogateescape") as tar:
            members = {os.fsencode(m.name): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        assert members == {b"src/caf\xe9.txt": b"latin-1\n"}
        assert hoist("run", "--rm", "u:1", "cat", "/names").out.split() == \
            [f"{b:02x}" for b in b"/src/caf\xe9.txt"]
    assert digests[0] == digests[1]
