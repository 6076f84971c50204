"""``ADD <git ref>``: a real repository (made with the system git) served over git's dumb HTTP
protocol by an aiohttp server on loopback, built through the CLI.

The Dockerfile reference's git sources: ``ADD https://host/repo.git[#ref[:subdir]] <dir>``
copies the tree of the ref (a branch, a tag, a commit; HEAD without one) without its ``.git``
unless ``--keep-git-dir=true``; ``--checksum`` is a prefix of the commit id. The step is keyed
by the resolved commit, so a rebuild fetches no objects. A hostile repository (symlinks out of
it, a subdir that is a link to the host's /etc, a tree larger than the limit) changes nothing
outside the destination.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from storage.layout import ImageLayout
from storage.reference import parse_reference
from tests.cli.conftest import run_hoist
from tests.cli.helpers import Hoist
from tests.images import busybox_image
from tests.peers import need_tool
from tests.registry.faults import serve_on_loopback


def _git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@x", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
               GIT_AUTHOR_DATE="2020-01-01T00:00:00Z", GIT_COMMITTER_DATE="2020-01-01T00:00:00Z")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


class Repo:
    def __init__(self, base: Path) -> None:
        need_tool("git", "git")
        work = base / "work"
        work.mkdir(parents=True)
        _git(work, "init", "-q", "-b", "main")
        (work / "README").write_text("first\n")
        (work / "src").mkdir()
        (work / "src" / "app.txt").write_text("app\n")
        (work / "run.sh").write_text("#!/bin/sh\necho run\n")
        os.chmod(work / "run.sh", 0o755)
        os.symlink("../../../../etc/passwd", work / "climb")
        os.symlink("/etc/shadow", work / "absolute")
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", "one")
        _git(work, "tag", "-a", "v1", "-m", "v1")
        self.first = _git(work, "rev-parse", "HEAD")
        (work / "README").write_text("second\n")
        _git(work, "commit", "-q", "-am", "two")
        self.second = _git(work, "rev-parse", "HEAD")
        _git(work, "checkout", "-q", "-b", "feature")
        (work / "sub").mkdir()
        (work / "sub" / "only.txt").write_text("feature\n")
        os.symlink("/etc", work / "hostetc")
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", "feature")
        _git(work, "checkout", "-q", "-b", "big", "main")
        (work / "big.bin").write_bytes(os.urandom(256 << 10))
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", "big")
        _git(work, "checkout", "-q", "-b", "zeros", "main")
        (work / "zeros.bin").write_bytes(bytes(4 << 20))   # compresses to almost nothing
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", "zeros")
        self.served = base / "srv"
        self.served.mkdir()
        lib = base / "lib"
        lib.mkdir()
        _git(lib, "init", "-q", "-b", "main")
        (lib / "lib.txt").write_text("from the submodule\n")
        _git(lib, "add", "-A")
        _git(lib, "commit", "-q", "-m", "lib")
        _git(base, "clone", "-q", "--bare", str(lib), str(self.served / "lib.git"))
        _git(self.served / "lib.git", "update-server-info")
        _git(work, "checkout", "-q", "-b", "withsub", "main")
        _git(work, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(self.served / "lib.git"), "vendor/lib")
        # The URL the repository names, relative to its own (so it is the served lib.git).
        (work / ".gitmodules").write_text('[submodule "vendor/lib"]\n\tpath = vendor/lib\n\turl = ../lib.git\n')
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", "withsub")
        _git(work, "checkout", "-q", "main")
        _git(base, "clone", "-q", "--bare", str(work), str(self.served / "repo.git"))
        _git(self.served / "repo.git", "update-server-info")
        self.hits: Counter[str] = Counter()

    def app(self) -> web.Application:
        @web.middleware
        async def count(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
            self.hits["objects" if "/objects/" in request.path else request.path] += 1
            return await handler(request)

        app = web.Application(middlewares=[count])
        app.router.add_static("/", self.served)
        return app


@pytest.fixture
def h(tmp_path: Path) -> Hoist:
    hoist = Hoist(tmp_path)
    busybox_image(hoist.layout())
    return hoist


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[tuple[Repo, str]]:
    r = Repo(tmp_path / "git")
    async with serve_on_loopback(r.app()) as addr:
        yield r, f"http://{addr}/repo.git"


def _ctx(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _layer(h: Hoist, ref: str, index: int = -1) -> dict[str, tarfile.TarInfo | bytes]:
    layout = ImageLayout(h.images)
    _, manifest = layout.resolve_image(str(parse_reference(ref)))
    raw = layout.read_blob(manifest.layers[index].digest)
    out: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
        for info in tar:
            out[info.name] = info
            if info.isfile():
                f = tar.extractfile(info)
                assert f is not None
                out[info.name + ":data"] = f.read()
    return out


def _info(entries: dict[str, tarfile.TarInfo | bytes], name: str) -> tarfile.TarInfo:
    info = entries[name]
    assert isinstance(info, tarfile.TarInfo)
    return info


async def test_branch_tag_commit_and_subdir(h: Hoist, tmp_path: Path, repo: tuple[Repo, str]) -> None:
    r, url = repo
    ctx = _ctx(tmp_path, f"FROM busybox\nADD {url} /src\nADD {url}#v1 /v1/\nADD {url}#{r.first} /c\n"
                         f"ADD {url}#feature:sub /f\n")
    await run_hoist(h, "build", "-t", "g:1", str(ctx))
    head = _layer(h, "g:1", -4)
    names = {n for n in head if not n.endswith(":data")}
    assert names == {"src", "src/README", "src/src", "src/src/app.txt", "src/run.sh", "src/climb", "src/absolute"}
    assert head["src/README:data"] == b"second\n"
    assert _info(head, "src/run.sh").mode & 0o777 == 0o755
    assert _info(head, "src/README").mode & 0o777 == 0o644
    # Links are copied as links, their targets as written (never followed to the host).
    assert _info(head, "src/climb").issym() and _info(head, "src/climb").linkname == "../../../../etc/passwd"
    assert _info(head, "src/absolute").linkname == "/etc/shadow"
    assert _layer(h, "g:1", -3)["v1/README:data"] == b"first\n"      # an annotated tag, peeled
    assert _layer(h, "g:1", -2)["c/README:data"] == b"first\n"       # a commit id
    sub = _layer(h, "g:1", -1)
    assert {n for n in sub if not n.endswith(":data")} == {"f", "f/only.txt"}


async def test_keep_git_dir_checksum_and_cache(h: Hoist, tmp_path: Path, repo: tuple[Repo, str]) -> None:
    r, url = repo
    ctx = _ctx(tmp_path, f"FROM busybox\nADD --keep-git-dir=true --checksum={r.second[:12]} {url}#main /k\n")
    await run_hoist(h, "build", "-t", "k:1", str(ctx))
    top = _layer(h, "k:1")
    assert "k/.git/HEAD" in top and top["k/README:data"] == b"second\n"
    fetched = r.hits["objects"]
    assert fetched > 0
    # Keyed by the resolved commit: the rebuild asks for the refs only, no objects.
    again = await run_hoist(h, "build", "-t", "k:2", str(ctx))
    assert "CACHED" in again.err and r.hits["objects"] == fetched
    # Without --keep-git-dir the .git directory is dropped.
    ctx2 = _ctx(tmp_path, f"FROM busybox\nADD {url}#main /k\n")
    await run_hoist(h, "build", "-t", "k:3", str(ctx2))
    assert not any(n.startswith("k/.git") for n in _layer(h, "k:3"))


async def test_submodules(h: Hoist, tmp_path: Path, repo: tuple[Repo, str]) -> None:
    _, url = repo
    ctx = _ctx(tmp_path, f"FROM busybox\nADD {url}#withsub /w\nADD {url}?branch=withsub&submodules=false /n\n")
    await run_hoist(h, "build", "-t", "s:1", str(ctx))
    with_sub = _layer(h, "s:1", -2)
    assert with_sub["w/vendor/lib/lib.txt:data"] == b"from the submodule\n"
    assert not any(n.endswith(".git") or "/.git/" in n for n in with_sub), sorted(with_sub)
    without = _layer(h, "s:1", -1)
    assert "n/vendor/lib" in without and not any(n.startswith("n/vendor/lib/") for n in without)


async def test_bad_refs_and_checksums(h: Hoist, tmp_path: Path, repo: tuple[Repo, str]) -> None:
    r, url = repo
    wrong = r.first[:10]
    for line, message in ((f"ADD {url}#nope /x", "no ref 'nope' in the repository"),
                          (f"ADD --checksum={wrong} {url}#main /x",
                           f"expected checksum to match {wrong}, got {r.second}"),
                          (f"ADD --checksum=zz {url} /x", "expected hex commit hash"),
                          (f"ADD {url}#feature:hostetc /x", "not found"),
                          (f"ADD {url}#feature:missing /x", "not found"),
                          (f"COPY {url} /x", "source can't be a git ref for COPY")):
        ctx = _ctx(tmp_path, f"FROM busybox\n{line}\n")
        res = await run_hoist(h, "build", "-t", "bad:1", str(ctx), ok=False)
        last = res.err.strip().splitlines()[-1]
        assert res.code == 1 and last.startswith(f"{ctx}/Dockerfile:2: ") and message in last, last
    assert "bad:1" not in (await run_hoist(h, "images")).out
    scratch = h.root / "build" / "scratch"
    assert not scratch.exists() or not any(scratch.iterdir())


async def test_a_tree_over_the_limit_is_refused(h: Hoist, tmp_path: Path, repo: tuple[Repo, str]) -> None:
    _, url = repo
    h.env["HOIST_UNPACK_MAX_BYTES"] = str(64 << 10)
    # Incompressible: the fetch itself is stopped at the limit. Compressible (a small pack of a
    # 4 MiB tree): refused by the tree's size before anything is checked out.
    for branch, message in (("big", "the repository is larger than the 65536 bytes allowed"),
                            ("zeros", "is larger than the 65536 bytes allowed")):
        ctx = _ctx(tmp_path, f"FROM busybox\nADD {url}#{branch} /b\n")
        res = await run_hoist(h, "build", "-t", "big:1", str(ctx), ok=False)
        last = res.err.strip().splitlines()[-1]
        assert res.code == 1 and message in last, last
        if branch == "zeros":
            assert "the tree of" in last
    scratch = h.root / "build" / "scratch"
    assert not scratch.exists() or not any(scratch.iterdir())


def test_git_daemon_protocol(h: Hoist, tmp_path: Path) -> None:
    """git:// from ``git daemon`` on loopback: the same source through git's own protocol."""
    from tests.peers import free_port, stop_process, wait_for_port

    r = Repo(tmp_path / "git")
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
                               f"--port={port}", f"--base-path={r.served}", str(r.served)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=daemon)
        ctx = _ctx(tmp_path, f"FROM busybox\nADD git://127.0.0.1:{port}/repo.git#v1 /d\n")
        h("build", "-t", "d:1", str(ctx))
    finally:
        stop_process(daemon)
    assert _layer(h, "d:1")["d/README:data"] == b"first\n"
    shutil.rmtree(r.served)
