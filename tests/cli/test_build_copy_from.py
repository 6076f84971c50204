"""``COPY --from`` and ``RUN --mount=type=bind,from=`` read a stage whose chain deletes, replaces
and hard-links files: a real build, the result run with ``hoist run``. The stage is read in
place (no merged copy of it is made in the store)."""

from __future__ import annotations

from pathlib import Path


from tests.cli.helpers import Hoist

DOCKERFILE = """\
FROM busybox AS src
RUN mkdir -p /d/sub /keep && echo old > /d/old && echo deep > /d/sub/deep && echo k > /keep/k \\
 && echo gone > /keep/gone && echo f > /was_file && mkdir /was_dir && echo i > /was_dir/inner \\
 && ln -s /etc /lnk && echo chain > /etc/marker
RUN rm /keep/gone && rm -rf /d && mkdir /d && echo new > /d/new \\
 && rm /was_file && mkdir /was_file && echo now > /was_file/now && rm -r /was_dir && echo file > /was_dir \\
 && ln /keep/k /keep/k2
FROM busybox
COPY --from=src /d /out/d
COPY --from=src /keep /out/keep
COPY --from=src /was_file /out/was_file
COPY --from=src /was_dir /out/was_dir
COPY --from=src /lnk/marker /out/marker
RUN --mount=type=bind,from=src,target=/m echo $(ls /m/d /m/keep) > /out/bind.txt
CMD ["sh", "-c", "cd /out && echo $(ls d) $(ls keep) $(ls was_file) $(cat was_dir marker bind.txt) && ls -i keep"]
"""


def test_copy_from_a_stage_with_whiteouts_opaque_dirs_and_links(h: Hoist, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    h("build", "-t", "from:1", str(ctx))
    lines = h("run", "--rm", "from:1").out.splitlines()
    assert lines[0].split() == ["new", "k", "k2", "now", "file", "chain", "/m/d:", "new", "/m/keep:", "k", "k2"]
    inodes = {line.split()[1]: line.split()[0] for line in lines[1:] if line.strip()}
    assert set(inodes) == {"k", "k2"} and inodes["k"] == inodes["k2"]   # the hard link survived the copy
    snapshots = h.root / "snapshots"
    # COPY --from made no merged copy of the stage (the bind mount's is hard links to it).
    flats = [p for p in snapshots.iterdir() if p.name.startswith("flat-")]
    assert len(flats) <= 1
    for flat in flats:
        k = flat / "keep" / "k"
        chain_files = [p for p in snapshots.glob("*/keep/k") if not p.parent.parent.name.startswith("flat-")]
        assert k.stat().st_ino in {p.stat().st_ino for p in chain_files}


def test_cached_rebuild_reads_the_stage_again_without_copying(h: Hoist, tmp_path: Path) -> None:
    from storage.layout import ImageLayout
    from storage.reference import parse_reference

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)

    def layers() -> list[str]:
        _, manifest = ImageLayout(h.images).resolve_image(str(parse_reference("from:1")))
        return [str(layer.digest) for layer in manifest.layers]

    h("build", "-q", "-t", "from:1", str(ctx))
    first, snapshots = layers(), sorted(p.name for p in (h.root / "snapshots").iterdir())
    again = h("build", "-t", "from:1", str(ctx))
    # Every step is a hit (the COPY --from keys come from the stage read in place), the same
    # layers make the image, and nothing new is unpacked, merged or copied into the store.
    assert again.err.count("CACHED") == 8
    assert layers() == first
    assert sorted(p.name for p in (h.root / "snapshots").iterdir()) == snapshots
