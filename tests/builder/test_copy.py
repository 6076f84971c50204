"""COPY/ADD engine: sources, destinations, --chown/--chmod, archives, cache digests (real trees)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from builder.context import ContextError, load_context
from builder.copy import (CopyError, copy_into, parse_chmod, parse_chown, resolve_owner, select_sources)


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
