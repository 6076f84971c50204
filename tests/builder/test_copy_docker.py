"""Differential: COPY/ADD done by docker 20.10's BuildKit and by builder/copy.py give the same tree.

Each case is a list of COPY/ADD steps run from ``FROM scratch`` on the same context; docker's
result is read back with ``docker export``, ours is a directory that ``copy_into`` wrote. Both are
compared on paths, types, modes, owners, link targets, hard-link groups, contents and (for
non-directories) mtimes, under ``/t``. Left out, where hoist follows the issue or current BuildKit
rather than docker 20.10: a wildcard that matches nothing (20.10 copies nothing, hoist reports
it) and ``ADD --chown`` of an archive (20.10 keeps the archive's owners, current BuildKit applies
the owner; see test_copy.py).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import stat
import tarfile
from pathlib import Path

import pytest

from builder.context import load_context
from builder.copy import copy_into, parse_chmod, parse_chown, resolve_owner, select_sources
from tests.peers import Dockerd

MTIME = 1_600_000_000
_BUILDS = itertools.count()

Step = tuple[str, list[str], str, dict[str, str]]


def make_context(ctx: Path) -> None:
    def f(rel: str, data: str | bytes, mode: int = 0o644) -> None:
        p = ctx / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        p.chmod(mode)

    f("a.txt", "alpha\n")
    f("b.txt", "bravo\n", 0o600)
    f("run.sh", "#!/bin/sh\necho hi\n", 0o755)
    f("src/one", "1\n")
    f("src/deep/er/two", "2\n", 0o640)
    f("src/h1", "linked\n")
    os.link(ctx / "src/h1", ctx / "src/h2")
    os.symlink("one", ctx / "src/rel-link")
    os.symlink("/etc/passwd", ctx / "src/abs-link")
    os.symlink("missing", ctx / "src/dangling")
    os.symlink("src/deep", ctx / "dirlink")
    os.symlink("a.txt", ctx / "filelink")
    (ctx / "src/deep").chmod(0o750)
    (ctx / "src/empty").mkdir()
    (ctx / "src/empty").chmod(0o700)
    f("base/t/exist/inner/old", "old\n")
    (ctx / "base/t/exist").chmod(0o700)
    (ctx / "base/t/exist/inner").chmod(0o711)
    os.symlink("exist", ctx / "base/t/elink")
    f("over/inner/new", "new\n")
    f("users/etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
    f("users/etc/group", "root:x:0:\napp:x:1001:\nstaff:x:50:app\n")
    os.symlink("../nowhere/file", ctx / "users/dangling-dest")
    (ctx / "over/inner").chmod(0o755)
    f("secret.key", "nope\n")
    f("ign/drop.txt", "drop\n")
    f("ign/keep.txt", "keep\n")
    f(".dockerignore", "secret*\nign\n!ign/keep.txt\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, mode in (("pkg/bin/tool", b"tool\n", 0o755), ("pkg/README", b"readme\n", 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), mode, MTIME, 1000, 1000
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("pkg/lib")
        link.type, link.linkname, link.mtime = tarfile.SYMTYPE, "bin", MTIME
        tar.addfile(link)
    f("archive.bin", buf.getvalue())
    f("plain.gz", b"\x1f\x8bnot really gzip")
    for dirpath, dirnames, filenames in os.walk(ctx):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, (MTIME, MTIME), follow_symlinks=False)


CASES: dict[str, list[Step]] = {
    "files-dirs-links": [
        ("COPY", ["a.txt", "b.txt", "run.sh"], "/t/files/", {}),
        ("COPY", ["src"], "/t/src", {}),
        ("COPY", ["src/"], "/t/src2/", {}),
        ("COPY", ["filelink", "dirlink"], "/t/followed/", {}),
        ("COPY", ["a.txt"], "/t/renamed", {}),
        ("COPY", ["*.txt"], "/t/glob/", {}),
        ("COPY", ["src/de*", "s?c/h[0-9]"], "/t/glob2/", {}),
        ("COPY", ["src/h*"], "/t/hl/", {}),
        ("COPY", ["../../a.txt"], "/t/clamped/", {}),
    ],
    "owners-modes": [
        ("COPY", ["src"], "/t/chown/x/y/", {"chown": "1234:5678"}),
        ("COPY", ["a.txt"], "/t/chown1/", {"chown": "42"}),
        ("COPY", ["src"], "/t/chmod/", {"chmod": "640"}),
        ("COPY", ["run.sh"], "/t/chmod1", {"chmod": "0700", "chown": "7:9"}),
    ],
    "existing-tree": [
        ("COPY", ["base/"], "/", {"chown": "5:5"}),
        ("COPY", ["over/"], "/t/exist/", {}),
        ("COPY", ["a.txt"], "/t/elink/", {}),
        ("COPY", ["b.txt"], "/t/exist/inner/old", {}),
    ],
    "dockerignore-and-context-root": [
        ("COPY", ["ign"], "/t/ign/", {}),
        ("COPY", ["."], "/t/all/", {}),
    ],
    "chown-names": [
        ("COPY", ["users/"], "/", {}),
        ("COPY", ["src"], "/t/n/", {"chown": "app"}),
        ("COPY", ["a.txt"], "/t/n2/", {"chown": "app:staff"}),
        ("COPY", ["a.txt"], "/t/n3/deep/", {"chown": "app:50"}),
        ("COPY", ["b.txt"], "/t/n4", {"chown": "0:staff"}),
    ],
    "dangling-dest-link": [
        ("COPY", ["users/"], "/t/", {}),
        ("COPY", ["a.txt"], "/t/dangling-dest", {}),
    ],
    "add-archives": [
        ("ADD", ["archive.bin"], "/t/x", {}),
        ("ADD", ["archive.bin"], "/t/y/", {}),
        ("ADD", ["plain.gz", "a.txt"], "/t/z/", {}),
        ("COPY", ["base/t/"], "/t/merge/", {}),
        ("ADD", ["archive.bin"], "/t/merge/", {}),
        ("ADD", ["archive.bin"], "/t/merge/exist/", {}),
    ],
}


def dockerfile(steps: list[Step]) -> str:
    lines = ["FROM scratch"]
    for kind, sources, dest, flags in steps:
        opts = "".join(f" --{k}={v}" for k, v in flags.items())
        lines.append(f"{kind}{opts} {' '.join(sources)} {dest}")
    return "\n".join(lines) + "\n"


def describe_tar(data: bytes, prefix: str = "t") -> tuple[dict[str, tuple], set[frozenset[str]]]:
    entries: dict[str, tuple] = {}
    groups: dict[str, set[str]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        by_name = {m.name.rstrip("/"): m for m in members}
        for m in members:
            name = m.name.rstrip("/")
            if name != prefix and not name.startswith(prefix + "/"):
                continue
            if m.islnk():
                target = by_name[m.linkname.rstrip("/")]
                groups.setdefault(target.name, {target.name}).add(name)
                m2 = target
            else:
                m2 = m
            if m2.isdir():
                entries[name] = ("dir", m2.mode & 0o7777, m2.uid, m2.gid)
            elif m2.issym():
                entries[name] = ("symlink", m2.linkname, m2.uid, m2.gid, int(m2.mtime))
            elif m2.isreg():
                f = tar.extractfile(m2)
                assert f is not None
                entries[name] = ("file", m2.mode & 0o7777, m2.uid, m2.gid, int(m2.mtime),
                                 hashlib.sha256(f.read()).hexdigest())
    return entries, {frozenset(g) for g in groups.values()}


def describe_tree(root: Path, prefix: str = "t") -> tuple[dict[str, tuple], set[frozenset[str]]]:
    entries: dict[str, tuple] = {}
    inodes: dict[int, set[str]] = {}
    base = root / prefix
    paths = [base] + [Path(d) / n for d, ds, fs in os.walk(base) for n in ds + fs]
    for p in paths:
        name = str(p.relative_to(root))
        st = p.lstat()
        if stat.S_ISDIR(st.st_mode):
            entries[name] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        elif stat.S_ISLNK(st.st_mode):
            entries[name] = ("symlink", os.readlink(p), st.st_uid, st.st_gid, int(st.st_mtime))
        else:
            entries[name] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime),
                             hashlib.sha256(p.read_bytes()).hexdigest())
            if st.st_nlink > 1:
                inodes.setdefault(st.st_ino, set()).add(name)
    return entries, {frozenset(g) for g in inodes.values() if len(g) > 1}


def hoist_copy(ctx: Path, root: Path, steps: list[Step]) -> None:
    context = load_context(ctx, None)
    for kind, sources, dest, flags in steps:
        sel = select_sources(ctx, sources, ignore=context.ignore)
        owner = resolve_owner(parse_chown(flags["chown"]), root) if "chown" in flags else None
        chmod = parse_chmod(flags["chmod"]) if "chmod" in flags else None
        copy_into(sel, root, dest, workdir="/", owner=owner, chmod=chmod, parents=False,
                  unpack_archives=kind == "ADD", link=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (dockerd, chown)")
@pytest.mark.parametrize("case", sorted(CASES))
def test_copy_matches_buildkit(case: str, dockerd: Dockerd, tmp_path: Path) -> None:
    steps = CASES[case]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    make_context(ctx)
    (tmp_path / "Dockerfile").write_text(dockerfile(steps))
    tag = f"hoist-copy-diff:{next(_BUILDS)}"
    dockerd("build", "--network", "host", "-q", "-t", tag, "-f", str(tmp_path / "Dockerfile"), str(ctx),
            env={"DOCKER_BUILDKIT": "1"})
    container = dockerd("create", tag, "/none").stdout.decode().strip()
    try:
        exported = dockerd("export", container).stdout
    finally:
        dockerd("rm", container, check=False)
        dockerd("rmi", tag, check=False)
    root = tmp_path / "root"
    root.mkdir()
    hoist_copy(ctx, root, steps)
    theirs, their_links = describe_tar(exported)
    ours, our_links = describe_tree(root)
    assert ours == theirs
    assert our_links == their_links
