"""``ADD <url>`` built by BuildKit (Debian's docker 20.10, ``DOCKER_BUILDKIT=1``, the spec) and by
``hoist build`` from one aiohttp server on loopback, compared as flattened root filesystems
(tests/builder/differential.py) plus the mtimes of the downloaded files (the normal form leaves
times out; BuildKit's HTTP source sets them from Last-Modified, or the epoch without one).
"""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.builder.differential import (
    BuildKit,
    Hoist,
    _decompress,
    compare,
    normalise,
    read_archive,
    read_layout,
    write_base_archive,
)
from tests.peers import Dockerd
from tests.registry.faults import serve_on_loopback

HELLO = b"hello from the web\n"
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


FILES = {"hello.txt": HELLO, "other.txt": b"other\n", "a.tar": _tar({"inside.txt": b"packed\n"})}


def _app() -> web.Application:
    async def file(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in FILES:
            raise web.HTTPNotFound()
        headers = {"Last-Modified": LAST_MODIFIED} if name == "hello.txt" else {}
        return web.Response(body=FILES[name], headers=headers)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/files/{request.match_info['name']}")

    app = web.Application()
    app.router.add_get("/files/{name}", file)
    app.router.add_get("/redir/{name}", redirect)
    return app


@pytest.fixture(scope="module")
def peers(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BuildKit, Hoist, Path]]:
    work = tmp_path_factory.mktemp("add-url-differential")
    archive = write_base_archive(work / "base.tar")
    buildkit = BuildKit(dockerd.socket, dockerd.base / "client-config", dockerd.docker)
    buildkit.load_base(archive)
    (work / "hoist").mkdir()
    hoist = Hoist(work / "hoist")
    hoist.load_base(archive)
    yield buildkit, hoist, work


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async with serve_on_loopback(_app()) as addr:
        yield f"http://{addr}"


def _mtimes(layers: list[bytes], names: set[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for layer in layers:
        with tarfile.open(fileobj=io.BytesIO(_decompress(layer))) as tar:
            for info in tar:
                name = info.name.lstrip("./")
                if name in names:
                    out[name] = int(info.mtime)
    return out


async def test_add_url_matches_buildkit(peers: tuple[BuildKit, Hoist, Path], site: str) -> None:
    buildkit, hoist, work = peers
    ctx = work / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(
        "FROM busybox:hoist-test\n"
        f"ADD {site}/files/hello.txt /d/\n"
        f"ADD {site}/files/other.txt /x/renamed\n"
        f"ADD --chown=1001:50 {site}/files/hello.txt /owned/\n"
        f"ADD {site}/files/a.tar /t/\n"
        f"ADD {site}/redir/hello.txt /r/\n"
        f"ADD {site}/files/hello.txt {site}/files/other.txt /many/\n")
    out = work / "out"
    out.mkdir(exist_ok=True)
    await asyncio.to_thread(buildkit.build_only, ctx, tag="addurl:buildkit")
    spec_archive = out / "buildkit.tar"
    await asyncio.to_thread(buildkit_save, buildkit, "addurl:buildkit", spec_archive)
    spec_config, spec_layers = read_archive(spec_archive)
    await asyncio.to_thread(hoist.build_only, ctx, tag="addurl:hoist")
    ours_config, ours_layers = read_layout(hoist.root / "images", "addurl:hoist")
    spec, ours = normalise(spec_config, spec_layers), normalise(ours_config, ours_layers)
    diffs = compare(spec, ours, other_name="hoist", history_rewrites={
        # current BuildKit's dispatchCopy writes --chown= before the sources; 20.10's did not.
        f"ADD {site}/files/hello.txt /owned/ # buildkit": f"ADD --chown=1001:50 {site}/files/hello.txt /owned/ # buildkit",
    })
    assert not diffs, "ADD <url> differs from BuildKit:\n" + "\n".join(diffs)
    assert spec.rootfs["/d/hello.txt"].mode & 0o7777 == 0o600      # the spec, checked itself
    names = {"d/hello.txt", "x/renamed", "owned/hello.txt", "t/a.tar", "r/hello.txt", "many/other.txt"}
    assert _mtimes(ours_layers, names) == _mtimes(spec_layers, names)


def buildkit_save(buildkit: BuildKit, tag: str, out: Path) -> None:
    import os
    import subprocess

    subprocess.run([buildkit.docker, "save", "-o", str(out), tag], check=True, capture_output=True,
                   env=dict(os.environ, **buildkit.env), timeout=300)
