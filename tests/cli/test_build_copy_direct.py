"""A COPY that only adds to the chain is written straight into its new snapshot
(builder.copy.plan_direct_copy / copy_up, execute.BuildBackend._copy_directly); one that may
follow a symlink, replace or hide something goes through the overlay. Either way the image must
be the one the overlay way makes: each Dockerfile here is built both ways, with
SOURCE_DATE_EPOCH, and the digests (so every layer's bytes) must agree."""

from __future__ import annotations

import os
import stat
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


@pytest.mark.parametrize("dockerfile", list(CASES.values()), ids=list(CASES))
def test_direct_copy_makes_the_image_the_overlay_makes(tmp_path: Path, dockerfile: str) -> None:
    ctx = _context(tmp_path, dockerfile)
    digests = []
    for way in ("direct", "overlay"):
        hoist = Hoist(tmp_path / way)
        busybox_image(hoist.images)
        hoist.env["SOURCE_DATE_EPOCH"] = EPOCH
        if way == "overlay":
            hoist.env["HOIST_BUILD_COPY_OVERLAY"] = "1"
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
