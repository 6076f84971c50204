"""hoist/fetch.py, the downloads of ``ADD <url>``, against an aiohttp server on loopback: an
endless body stops at the limit with memory flat and the partial file gone; gzip bombs are
counted by what is written; redirects are bounded and only to http(s)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import tracemalloc
from pathlib import Path

import pytest
from aiohttp import web

from builder.source import FetchError
from hoist.fetch import HttpFetcher
from tests.registry.faults import serve_on_loopback


async def _endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    block = b"\x5a" * (256 << 10)
    try:
        while True:
            await resp.write(block)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return resp


BOMB = gzip.compress(bytes(64 << 20), compresslevel=9)   # 64 MiB of zeros in ~64 KiB


async def _bomb(request: web.Request) -> web.Response:
    return web.Response(body=BOMB, headers={"Content-Encoding": "gzip"})


async def _ok(request: web.Request) -> web.Response:
    return web.Response(body=b"fine\n", headers={"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"})


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/endless", _endless)
    app.router.add_get("/bomb", _bomb)
    app.router.add_get("/ok", _ok)

    async def to_ftp(request: web.Request) -> web.Response:
        raise web.HTTPFound("ftp://127.0.0.1/x")

    async def relative(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("../ok")

    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "100000"})
        await resp.prepare(request)
        await resp.write(b"only the start")
        assert request.transport is not None
        request.transport.close()
        return resp

    app.router.add_get("/cut", cut)
    app.router.add_get("/to-ftp", to_ftp)
    app.router.add_get("/a/relative", relative)
    return app


async def test_endless_body_memory_and_disk_bounded(tmp_path: Path) -> None:
    limit = 48 << 20
    into = tmp_path / "dl"
    async with serve_on_loopback(_app()) as addr:
        tracemalloc.start()
        try:
            with pytest.raises(FetchError, match=f"larger than the {limit} bytes allowed"):
                await asyncio.to_thread(HttpFetcher().fetch, f"http://{addr}/endless", into, limit)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert not into.exists()                 # the partial file is removed
    assert peak < 16 << 20, peak             # 48 MiB went through; memory stayed a few buffers


async def test_a_compressed_bomb_is_counted_by_what_is_written(tmp_path: Path) -> None:
    async with serve_on_loopback(_app()) as addr:
        with pytest.raises(FetchError, match="larger than the 1048576 bytes allowed"):
            await asyncio.to_thread(HttpFetcher().fetch, f"http://{addr}/bomb", tmp_path / "b", 1 << 20)
    assert not (tmp_path / "b").exists()


async def test_redirects(tmp_path: Path) -> None:
    async with serve_on_loopback(_app()) as addr:
        got = await asyncio.to_thread(HttpFetcher().fetch, f"http://{addr}/a/relative", tmp_path / "r", 1 << 20)
        assert (tmp_path / "r").read_bytes() == b"fine\n"
        assert got.digest == "sha256:" + hashlib.sha256(b"fine\n").hexdigest() and got.size == 5
        assert got.last_modified == "Wed, 21 Oct 2015 07:28:00 GMT"
        assert (tmp_path / "r").stat().st_mode & 0o777 == 0o600
        with pytest.raises(FetchError, match="refusing to follow a redirect to 'ftp://"):
            await asyncio.to_thread(HttpFetcher().fetch, f"http://{addr}/to-ftp", tmp_path / "f", 1 << 20)
        with pytest.raises(FetchError, match="cannot connect"):
            await asyncio.to_thread(HttpFetcher().fetch, "http://127.0.0.1:9/x", tmp_path / "c", 1 << 20)
    assert not (tmp_path / "f").exists() and not (tmp_path / "c").exists()


async def test_a_body_cut_short_is_an_error(tmp_path: Path) -> None:
    async with serve_on_loopback(_app()) as addr:
        with pytest.raises(FetchError, match="the body broke off"):
            await asyncio.to_thread(HttpFetcher().fetch, f"http://{addr}/cut", tmp_path / "c", 1 << 20)
    assert not (tmp_path / "c").exists()


async def test_https_trusts_the_certs_d_ca(tmp_path: Path) -> None:
    """TLS as the registry client does it: certs.d/<host:port>/*.crt is trusted, and without it
    the self-signed server is refused."""
    import ssl

    from tests.interop.test_tls import make_ca_and_server_cert

    certs = tmp_path / "pki"
    make_ca_and_server_cert(certs, "127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(certs / "server.crt", certs / "server.key")
    runner = web.AppRunner(_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    try:
        port = runner.addresses[0][1]
        url = f"https://127.0.0.1:{port}/ok"
        with pytest.raises(FetchError, match="certificate"):
            await asyncio.to_thread(HttpFetcher((tmp_path / "root",)).fetch, url, tmp_path / "untrusted", 1 << 20)
        trusted = tmp_path / "root" / "certs.d" / f"127.0.0.1:{port}"
        trusted.mkdir(parents=True)
        (trusted / "ca.crt").write_bytes((certs / "ca.crt").read_bytes())
        await asyncio.to_thread(HttpFetcher((tmp_path / "root",)).fetch, url, tmp_path / "ok", 1 << 20)
        assert (tmp_path / "ok").read_bytes() == b"fine\n"
    finally:
        await runner.cleanup()
