"""The client's aiohttp is imported with its default TLS contexts' CA loads deferred
(registry/client/lazytls.py): nothing is read at import, and a verifying connection still
trusts exactly the system's CAs (here: SSL_CERT_FILE, the test CA) and nothing else.

Run in a fresh interpreter, so that aiohttp is imported by the client, as in ``hoist``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.interop.test_tls import make_ca_and_server_cert

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, ssl, sys
from pathlib import Path

from registry.client.auth import Request
from registry.client.errors import RegistryUnreachable
from registry.client import transport
from registry.client.lazytls import DeferredCAContext, deferred
import aiohttp.connector as connector
from aiohttp import web

verified, unverified = connector._SSL_CONTEXT_VERIFIED, connector._SSL_CONTEXT_UNVERIFIED
assert isinstance(verified, ssl.SSLContext) and isinstance(verified, DeferredCAContext)
assert deferred(verified) and deferred(unverified), "aiohttp's contexts loaded CAs at import"
assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
assert unverified.verify_mode == ssl.CERT_NONE
# Nothing outside the import is deferred.
assert type(ssl.create_default_context()) is ssl.SSLContext
assert "set_default_verify_paths" not in ssl.SSLContext.__dict__

trusted, other = Path(sys.argv[1]), Path(sys.argv[2])


def server_context(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.crt", pki / "server.key")
    return ctx


async def main():
    app = web.Application()
    app.router.add_get("/v2/", lambda request: web.Response(text="ok"))
    runner = web.AppRunner(app)
    await runner.setup()
    sites = []
    for pki in (trusted, other):
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(pki))
        await site.start()
        sites.append(site._server.sockets[0].getsockname()[1])
    good, bad = sites
    client = transport.AiohttpTransport()
    try:
        resp = await client.send(Request("GET", f"https://127.0.0.1:{good}/v2/"))
        assert resp.status == 200 and await resp.read() == b"ok"
        resp.release()
        assert not deferred(verified), "the verifying context did not load the CAs at its first use"
        assert verified.cert_store_stats()["x509_ca"] == 1     # SSL_CERT_FILE: the test CA only
        try:
            await client.send(Request("GET", f"https://127.0.0.1:{bad}/v2/"))
        except RegistryUnreachable as e:
            assert "not trusted" in str(e), e
        else:
            raise AssertionError("a server of an unknown CA was trusted")
    finally:
        await client.close()
    insecure = transport.AiohttpTransport(verify_tls=False)
    try:
        resp = await insecure.send(Request("GET", f"https://127.0.0.1:{bad}/v2/"))
        assert resp.status == 200
        resp.release()
    finally:
        await insecure.close()
    await runner.cleanup()
    print("ok")


asyncio.run(main())
"""


def test_client_defers_aiohttp_ca_loads_and_still_verifies(tmp_path: Path) -> None:
    trusted, other = tmp_path / "trusted", tmp_path / "other"
    make_ca_and_server_cert(trusted, "127.0.0.1")
    make_ca_and_server_cert(other, "127.0.0.1")
    env = dict(os.environ, SSL_CERT_FILE=str(trusted / "ca.crt"), SSL_CERT_DIR=str(tmp_path / "no-certs"))
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(trusted), str(other)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "ok"
