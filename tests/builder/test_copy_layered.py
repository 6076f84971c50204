"""COPY --from read through a snapshot chain in place (``select_sources`` on a LayeredTree):
the same selection, cache digest and copied tree as from the chain merged into a directory
(``runtime.snapshots.merge_into``, the old flattened copy), and nothing outside the chain."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from builder.copy import CopyError, copy_into, select_sources
from runtime.snapshots import merge_into
from storage.layered import LayeredTree
from tests.storage.test_layered import _chain, _file, _opaque, _whiteout

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and trusted.* xattrs need root")


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below ``root``: type, mode, owner, times, size, content or link target, and
    its hard-link group (by first name)."""
    out: dict[str, tuple] = {}
    groups: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            body: bytes | str = b""
            group = ""
            if stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                body = p.read_bytes()
                group = groups.setdefault((st.st_dev, st.st_ino), rel) if st.st_nlink > 1 else ""
            xattrs = tuple(sorted((k, os.getxattr(p, k, follow_symlinks=False))
                                  for k in os.listxattr(p, follow_symlinks=False)))
            mtime = st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else 0  # dirs' change as they fill
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, mtime,
                        body, group, xattrs)
    return out


def _both(tmp_path: Path, chain: list[Path], sources: list[str], dest: str, **kw: object
          ) -> tuple[tuple[str, dict], tuple[str, dict]]:
    """(digest, copied tree) from the tree read in place and from the merged directory."""
    merged = tmp_path / "merged"
    if not merged.exists():
        merged.mkdir()
        merge_into(chain, merged)
    results = []
    for name, source in (("layered", None), ("merged", merged)):
        out = tmp_path / f"out-{name}-{len(list(tmp_path.glob('out-*')))}"
        out.mkdir()
        with LayeredTree(chain) as tree:
            sel = select_sources(source or tree, sources, ignore=None, what="stage src", **kw)  # type: ignore[arg-type]
            digest = sel.cache_digest(dest=dest)
            copy_into(sel, out, dest)
        results.append((digest, _snapshot(out)))
    return results[0], results[1]


@pytest.mark.parametrize("sources,dest", [
    (["/"], "/out/"),
    (["/d", "/merged"], "/out/"),
    (["/a", "/a_link"], "/out/"),           # a hard link pair inside one layer
    (["/was_file"], "/x"),
    (["/rel/new"], "/rel-followed"),         # a relative symlink in the top layer, followed inside the chain
    (["/m*"], "/glob/"),
    (["/lnk"], "/l"),                        # followed to the chain's own /etc, which it lacks
])
def test_in_place_equals_merged_copy(tmp_path: Path, sources: list[str], dest: str) -> None:
    chain = _chain(tmp_path)
    os.setxattr(chain[2] / "merged", "user.k", b"v")
    if sources == ["/lnk"]:
        # A source path whose final symlink leads nowhere inside the chain: not found, both ways.
        for root in (None, "merged"):
            with pytest.raises(CopyError, match="not found"), LayeredTree(chain) as tree:
                if root is None:
                    select_sources(tree, sources, ignore=None, what="stage src")
                else:
                    (tmp_path / "m2").mkdir(exist_ok=True)
                    merge_into(chain, tmp_path / "m2")
                    select_sources(tmp_path / "m2", sources, ignore=None, what="stage src")
        return
    layered, merged = _both(tmp_path, chain, sources, dest)
    assert layered == merged
    assert layered[1]


def test_whiteouts_and_opaque_dirs_hide_lower_files(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with LayeredTree(chain) as tree:
        sel = select_sources(tree, ["/"], ignore=None, what="stage src")
        names = {e.rel for item in sel.items for e in item.entries}
        copy_into(sel, out, "/")
    assert {"gone", "rmdir", "rmdir/x", "d/old", "d/sub", "merged/one", "was_dir/inner"}.isdisjoint(names)
    assert {"d/new", "merged/two", "merged/three", "was_file/now", "a", "a_link"} <= names
    assert (out / "a").stat().st_ino == (out / "a_link").stat().st_ino
    assert not (out / "gone").exists() and sorted(os.listdir(out / "d")) == ["new"]


def test_entries_are_opened_in_their_own_layer(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    with LayeredTree(chain) as tree:
        sel = select_sources(tree, ["/merged"], ignore=None, what="stage src")
        layers = {e.rel: e.layer for e in sel.items[0].entries}
    assert layers == {"": 0, "two": 1, "three": 0}


def test_symlink_escapes_stay_inside_the_chain(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    outside = tmp_path / "outside"
    _file(outside / "secret", "host")
    os.symlink(str(outside), chain[2] / "abs")
    os.symlink("../../../../../../../../" + str(outside), chain[2] / "climb")
    # A directory of a lower layer replaced by a symlink to the host in a higher one.
    _file(chain[0] / "shadow/secret", "chain")
    os.symlink(str(outside), chain[1] / "shadow")
    with LayeredTree(chain) as tree:
        for src in ("/abs/secret", "/climb/secret", "/shadow/secret", "/abs/../outside/secret"):
            with pytest.raises(CopyError, match="not found"):
                select_sources(tree, [src], ignore=None, what="stage src")
        # Inside a copied directory the links are copied as links, pointing where they pointed,
        # and the lower layer's directory they shadow is not merged in.
        out = tmp_path / "out"
        out.mkdir()
        copy_into(select_sources(tree, ["/"], ignore=None, what="stage src"), out, "/")
    assert os.readlink(out / "abs") == str(outside) and os.readlink(out / "shadow") == str(outside)
    assert os.listdir(outside) == ["secret"] and (outside / "secret").read_text() == "host"


def test_absolute_symlink_resolves_to_the_chains_own_root(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    _file(chain[0] / "etc/hostname", "chain-host")
    out = tmp_path / "out"
    out.mkdir()
    with LayeredTree(chain) as tree:
        sel = select_sources(tree, ["/lnk/hostname"], ignore=None, what="stage src")
        copy_into(sel, out, "/h")
    assert (out / "h").read_text() == "chain-host"


def test_a_file_replaced_after_selection_is_refused(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with LayeredTree(chain) as tree:
        sel = select_sources(tree, ["/merged"], ignore=None, what="stage src")
        os.rename(chain[1] / "merged/two", tmp_path / "kept")  # (an unlinked inode could be reused)
        _file(chain[1] / "merged/two", "swapped")
        with pytest.raises(CopyError, match="replaced|changed|cannot be read"):
            copy_into(sel, out, "/m/")


def test_opaque_root_of_a_directory_source(tmp_path: Path) -> None:
    layers = [tmp_path / "l0", tmp_path / "l1"]
    _file(layers[0] / "app/old", "o")
    (layers[1] / "app").mkdir(parents=True)
    _opaque(layers[1] / "app")
    _file(layers[1] / "app/new", "n")
    _whiteout(layers[1] / "app/ghost")
    layered, merged = _both(tmp_path, layers, ["/app"], "/dst/")
    assert layered == merged
    assert sorted(layered[1]) == ["dst", "dst/new"]
