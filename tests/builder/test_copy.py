"""COPY/ADD engine: sources, destinations, --chown/--chmod, archives, cache digests (real trees)."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from builder.context import ContextError, load_context
from builder.copy import (
    CopyError,
    HashCache,
    PreviousCopy,
    Selection,
    copy_into,
    parse_chmod,
    parse_chown,
    resolve_owner,
    select_sources,
)
from storage.tarlimits import Limits


def tree(root: Path, spec: dict[str, str | None]) -> Path:
    """Files (str content), dirs (None) and symlinks ("-> target") under root."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in spec.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            p.mkdir(exist_ok=True)
        elif content.startswith("-> "):
            os.symlink(content[3:], p)
        else:
            p.write_text(content)
    return root


def listing(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "-> " + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            else:
                out[rel] = p.read_text()
    return out


def do_copy(ctx: Path, dst: Path, sources: list[str], dest: str, **kw: object) -> None:
    sel = select_sources(ctx, sources, ignore=kw.pop("ignore", None))  # type: ignore[arg-type]
    opts: dict = dict(workdir="/", owner=None, chmod=None, parents=False, unpack_archives=False, link=False)
    opts.update(kw)
    copy_into(sel, dst, dest, **opts)


def test_file_dir_and_followed_symlink(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"a.txt": "A", "dir/sub/f": "F", "link": "-> a.txt", "dir/l": "-> ../a.txt"})
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["a.txt", "dir", "link"], "/app/")
    assert listing(dst) == {"app": "dir", "app/a.txt": "A", "app/sub": "dir", "app/sub/f": "F",
                            "app/l": "-> ../a.txt", "app/link": "A"}


def test_missing_and_ignored_sources(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"a.txt": "A", "secret.txt": "S", ".dockerignore": "secret.txt\n"})
    context = load_context(ctx, None)
    with pytest.raises(CopyError, match="not found"):
        select_sources(ctx, ["nope.txt"], ignore=context.ignore)
    with pytest.raises(CopyError, match="no source files match"):
        select_sources(ctx, ["*.md"], ignore=context.ignore)
    with pytest.raises(CopyError, match=r"excluded by \.dockerignore"):
        select_sources(ctx, ["secret.txt"], ignore=context.ignore)
    sel = select_sources(ctx, ["*.txt"], ignore=context.ignore)
    assert [i.name for i in sel.items] == ["a.txt"]


def test_ignored_directory_with_reincluded_file(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"ign/drop": "d", "ign/keep": "k", "other": "o",
                                  ".dockerignore": "ign\n!ign/keep\n"})
    ignore = load_context(ctx, None).ignore
    for pattern in ("ign", "ig*"):
        sel = select_sources(ctx, [pattern], ignore=ignore)
        assert [(i.name, [e.rel for e in i.entries]) for i in sel.items] == [("ign", ["", "keep"])]
    with pytest.raises(CopyError, match=r"excluded by \.dockerignore"):
        select_sources(ctx, ["ign/drop"], ignore=ignore)


def test_context_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ContextError, match="not a directory"):
        load_context(tmp_path / "f", None)


def test_source_symlink_escape_is_clamped(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"up": "-> ../../../../etc/passwd", "abs": "-> /etc/hostname"})
    for name in ("up", "abs", "../../etc/passwd"):
        with pytest.raises(CopyError, match="not found"):
            select_sources(ctx, [name], ignore=None)


def test_dest_symlink_escape_stays_in_root(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"a.txt": "A"})
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = tree(tmp_path / "root", {"evil": f"-> {outside}", "up": "-> ../../../.."})
    do_copy(ctx, dst, ["a.txt"], "/evil/")
    do_copy(ctx, dst, ["a.txt"], "/up/x/")
    assert list(outside.iterdir()) == []
    assert (dst / outside.relative_to("/") / "a.txt").read_text() == "A"
    assert (dst / "x" / "a.txt").read_text() == "A"


def test_chmod_parsing() -> None:
    assert parse_chmod("755").apply(0o644, False) == 0o755
    assert parse_chmod("0644").apply(0o755, True) == 0o644
    assert parse_chmod("u+x").apply(0o644, False) == 0o744
    assert parse_chmod("g-w,o=r").apply(0o777, False) == 0o754
    assert parse_chmod("a+X").apply(0o644, False) == 0o644
    assert parse_chmod("a+X").apply(0o644, True) == 0o755
    assert parse_chmod("go=rX").apply(0o744, False) == 0o755
    assert parse_chmod("u=rwx,go=rX").apply(0o644, False) == 0o755  # X sees the mode built so far
    assert parse_chmod("u+s,g+s,+t").apply(0o755, False) == 0o7755
    assert parse_chmod("o=u").apply(0o750, False) == 0o757
    assert parse_chmod("a=").apply(0o7777, False) == 0
    assert parse_chmod("4755").apply(0o644, False) == 0o4755
    for bad in ("abc", "u+q", "8", "", "99999", "u+x,"):
        with pytest.raises(CopyError):
            parse_chmod(bad)


def test_chown_resolution(tmp_path: Path) -> None:
    rootfs = tree(tmp_path / "rootfs", {"etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
                                        "etc/group": "root:x:0:\nstaff:x:50:\n"})
    assert resolve_owner(parse_chown("app"), rootfs) == (1000, 1001)
    assert resolve_owner(parse_chown("app:staff"), rootfs) == (1000, 50)
    assert resolve_owner(parse_chown("123"), rootfs) == (123, 123)
    assert resolve_owner(parse_chown("123:7"), rootfs) == (123, 7)
    assert resolve_owner(parse_chown("app:"), rootfs) == (1000, 1001)
    assert resolve_owner(parse_chown(":staff"), rootfs) == (0, 50)
    with pytest.raises(CopyError, match="nobody"):
        resolve_owner(parse_chown("nobody"), rootfs)
    with pytest.raises(CopyError, match="wheel"):
        resolve_owner(parse_chown("app:wheel"), rootfs)


def test_cache_digest_ignores_times_sees_content(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"a.txt": "AAAA"})
    d1 = select_sources(ctx, ["a.txt"], ignore=None).cache_digest(dest="/x")
    os.utime(ctx / "a.txt", (1, 1))
    assert select_sources(ctx, ["a.txt"], ignore=None).cache_digest(dest="/x") == d1
    (ctx / "a.txt").write_text("BBBB")
    os.utime(ctx / "a.txt", (1, 1))
    assert select_sources(ctx, ["a.txt"], ignore=None).cache_digest(dest="/x") != d1


# -- destinations ----------------------------------------------------------------------------

def test_relative_dest_uses_workdir_and_trailing_slash_rules(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"a.txt": "A", "b.txt": "B"})
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["a.txt"], "rel", workdir="/w/d")
    do_copy(ctx, dst, ["a.txt"], "reldir/", workdir="/w/d")
    do_copy(ctx, dst, ["a.txt"], ".", workdir="/w/e")
    assert (dst / "w/d/rel").read_text() == "A"
    assert (dst / "w/d/reldir/a.txt").read_text() == "A"
    assert (dst / "w/e/a.txt").read_text() == "A"
    for p in ("w", "w/d", "w/d/reldir"):
        assert stat.S_IMODE((dst / p).stat().st_mode) == 0o755


def test_several_sources_need_a_directory(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"a.txt": "A", "b.txt": "B"})
    dst = tmp_path / "root"
    dst.mkdir()
    with pytest.raises(CopyError, match="must be a directory and end with a /"):
        do_copy(ctx, dst, ["a.txt", "b.txt"], "/x")
    with pytest.raises(CopyError, match="must be a directory"):
        do_copy(ctx, dst, ["*.txt"], "/y")
    (dst / "z").mkdir()
    do_copy(ctx, dst, ["*.txt"], "/z")
    assert sorted(os.listdir(dst / "z")) == ["a.txt", "b.txt"]


def test_file_over_directory_and_dir_over_file_are_errors(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"a.txt": "A", "d/x": "X"})
    dst = tree(tmp_path / "root", {"t/a.txt/inner": "I", "f": "file"})
    with pytest.raises(CopyError, match="cannot replace to directory"):
        do_copy(ctx, dst, ["a.txt"], "/t/")
    with pytest.raises(CopyError, match="not a directory"):
        do_copy(ctx, dst, ["d"], "/f/")


def test_existing_file_and_symlink_are_replaced_not_followed_inside_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    ctx = tree(tmp_path / "ctx", {"d/x": "new"})
    dst = tree(tmp_path / "root", {"t/x": f"-> {outside}"})
    do_copy(ctx, dst, ["d/"], "/t/")
    assert outside.read_text() == "keep"
    assert (dst / "t/x").read_text() == "new" and not (dst / "t/x").is_symlink()


def test_symlinked_directory_in_the_way_is_an_error(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"d/lnk/z": "Z"})
    dst = tree(tmp_path / "root", {"t/real": None, "t/lnk": "-> real"})
    with pytest.raises(CopyError, match="cannot copy to non-directory"):
        do_copy(ctx, dst, ["d/"], "/t/")
    assert list((dst / "t/real").iterdir()) == []


def test_dest_through_absolute_and_dotdot_symlinks_stays_in_root(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"a.txt": "A", "d/f": "F"})
    dst = tree(tmp_path / "root", {"etc": "-> /", "usr/lib": "-> ../../../../../..", "t/file": "-> /outside.txt"})
    before = set(os.listdir("/"))
    do_copy(ctx, dst, ["a.txt"], "/etc/tmp/")
    do_copy(ctx, dst, ["d"], "/usr/lib/x")
    do_copy(ctx, dst, ["a.txt"], "/t/file")
    assert set(os.listdir("/")) == before
    assert (dst / "tmp/a.txt").read_text() == "A"
    assert (dst / "x/f").read_text() == "F"
    assert (dst / "outside.txt").read_text() == "A"


def test_owner_applies_to_created_parents_and_files(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    ctx = tree(tmp_path / "ctx", {"d/sub/f": "F", "l": "-> d"})
    dst = tree(tmp_path / "root", {"exists": None})
    do_copy(ctx, dst, ["d"], "/exists/a/b/", owner=(1000, 2000))
    for p in ("exists/a", "exists/a/b", "exists/a/b/sub", "exists/a/b/sub/f"):
        st = (dst / p).lstat()
        assert (st.st_uid, st.st_gid) == (1000, 2000), p
    assert (dst / "exists").stat().st_uid == 0


def test_context_files_belong_to_root_stage_files_keep_owners(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    ctx = tree(tmp_path / "ctx", {"f": "F"})
    os.chown(ctx / "f", 123, 456)
    dst = tmp_path / "root"
    dst.mkdir()
    copy_into(select_sources(ctx, ["f"], ignore=None), dst, "/a", workdir="/", owner=None, chmod=None,
              parents=False, unpack_archives=False, link=False)
    copy_into(select_sources(ctx, ["f"], ignore=None, what="stage build"), dst, "/b", workdir="/", owner=None,
              chmod=None, parents=False, unpack_archives=False, link=False)
    assert ((dst / "a").stat().st_uid, (dst / "b").stat().st_uid, (dst / "b").stat().st_gid) == (0, 123, 456)


def test_chmod_applies_to_files_and_dirs_not_links_or_dest(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"d/sub/f": "F", "d/l": "-> sub"})
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["d"], "/t/", chmod=parse_chmod("u=rw,go=rX"))
    assert stat.S_IMODE((dst / "t").stat().st_mode) == 0o755
    assert stat.S_IMODE((dst / "t/sub").stat().st_mode) == 0o655
    assert stat.S_IMODE((dst / "t/sub/f").stat().st_mode) == 0o644
    assert (dst / "t/l").is_symlink()


def test_mtimes_kept_and_hardlinks_kept_within_a_source(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"d/a": "A"})
    os.link(ctx / "d/a", ctx / "d/b")
    os.utime(ctx / "d/a", (1_000_000, 1_000_000))
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["d/"], "/t/")
    do_copy(ctx, dst, ["d/*"], "/u/")
    assert (dst / "t/a").stat().st_ino == (dst / "t/b").stat().st_ino
    assert (dst / "t/a").stat().st_mtime == 1_000_000
    assert (dst / "u/a").stat().st_ino != (dst / "u/b").stat().st_ino


def test_sparse_file_stays_sparse_and_is_bounded(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with open(ctx / "sparse", "wb") as f:
        f.seek(8 << 30)
        f.write(b"end")
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["sparse"], "/s")
    st = (dst / "s").stat()
    assert st.st_size == (8 << 30) + 3 and st.st_blocks * 512 < (1 << 20)
    with open(dst / "s", "rb") as f:
        f.seek(8 << 30)
        assert f.read() == b"end"
    with pytest.raises(CopyError, match="more than"):
        select_sources(ctx, ["sparse"], ignore=None, limits=Limits(max_bytes=1 << 30))


def test_heredoc_sources(tmp_path: Path) -> None:
    dst = tmp_path / "root"
    dst.mkdir()
    sel = Selection.from_contents([("hello", "hi\n"), ("b.sh", b"#!/bin/sh\n")])
    copy_into(sel, dst, "/h/", workdir="/", owner=None, chmod=None, parents=False, unpack_archives=False,
              link=False)
    assert (dst / "h/hello").read_text() == "hi\n"
    assert stat.S_IMODE((dst / "h/b.sh").stat().st_mode) == 0o644
    one = Selection.from_contents([("x", "data")])
    copy_into(one, dst, "/single", workdir="/", owner=None, chmod=parse_chmod("755"), parents=False,
              unpack_archives=False, link=False)
    assert (dst / "single").read_text() == "data"
    assert stat.S_IMODE((dst / "single").stat().st_mode) == 0o755
    assert one.cache_digest(dest="/single") != Selection.from_contents([("x", "datb")]).cache_digest(dest="/single")


# -- sources -----------------------------------------------------------------------------------

def test_wildcards_follow_go_filepath_match(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"a1.txt": "", "a2.txt": "", "ab.txt": "", "d/x.txt": "", "[x]": "", "b*": ""})
    names = lambda pats: sorted(i.name for i in select_sources(ctx, pats, ignore=None).items)
    assert names(["a?.txt"]) == ["a1.txt", "a2.txt", "ab.txt"]
    assert names(["a[0-9].txt"]) == ["a1.txt", "a2.txt"]
    assert names(["a[^0-9].txt"]) == ["ab.txt"]
    assert names(["*/*.txt"]) == ["x.txt"]
    assert names(["*.txt"]) == ["a1.txt", "a2.txt", "ab.txt"]
    assert names(["\\[x]"]) == ["[x]"]
    assert names(["b\\*"]) == ["b*"]
    with pytest.raises(CopyError, match="syntax error"):
        select_sources(ctx, ["a[.txt"], ignore=None)


def test_dotdot_and_absolute_sources_are_clamped(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"etc/passwd": "mine"})
    (tmp_path / "secret").write_text("outside")
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["/etc/passwd"], "/a")
    do_copy(ctx, dst, ["../../../etc/passwd"], "/b")
    assert (dst / "a").read_text() == (dst / "b").read_text() == "mine"
    with pytest.raises(CopyError, match="not found"):
        select_sources(ctx, ["../secret"], ignore=None)


def test_symlink_source_inside_context_is_followed_and_link_inside_dir_kept(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"real/f": "F", "alias": "-> real", "real/up": "-> ../../..", "chain": "-> alias/f"})
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["alias", "chain"], "/t/")
    assert (dst / "t/f").read_text() == "F"
    assert (dst / "t/chain").read_text() == "F"
    assert os.readlink(dst / "t/up") == "../../.."


def test_symlink_into_ignored_file_is_not_found(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"secret": "S", "pub": "-> secret"})
    context = load_context(ctx, None)
    (ctx / ".dockerignore").write_text("secret\n")
    context = load_context(ctx, None)
    with pytest.raises(CopyError, match=r"excluded by \.dockerignore"):
        select_sources(ctx, ["pub"], ignore=context.ignore)


def test_ignored_files_inside_a_directory_are_invisible(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"app/main.py": "m", "app/__pycache__/x.pyc": "c", "app/.env": "e",
                                  "app/keep/.env": "k", ".dockerignore": "**/__pycache__\napp/.env\n"})
    context = load_context(ctx, None)
    sel = select_sources(ctx, ["app"], ignore=context.ignore)
    assert [e.rel for e in sel.items[0].entries] == ["", "keep", "keep/.env", "main.py"]


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"a": "A", "b": "B", ".dockerignore": "a\n", "sub/app.Dockerfile": "FROM x\n",
                                  "sub/app.Dockerfile.dockerignore": "b\n"})
    context = load_context(ctx, ctx / "sub/app.Dockerfile")
    assert context.ignore is not None and context.ignore.matches("b") and not context.ignore.matches("a")
    assert load_context(ctx, None).ignore.matches("a")  # type: ignore[union-attr]


def test_excludes_filter_the_selection(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"home.txt": "", "homer.md": "", "house/a.txt": "", "house/b.md": ""})
    # The reference's example: matches of the wildcard, and what lies inside them, are filtered.
    sel = select_sources(ctx, ["ho*"], ignore=None, excludes=["*.txt"])
    assert [(i.name, [e.rel for e in i.entries]) for i in sel.items] == [("homer.md", [""]), ("house", ["", "b.md"])]
    sel = select_sources(ctx, ["house"], ignore=None, excludes=["*.md"])
    assert [e.rel for e in sel.items[0].entries] == ["", "a.txt"]
    sel = select_sources(ctx, ["."], ignore=None, excludes=["house", "!house/b.md"])
    assert [e.rel for e in sel.items[0].entries] == ["", "home.txt", "homer.md", "house", "house/b.md"]


def test_parents_keep_the_source_path(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"x/y/z.txt": "Z", "x/w/z.txt": "W", "a/b/c.txt": "C"})
    (ctx / "x/y").chmod(0o750)
    dst = tmp_path / "root"
    dst.mkdir()
    sel = select_sources(ctx, ["x/*/z.txt", "./a/./b/c.txt"], ignore=None, parents=True)
    copy_into(sel, dst, "/p/", workdir="/", owner=None, chmod=None, parents=True, unpack_archives=False, link=False)
    assert listing(dst / "p") == {"x": "dir", "x/y": "dir", "x/y/z.txt": "Z", "x/w": "dir", "x/w/z.txt": "W",
                                  "b": "dir", "b/c.txt": "C"}
    assert stat.S_IMODE((dst / "p/x/y").stat().st_mode) == 0o750


# -- cache digest ----------------------------------------------------------------------------

def test_cache_digest_sees_every_attribute(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"d/f": "F", "d/l": "-> f"})
    digest = lambda **kw: select_sources(ctx, ["d"], ignore=None).cache_digest(dest="/x", **kw)
    base = digest()
    assert digest(owner=(1, 1)) != base
    assert digest(chmod=parse_chmod("600")) != base
    assert select_sources(ctx, ["d"], ignore=None).cache_digest(dest="/y") != base
    (ctx / "d/f").chmod(0o600)
    assert digest() != base
    os.unlink(ctx / "d/l")
    os.symlink("g", ctx / "d/l")
    changed = digest()
    os.link(ctx / "d/f", ctx / "d/h")
    assert digest() != changed
    if os.geteuid() == 0:
        os.setxattr(ctx / "d/f", "user.k", b"v")
        assert digest() != changed


def test_hash_cache_trusts_only_full_stat_identity(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"f": "AAAA"})
    cache = HashCache(tmp_path / "hashes.json", racy_ns=0)
    first = select_sources(ctx, ["f"], ignore=None).cache_digest(dest="/x", hash_cache=cache)
    reloaded = HashCache(tmp_path / "hashes.json", racy_ns=0)
    assert select_sources(ctx, ["f"], ignore=None).cache_digest(dest="/x", hash_cache=reloaded) == first
    # Poison the entry: a stat-identical file is served from the cache (so the cache is used)...
    st = (ctx / "f").stat()
    reloaded.put(st, "0" * 64)
    poisoned = select_sources(ctx, ["f"], ignore=None).cache_digest(dest="/x", hash_cache=reloaded)
    assert poisoned != first
    # ...but a same-size edit with the mtime put back changes the ctime and is re-read.
    time.sleep(0.05)
    (ctx / "f").write_text("BBBB")
    os.utime(ctx / "f", ns=(st.st_atime_ns, st.st_mtime_ns))
    after = (ctx / "f").stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and after.st_ctime_ns != st.st_ctime_ns
    fresh = select_sources(ctx, ["f"], ignore=None).cache_digest(dest="/x", hash_cache=reloaded)
    assert fresh not in (first, poisoned)
    assert fresh == select_sources(ctx, ["f"], ignore=None).cache_digest(dest="/x")


def test_hash_cache_skips_racy_files(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"f": "AAAA"})
    cache = HashCache(None)
    select_sources(ctx, ["f"], ignore=None).cache_digest(dest="/x", hash_cache=cache)
    assert cache.get((ctx / "f").stat()) is None


# -- ADD archives ----------------------------------------------------------------------------

def make_tar(path: Path, members: list[tuple[str, str, bytes | str]], compression: str = "") -> Path:
    """members: (name, kind, data-or-linkname); kind in file, dir, sym, lnk."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_500_000_000
            if kind == "file":
                raw = data.encode() if isinstance(data, str) else data
                info.size, info.mode = len(raw), 0o640
                tar.addfile(info, io.BytesIO(raw))
            else:
                info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "lnk": tarfile.LNKTYPE}[kind]
                info.mode = 0o755
                info.linkname = data if isinstance(data, str) else data.decode()
                tar.addfile(info)
    raw = buf.getvalue()
    if compression == "gz":
        raw = gzip.compress(raw)
    elif compression == "bz2":
        raw = bz2.compress(raw)
    elif compression == "xz":
        raw = lzma.compress(raw)
    elif compression == "zst":
        import zstandard
        raw = zstandard.ZstdCompressor().compress(raw)
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz", "zst"])
def test_add_extracts_archives_sniffed_by_content(tmp_path: Path, compression: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    make_tar(ctx / "pkg.data", [("pkg/", "dir", ""), ("pkg/a", "file", "A"), ("pkg/l", "sym", "a"),
                                ("pkg/h", "lnk", "pkg/a")], compression)
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["pkg.data"], "/opt", unpack_archives=True)
    assert listing(dst / "opt") == {"pkg": "dir", "pkg/a": "A", "pkg/l": "-> a", "pkg/h": "A"}
    assert (dst / "opt/pkg/a").stat().st_ino == (dst / "opt/pkg/h").stat().st_ino
    assert stat.S_IMODE((dst / "opt/pkg/a").stat().st_mode) == 0o640
    do_copy(ctx, dst, ["pkg.data"], "/copied", unpack_archives=False)
    assert (dst / "copied").read_bytes() == (ctx / "pkg.data").read_bytes()


def test_add_chown_applies_to_archive_entries_not_implied_dirs(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    make_tar(ctx / "a.tar", [("top/", "dir", ""), ("top/f", "file", "F"), ("implied/g", "file", "G")])
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["a.tar"], "/new/dir", unpack_archives=True, owner=(7, 8), chmod=parse_chmod("600"))
    owners = {p: ((dst / p).lstat().st_uid, (dst / p).lstat().st_gid)
              for p in ("new", "new/dir", "new/dir/top", "new/dir/top/f", "new/dir/implied", "new/dir/implied/g")}
    assert owners == {"new": (7, 8), "new/dir": (7, 8), "new/dir/top": (7, 8), "new/dir/top/f": (7, 8),
                      "new/dir/implied": (0, 0), "new/dir/implied/g": (7, 8)}
    assert stat.S_IMODE((dst / "new/dir/top/f").stat().st_mode) == 0o640
    assert (dst / "new/dir/top/f").stat().st_mtime == 1_500_000_000


def test_add_copies_non_archives(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"fake.tar.gz": "not an archive at all"})
    (ctx / "empty.tar").write_bytes(bytes(1024))
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["fake.tar.gz", "empty.tar"], "/d/", unpack_archives=True)
    assert (dst / "d/fake.tar.gz").read_text() == "not an archive at all"
    assert (dst / "d/empty.tar").read_bytes() == bytes(1024)


def test_hostile_archives_cannot_escape(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = tmp_path / "root"
    dst.mkdir()
    make_tar(ctx / "dotdot.tar", [("../../escape", "file", "x")])
    with pytest.raises(CopyError, match="outside of the destination"):
        do_copy(ctx, dst, ["dotdot.tar"], "/x", unpack_archives=True)
    make_tar(ctx / "rel-link.tar", [("up", "sym", "../../../.."), ("up/pwned", "file", "x")])
    with pytest.raises(CopyError, match="points outside"):
        do_copy(ctx, dst, ["rel-link.tar"], "/x", unpack_archives=True)
    assert os.readlink(dst / "x/up") == "../../../.."  # kept as written, never followed out
    assert list(tmp_path.glob("**/pwned")) == []
    make_tar(ctx / "hardlink.tar", [("h", "lnk", "../../etc/passwd")])
    with pytest.raises(CopyError, match="outside of the destination"):
        do_copy(ctx, dst, ["hardlink.tar"], "/x", unpack_archives=True)
    # An absolute symlink is fine, and writing through it stays inside the extraction root.
    make_tar(ctx / "abs.tar", [("root", "sym", str(outside)), ("root/pwned", "file", "x"),
                               ("etc", "sym", "/"), ("etc/passwd2", "file", "y")])
    do_copy(ctx, dst, ["abs.tar"], "/x", unpack_archives=True)
    assert list(outside.iterdir()) == []
    assert (dst / "x" / outside.relative_to("/") / "pwned").read_text() == "x"
    assert (dst / "x/passwd2").read_text() == "y"


def test_archive_with_huge_sparse_member_is_bounded(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    info = tarfile.TarInfo("big")
    info.size = 64 << 30
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    (ctx / "bomb.tar").write_bytes(header + bytes(1024))
    dst = tmp_path / "root"
    dst.mkdir()
    with pytest.raises(CopyError, match="more than"):
        copy_into(select_sources(ctx, ["bomb.tar"], ignore=None), dst, "/x", workdir="/", owner=None, chmod=None,
                  parents=False, unpack_archives=True, link=False, limits=Limits(max_bytes=1 << 20))


# -- chown in a hostile image ------------------------------------------------------------------

def test_passwd_symlink_cannot_leave_the_rootfs(tmp_path: Path) -> None:
    host = tmp_path / "host-passwd"
    host.write_text("evil:x:666:666::/:/bin/sh\n")
    rootfs = tree(tmp_path / "rootfs", {"etc/passwd": f"-> {host}", "etc/group": "-> ../../../../etc/group"})
    with pytest.raises(CopyError, match="unable to find user evil"):
        resolve_owner(parse_chown("evil"), rootfs)
    rootfs2 = tree(tmp_path / "rootfs2", {"etc": "-> /real-etc", "real-etc/passwd": "app:x:5:6::/:/bin/sh\n"})
    assert resolve_owner(parse_chown("app"), rootfs2) == (5, 6)


def test_chown_parse_errors() -> None:
    with pytest.raises(CopyError):
        parse_chown("")
    assert parse_chown(":grp").user is None
    assert (parse_chown("app:").user, parse_chown("app:").group) == ("app", None)
    assert parse_chown("4294967296").uid is None  # not a uint32: a name


def test_deep_trees_copy_and_too_deep_is_an_error(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    deep = ctx / "d"
    rel = "/".join(["x"] * 150)
    (deep / rel).mkdir(parents=True)
    (deep / rel / "f").write_text("deep")
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["d"], "/t/")
    assert (dst / "t" / rel / "f").read_text() == "deep"
    with pytest.raises(CopyError, match="deeper than 100 levels"):
        select_sources(ctx, ["d"], ignore=None, limits=Limits(max_depth=100))


def test_xattrs_fifos_and_devices_are_copied(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    ctx = tree(tmp_path / "ctx", {"d/f": "F"})
    os.setxattr(ctx / "d/f", "user.note", b"kept")
    os.setxattr(ctx / "d", "user.dir", b"too")
    os.mkfifo(ctx / "d/pipe", 0o640)
    os.mknod(ctx / "d/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(ctx / "d/null", 0o666)
    os.chmod(ctx / "d/pipe", 0o640)
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["d"], "/t/")
    do_copy(ctx, dst, ["."], "/all/")
    assert os.getxattr(dst / "t/f", "user.note") == b"kept"
    assert os.getxattr(dst / "all/d", "user.dir") == b"too"
    pipe = (dst / "t/pipe").lstat()
    assert stat.S_ISFIFO(pipe.st_mode) and stat.S_IMODE(pipe.st_mode) == 0o640
    null = (dst / "t/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3) and stat.S_IMODE(null.st_mode) == 0o666


def test_errors_are_copy_errors_with_clear_messages(tmp_path: Path) -> None:
    ctx = tree(tmp_path / "ctx", {"a": "A", "loop1": "-> loop2", "loop2": "-> loop1"})
    with pytest.raises(CopyError, match="too many levels of symbolic links"):
        select_sources(ctx, ["loop1"], ignore=None)
    with pytest.raises(CopyError, match="cannot open"):
        select_sources(tmp_path / "missing", ["a"], ignore=None)
    with pytest.raises(CopyError, match="cannot open the destination root"):
        copy_into(select_sources(ctx, ["a"], ignore=None), tmp_path / "nope", "/x", workdir="/", owner=None,
                  chmod=None, parents=False, unpack_archives=False, link=False)


def test_source_swapped_for_a_symlink_after_selection_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    ctx = tree(tmp_path / "ctx", {"d/f": "F"})
    sel = select_sources(ctx, ["d"], ignore=None)
    os.unlink(ctx / "d/f")
    os.symlink(secret, ctx / "d/f")
    dst = tmp_path / "root"
    dst.mkdir()
    with pytest.raises(CopyError, match=r"changed during the build|replaced"):
        copy_into(sel, dst, "/t/", workdir="/", owner=None, chmod=None, parents=False, unpack_archives=False,
                  link=False)
    assert not any(p.is_file() and p.read_text() == "host secret" for p in dst.rglob("*"))
    with pytest.raises(CopyError):
        sel.cache_digest(dest="/t/")


def test_passwd_that_is_a_fifo_or_directory_does_not_hang(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    os.mkfifo(rootfs / "etc/passwd")
    (rootfs / "etc/group").mkdir()
    with pytest.raises(CopyError, match="unable to find user app"):
        resolve_owner(parse_chown("app"), rootfs)
    with pytest.raises(CopyError, match="unable to find group staff"):
        resolve_owner(parse_chown("0:staff"), rootfs)


# -- the record a copy keeps for the next one (PreviousCopy) --------------------------------------

def _digests(ctx: Path) -> HashCache:
    cache = HashCache(racy_ns=0)
    for path in ctx.rglob("*"):
        if path.is_file():
            cache.put(path.lstat(), hashlib.sha256(path.read_bytes()).hexdigest())
    return cache


def test_the_record_names_each_plain_file_and_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    for name in ("a", "b", "d/c"):
        (ctx / name).write_text(name)
    os.chmod(ctx / "b", 0o600)
    cache = _digests(ctx)
    record: dict[str, list[object]] = {}
    with select_sources(ctx, ["."], ignore=None).opened() as sel:
        copy_into(sel, _root(tmp_path, "one"), "/app/", digest_of=cache.get_for, record=record)
    st = (ctx / "b").stat()
    assert sorted(record) == ["app/a", "app/b", "app/d/c"]
    assert record["app/b"][1:] == [1, 0o600, 0, 0, st.st_mtime_ns]
    monkeypatch.setattr(PreviousCopy, "MAX_FILES", 2)
    record.clear()
    with select_sources(ctx, ["."], ignore=None).opened() as sel:
        copy_into(sel, _root(tmp_path, "two"), "/app/", digest_of=cache.get_for, record=record)
    assert record == {}
    assert (tmp_path / "two" / "app" / "d" / "c").read_text() == "d/c"    # the copy itself is whole


def _root(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    return root


def test_a_path_two_sources_write_keeps_the_record_of_the_last(tmp_path: Path) -> None:
    """The later source replaces the earlier one's file; a record of the earlier one must not
    stay behind for it (it would let a later copy link a file that is not the one recorded)."""
    ctx = tmp_path / "ctx"
    for d in ("one", "two"):
        (ctx / d).mkdir(parents=True)
        (ctx / d / "f").write_text("same size " + d)
        os.utime(ctx / d / "f", (1_600_000_000, 1_600_000_000))
    os.setxattr(ctx / "two" / "f", "user.kept", b"1")     # a file with xattrs has no record
    cache = _digests(ctx)
    record: dict[str, list[object]] = {}
    with select_sources(ctx, ["one/f", "two/f"], ignore=None).opened() as sel:
        copy_into(sel, _root(tmp_path, "out"), "/dst/", digest_of=cache.get_for, record=record)
    assert (tmp_path / "out" / "dst" / "f").read_text() == "same size two"
    assert record == {}


def _described(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: type, mode, owner, mtime, content or link target, and which
    other names share its inode."""
    by_inode: dict[int, list[str]] = {}
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            body = os.readlink(p) if stat.S_ISLNK(st.st_mode) else p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, body)
            if stat.S_ISREG(st.st_mode):
                by_inode.setdefault(st.st_ino, []).append(rel)
    groups = {rel: tuple(sorted(names)) for names in by_inode.values() for rel in names}
    return {rel: desc + (groups.get(rel, ()),) for rel, desc in out.items()}


def _wide_tree(ctx: Path) -> Path:
    for d in range(30):
        for f in range(6):
            p = ctx / "src" / f"d{d}" / f"f{f}"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(os.urandom(100 + d * f))
            os.chmod(p, 0o600 + f)
            os.chown(p, 1000 + d, 2000 + f)
            os.utime(p, ns=(1_000_000_000 * d, 1_000_000_000 * (d + f)))
        os.utime(ctx / "src" / f"d{d}", ns=(5, 5_000_000_000 + d))
    os.link(ctx / "src/d3/f1", ctx / "src/d20/hard")     # a hardlink group across directories
    os.link(ctx / "src/d9/f0", ctx / "src/d9/zz")        # and one in a directory the writers have
    os.symlink("../d1/f1", ctx / "src/d2/link")
    (ctx / "src/d4/sub/deeper").mkdir(parents=True)
    (ctx / "src/d4/sub/deeper/g").write_text("nested\n")
    return ctx


@pytest.fixture
def writers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Copies with ``parallel`` go to the writer threads after their first window of files,
    however fast this disk is; the list counts the batches the threads wrote."""
    import builder.copy as copy_module

    batches: list[int] = []
    run = copy_module._run_batch

    def counted(fd: int, batch: list) -> None:
        batches.append(len(batch))
        run(fd, batch)

    monkeypatch.setattr(copy_module._Writers, "SLOW_NS", 0)
    monkeypatch.setattr(copy_module, "_run_batch", counted)
    return batches


def test_parallel_copy_writes_what_a_serial_copy_writes(tmp_path: Path, writers: list[int]) -> None:
    ctx = _wide_tree(tmp_path / "ctx")
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    serial.mkdir()
    parallel.mkdir()
    do_copy(ctx, serial, ["src/"], "/t/", owner=None)
    threads = __import__("threading").active_count()
    fds = len(os.listdir("/proc/self/fd"))
    do_copy(ctx, parallel, ["src/"], "/t/", parallel=True)
    assert len(writers) > 20          # the threads wrote most of it, a batch per directory
    made, expected = _described(parallel), _described(serial)
    del made["t"], expected["t"]                     # made by the copy now: its time is now
    assert made == expected
    assert (parallel / "t/d3/f1").stat().st_ino == (parallel / "t/d20/hard").stat().st_ino
    assert (parallel / "t/d9/f0").stat().st_ino == (parallel / "t/d9/zz").stat().st_ino
    # Its threads and descriptors are gone with it.
    assert __import__("threading").active_count() == threads and len(os.listdir("/proc/self/fd")) == fds


def test_parallel_copy_raises_a_writers_error_and_leaks_nothing(tmp_path: Path, writers: list[int]) -> None:
    ctx = _wide_tree(tmp_path / "ctx")
    dst = tmp_path / "root"
    (dst / "t/d25/f4").mkdir(parents=True)          # a directory where a file must go
    threads = __import__("threading").active_count()
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(CopyError, match="cannot replace to directory '/t/d25/f4' with file"):
        do_copy(ctx, dst, ["src/"], "/t/", parallel=True)
    assert writers
    assert __import__("threading").active_count() == threads and len(os.listdir("/proc/self/fd")) == fds


def test_parallel_copy_later_source_wins(tmp_path: Path, writers: list[int]) -> None:
    # Two sources with the same names: the second's files replace the first's, as one at a time
    # (the first source's directory of big files is still being written when the second source's
    # copy reaches it, unless the copy waits between sources).
    ctx = tmp_path / "ctx"
    for d in range(8):
        for f in range(6):
            p = ctx / "a" / f"d{d}" / f"f{f}"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"a")
    for src, size in (("a", 1 << 20), ("b", 10)):
        for f in range(16):
            p = ctx / src / "m" / f"f{f}"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(src.encode() * size)
    (ctx / "a" / "n").mkdir()
    (ctx / "a" / "n" / "last").write_bytes(b"a")
    dst = tmp_path / "root"
    dst.mkdir()
    do_copy(ctx, dst, ["a/", "b/"], "/t/", parallel=True)
    assert writers
    assert {p.read_bytes() for p in (dst / "t" / "m").iterdir()} == {b"b" * 10}


def test_writer_threads_take_over_only_once_files_are_slow_to_make() -> None:
    from builder.copy import _Writers

    w = _Writers()
    for _ in range(3 * _Writers.WINDOW):          # a quick file system: stays in line
        w.took(_Writers.SLOW_NS // 3)
        assert not w.wanted()
    for _ in range(_Writers.WINDOW - 1):          # a slow window: the threads take the rest
        w.took(_Writers.SLOW_NS * 2)
    assert not w.wanted()
    w.took(_Writers.SLOW_NS * 2)
    assert w.wanted()
    w.close()


def test_parallel_copy_of_one_big_directory(tmp_path: Path, writers: list[int]) -> None:
    # 600 files in one directory: several batches of at most _BATCH files, the same result.
    from builder.copy import _Writers

    ctx = tmp_path / "ctx"
    (ctx / "big").mkdir(parents=True)
    for i in range(600):
        (ctx / "big" / f"f{i:03d}").write_bytes(b"%d\n" % i)
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    serial.mkdir()
    parallel.mkdir()
    do_copy(ctx, serial, ["big/"], "/t/")
    do_copy(ctx, parallel, ["big/"], "/t/", parallel=True)
    assert len(writers) >= 2 and max(writers) <= _Writers._BATCH
    made, expected = _described(parallel), _described(serial)
    del made["t"], expected["t"]
    assert made == expected


@pytest.mark.parametrize("change", ["grows", "shrinks", "same size, new content"])
def test_a_file_that_changes_while_it_is_hashed_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            change: str) -> None:
    """The digest reads a file up to the size its stat gave and checks the stat after: a
    writer that gets in between (simulated: it writes as the first read starts) is caught,
    never hashed as the old content or half of the new."""
    import builder.copy as copy_module

    ctx = tree(tmp_path / "ctx", {"f.txt": "x" * 5000})
    selection = select_sources(ctx, ["f.txt"], ignore=None)
    real_read = os.read
    target = ctx / "f.txt"
    done = []

    def racing_read(fd: int, n: int) -> bytes:
        if not done:
            done.append(True)
            time.sleep(0.01)      # a new mtime and ctime, whatever the clock's resolution
            with open(target, "r+b") as f:
                if change == "grows":
                    f.seek(0, 2)
                    f.write(b"more")
                elif change == "shrinks":
                    f.truncate(100)
                else:
                    f.write(b"y" * 5000)
        return real_read(fd, n)

    monkeypatch.setattr(copy_module.os, "read", racing_read)
    with pytest.raises(CopyError, match="changed while it was being read"):
        selection.cache_digest(dest="/", hash_cache=None)
