"""``ADD https://...``: downloads from a real aiohttp server on loopback, through the CLI.

What BuildKit's HTTP source does (source/http, dockerfile2llb): the file is named after the
URL's path, written 0600 for root with the ``Last-Modified`` time (the epoch without one), not
extracted, ``--chmod``/``--chown`` applied; ``--checksum`` is verified and keys the step without a
download; redirects are followed between http(s) URLs only; a bad status, a mismatch or an
endless body fail the build naming the line, leaving nothing tagged and no download behind.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import tarfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from storage.layout import ImageLayout
from storage.reference import parse_reference
from tests.cli.conftest import run_hoist
from tests.cli.helpers import Hoist
from tests.images import busybox_image
from tests.registry.faults import serve_on_loopback

HELLO = b"hello from the web\n"
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
LAST_MODIFIED_TS = 1445412480


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Site:
    """The test server's files, and how often each path was asked for."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"hello.txt": HELLO, "other.txt": b"other\n",
                                        "a.tar": _tar({"inside.txt": b"packed\n"})}
        self.hits: Counter[str] = Counter()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/tagged/{name}", self.tagged)
        app.router.add_get("/files/{name:.*}", self.file)
        app.router.add_get("/redir/{name}", self.redirect)
        app.router.add_get("/tofile", self.to_file)
        app.router.add_get("/loop", self.loop)
        app.router.add_get("/endless", self.endless)
        app.router.add_get("/{tail:.*}", self.anything)
        return app

    async def file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] += 1
        if name not in self.files:
            raise web.HTTPNotFound()
        headers = {"Last-Modified": LAST_MODIFIED} if name == "hello.txt" else {}
        return web.Response(body=self.files[name], headers=headers)

    async def tagged(self, request: web.Request) -> web.Response:
        """A file with an ETag (its content's hash) that answers If-None-Match with 304."""
        data = self.files[request.match_info["name"]]
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            self.hits["304"] += 1
            return web.Response(status=304, headers={"ETag": etag})
        self.hits["200"] += 1
        return web.Response(body=data, headers={"ETag": etag})

    async def anything(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        return web.Response(body=b"anything\n")

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/files/{request.match_info['name']}")

    async def to_file(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("file:///etc/passwd")

    async def loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def endless(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        block = b"\xa5" * (64 << 10)
        try:
            while True:
                await resp.write(block)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp


@pytest.fixture
def h(tmp_path: Path) -> Hoist:
    hoist = Hoist(tmp_path)
    busybox_image(hoist.layout())
    return hoist


@pytest.fixture
async def site() -> AsyncIterator[tuple[Site, str]]:
    s = Site()
    async with serve_on_loopback(s.app()) as addr:
        yield s, f"http://{addr}"


def _ctx(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (ctx / name).write_text(text)
    return ctx


def _top_layer(h: Hoist, ref: str) -> dict[str, tarfile.TarInfo | bytes]:
    """The entries of the image's last layer: name -> TarInfo, and "name:data" -> its bytes."""
    layout = ImageLayout(h.images)
    _, manifest = layout.resolve_image(str(parse_reference(ref)))
    raw = layout.read_blob(manifest.layers[-1].digest)
    out: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
        for info in tar:
            out[info.name] = info
            if info.isfile():
                f = tar.extractfile(info)
                assert f is not None
                out[info.name + ":data"] = f.read()
    return out


def _scratch_empty(h: Hoist) -> bool:
    scratch = h.root / "build" / "scratch"
    return not scratch.exists() or not any(scratch.iterdir())


async def test_plain_download_mode_owner_mtime(h: Hoist, tmp_path: Path, site: tuple[Site, str]) -> None:
    s, base = site
    ctx = _ctx(tmp_path, f"FROM busybox\nADD {base}/files/hello.txt /d/\n"
                         f"ADD --chmod=644 --chown=1:2 {base}/files/other.txt /x/renamed\n"
                         f"ADD {base}/files/a.tar /t/\n")
    await run_hoist(h, "build", "-t", "u:1", str(ctx))
    layout = ImageLayout(h.images)
    _, manifest = layout.resolve_image(str(parse_reference("u:1")))
    layers = manifest.layers
    # The first ADD's layer: one file, 0600, root's, the server's Last-Modified.
    entries: dict[str, tarfile.TarInfo] = {}
    data = b""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layout.read_blob(layers[-3].digest)))) as tar:
        for info in tar:
            entries[info.name] = info
            if info.name == "d/hello.txt":
                f = tar.extractfile(info)
                assert f is not None
                data = f.read()
    info = entries["d/hello.txt"]
    assert data == HELLO
    assert (info.mode & 0o7777, info.uid, info.gid) == (0o600, 0, 0)
    assert info.mtime == LAST_MODIFIED_TS
    # A destination that is a file path names the file; --chmod and --chown apply; no
    # Last-Modified: the epoch.
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layout.read_blob(layers[-2].digest)))) as tar:
        renamed = tar.getmember("x/renamed")
    assert (renamed.mode & 0o7777, renamed.uid, renamed.gid, renamed.mtime) == (0o644, 1, 2, 0)
    # A remote tar is not extracted.
    top = _top_layer(h, "u:1")
    assert "t/a.tar" in top and "t/inside.txt" not in top
    assert _scratch_empty(h)


async def test_unpack_true_extracts_a_remote_tar(h: Hoist, tmp_path: Path, site: tuple[Site, str]) -> None:
    _, base = site
    ctx = _ctx(tmp_path, f"FROM busybox\nADD --unpack=true {base}/files/a.tar /t/\n")
    await run_hoist(h, "build", "-t", "u:2", str(ctx))
    top = _top_layer(h, "u:2")
    assert top["t/inside.txt:data"] == b"packed\n" and "t/a.tar" not in top


async def test_checksum_ok_and_a_rebuild_downloads_nothing(h: Hoist, tmp_path: Path,
                                                           site: tuple[Site, str]) -> None:
    s, base = site
    digest = "sha256:" + hashlib.sha256(HELLO).hexdigest()
    ctx = _ctx(tmp_path, f"FROM busybox\nADD --checksum={digest} {base}/files/hello.txt /d/\n")
    await run_hoist(h, "build", "-t", "c:1", str(ctx))
    assert s.hits["hello.txt"] == 1
    again = await run_hoist(h, "build", "-t", "c:2", str(ctx))
    assert "CACHED" in again.err
    assert s.hits["hello.txt"] == 1   # keyed by the checksum: no request at all
    # sha512 is verified in its own algorithm.
    sha512 = "sha512:" + hashlib.sha512(HELLO).hexdigest()
    ctx512 = _ctx(tmp_path, f"FROM busybox\nADD --checksum={sha512} {base}/files/hello.txt /d/\n")
    await run_hoist(h, "build", "-t", "c:3", str(ctx512))
    assert _top_layer(h, "c:3")["d/hello.txt:data"] == HELLO


async def test_checksum_mismatch_fails_naming_the_line(h: Hoist, tmp_path: Path, site: tuple[Site, str]) -> None:
    _, base = site
    wrong = "sha256:" + "0" * 64
    ctx = _ctx(tmp_path, f"FROM busybox\nRUN true\nADD --checksum={wrong} {base}/files/hello.txt /d/\n")
    r = await run_hoist(h, "build", "-t", "bad:1", str(ctx), ok=False)
    last = r.err.strip().splitlines()[-1]
    assert r.code == 1 and last.startswith(f"{ctx}/Dockerfile:3: digest mismatch for {base}/files/hello.txt: ")
    assert f"(expected: {wrong})" in last
    assert "bad:1" not in (await run_hoist(h, "images")).out
    assert _scratch_empty(h)


async def test_not_found_and_bad_redirects(h: Hoist, tmp_path: Path, site: tuple[Site, str]) -> None:
    _, base = site
    for path, message in (("files/missing", "invalid response status 404"),
                          ("tofile", "refusing to follow a redirect to 'file:///etc/passwd'"),
                          ("loop", "stopped after 10 redirects")):
        ctx = _ctx(tmp_path, f"FROM busybox\nADD {base}/{path} /d/\n")
        r = await run_hoist(h, "build", "-t", "nf:1", str(ctx), ok=False)
        last = r.err.strip().splitlines()[-1]
        assert r.code == 1 and last.startswith(f"{ctx}/Dockerfile:2: ") and message in last, last
    assert "nf:1" not in (await run_hoist(h, "images")).out
    assert _scratch_empty(h)


async def test_redirect_followed_name_from_the_url(h: Hoist, tmp_path: Path, site: tuple[Site, str]) -> None:
    _, base = site
    ctx = _ctx(tmp_path, f"FROM busybox\nADD {base}/redir/hello.txt /d/alias/\n")
    await run_hoist(h, "build", "-t", "r:1", str(ctx))
    assert _top_layer(h, "r:1")["d/alias/hello.txt:data"] == HELLO


async def test_endless_body_stops_at_the_limit(h: Hoist, tmp_path: Path, site: tuple[Site, str]) -> None:
    _, base = site
    ctx = _ctx(tmp_path, f"FROM busybox\nADD {base}/endless /d/\n")
    h.env["HOIST_UNPACK_MAX_BYTES"] = str(1 << 20)
    r = await run_hoist(h, "build", "-t", "e:1", str(ctx), ok=False)
    last = r.err.strip().splitlines()[-1]
    assert r.code == 1 and last.startswith(f"{ctx}/Dockerfile:2: ")
    assert "larger than the 1048576 bytes allowed" in last
    assert _scratch_empty(h)


async def test_url_among_several_sources(h: Hoist, tmp_path: Path, site: tuple[Site, str]) -> None:
    s, base = site
    ctx = _ctx(tmp_path, f"FROM busybox\nADD local.txt {base}/files/hello.txt <<inline /d/\nfrom heredoc\ninline\n",
               {"local.txt": "local\n"})
    await run_hoist(h, "build", "-t", "m:1", str(ctx))
    top = _top_layer(h, "m:1")
    assert top["d/local.txt:data"] == b"local\n" and top["d/hello.txt:data"] == HELLO
    assert top["d/inline:data"] == b"from heredoc\n"
    # Without a checksum the step is keyed by what was downloaded: a rebuild asks again and
    # hits the cache while the content is the same, and rebuilds when it changed.
    again = await run_hoist(h, "build", "-t", "m:2", str(ctx))
    assert "CACHED" in again.err and s.hits["hello.txt"] == 2
    s.files["hello.txt"] = b"changed\n"
    await run_hoist(h, "build", "-t", "m:3", str(ctx))
    assert _top_layer(h, "m:3")["d/hello.txt:data"] == b"changed\n"
    # Several sources need a directory destination.
    bad = _ctx(tmp_path, f"FROM busybox\nADD {base}/files/hello.txt {base}/files/other.txt /d\n")
    r = await run_hoist(h, "build", str(bad), ok=False)
    assert "the destination must be a directory and end with a /" in r.err.strip().splitlines()[-1]


async def test_hostile_url_names_stay_in_the_destination(h: Hoist, tmp_path: Path,
                                                         site: tuple[Site, str]) -> None:
    s, base = site
    ctx = _ctx(tmp_path, f"FROM busybox\nADD {base}/..%2F..%2Fescape {base}/%2e%2e /d/\n")
    await run_hoist(h, "build", "-t", "n:1", str(ctx))
    top = _top_layer(h, "n:1")
    names = {n for n in top if not n.endswith(":data")}
    assert names == {"d", "d/escape", "d/__unnamed__"}, names


async def test_checks_before_anything_runs(h: Hoist, tmp_path: Path, site: tuple[Site, str]) -> None:
    _, base = site
    digest = "sha256:" + hashlib.sha256(HELLO).hexdigest()
    for line, message in ((f"COPY {base}/files/hello.txt /d/", "source can't be a URL for COPY"),
                          (f"ADD --checksum={digest} a.txt /d/", "checksum requires HTTP(S) or Git sources"),
                          (f"ADD --checksum={digest} {base}/a {base}/b /d/",
                           "checksum can't be specified for multiple sources"),
                          (f"ADD --checksum=md5:abc {base}/a /d/", "invalid checksum digest format")):
        ctx = _ctx(tmp_path, f"FROM busybox\nRUN echo ran\n{line}\n", {"a.txt": "a"})
        r = await run_hoist(h, "build", str(ctx), ok=False)
        assert r.code == 1 and f"Dockerfile:3: {message}" in r.err, r.err
        assert "ran" not in r.err


async def test_no_context_needed(h: Hoist, site: tuple[Site, str]) -> None:
    """A Dockerfile on stdin (no context) can ADD a URL: nothing of the context is read."""
    _, base = site
    await run_hoist(h, "build", "-t", "stdin:1", "-", stdin=f"FROM busybox\nADD {base}/files/hello.txt /d/\n".encode())
    assert _top_layer(h, "stdin:1")["d/hello.txt:data"] == HELLO


async def test_etag_revalidation_downloads_nothing_when_unchanged(h: Hoist, tmp_path: Path,
                                                                 site: tuple[Site, str]) -> None:
    """BuildKit's If-None-Match: a rebuild asks with the ETag it saw; a 304 keys the step by the
    content recorded then (CACHED, no body sent); a changed file is downloaded and rebuilt."""
    s, base = site
    ctx = _ctx(tmp_path, f"FROM busybox\nADD {base}/tagged/hello.txt /d/\n")
    await run_hoist(h, "build", "-t", "t:1", str(ctx))
    assert (s.hits["200"], s.hits["304"]) == (1, 0)
    again = await run_hoist(h, "build", "-t", "t:2", str(ctx))
    assert "CACHED" in again.err and (s.hits["200"], s.hits["304"]) == (1, 1)
    # 304 but the step is not in the cache (another parent): downloaded unconditionally.
    (tmp_path / "o").mkdir()
    other = _ctx(tmp_path / "o", f"FROM busybox\nRUN true\nADD {base}/tagged/hello.txt /d/\n")
    await run_hoist(h, "build", "-t", "t:3", str(other))
    assert (s.hits["200"], s.hits["304"]) == (2, 2)
    assert _top_layer(h, "t:3")["d/hello.txt:data"] == HELLO
    s.files["hello.txt"] = b"new content\n"
    await run_hoist(h, "build", "-t", "t:4", str(ctx))
    assert (s.hits["200"], s.hits["304"]) == (3, 2)
    assert _top_layer(h, "t:4")["d/hello.txt:data"] == b"new content\n"
