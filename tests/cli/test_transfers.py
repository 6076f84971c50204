"""Pull and push against the real registry application made to misbehave (tests/registry/faults.py):
dropped connections resume from the offset, 5xx and 429 are retried, bad bytes are refused,
Ctrl-C leaves a store the next pull resumes from. In process through ``AppTransport``; the CLI
tests run the same application on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from registry.auth.htpasswd import hash_password
from registry.auth.tokens import generate_key
from registry.client.client import RegistryClient
from registry.client.errors import AccessDenied, ContentInvalid, TransferFailed
from registry.client.events import Progress
from registry.client.pull import BlobFetcher, pull
from registry.client.push import Pusher
from registry.client.retry import RetryPolicy
from registry.client.transport import AppTransport
from registry.server.config import from_dict
from storage import mediatypes as mt
from storage.digest import Digest
from storage.layout import ImageLayout
from storage.manifest import Descriptor
from storage.reference import parse_reference
from tests.cli.conftest import run_hoist
from tests.cli.helpers import REPO_ROOT, Hoist
from tests.images import Entry, build_image, layer_tar
from tests.registry.faults import Faults, faulty_app, serve_on_loopback

MB = 1 << 20
REGISTRY = "registry.test"


class Clock:
    """An injected sleep: records the waits asked for, waits for nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def policy(self, retries: int = 5) -> RetryPolicy:
        return RetryPolicy(retries=retries, sleep=self.sleep, random=lambda: 0.0)


def incompressible(size: int) -> bytes:
    return os.urandom(size)


def tar_layer(size: int) -> bytes:
    """An incompressible layer that is still a tar (one file of random bytes): a pull that
    succeeds unpacks its layers (hoist pull prepares the snapshots), as docker's does."""
    return layer_tar([Entry("data", data=os.urandom(size))])


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
async def client(faults: Faults) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(REGISTRY, transport=AppTransport(faulty_app(faults))) as c:
        yield c


async def publish(client: RegistryClient, name: str, tag: str, layers: list[bytes],
                  arch: str = "amd64") -> tuple[str, list[str]]:
    """Put an image (layers as given) into the registry; return (manifest digest, layer digests)."""
    async def put(data: bytes) -> str:
        digest = Digest.of(data)

        async def body() -> AsyncIterator[bytes]:
            yield data
        await client.finish_upload(await client.start_upload(name), name, digest, body, len(data))
        return str(digest)

    digests = [await put(data) for data in layers]
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": digests},
                         "config": {}}).encode()
    config_digest = await put(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config)},
                           "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": d, "size": len(data)}
                                      for d, data in zip(digests, layers, strict=True)]}).encode()
    await client.put_manifest(name, tag, manifest, mt.OCI_MANIFEST)
    return str(Digest.of(manifest)), digests


async def read_blob(client: RegistryClient, name: str, digest: str) -> bytes:
    response = await client.open_blob(name, Digest.parse(digest))
    try:
        return await response.read()
    finally:
        response.release()


# -- in process ----------------------------------------------------------------------------------

async def test_pull_resumes_from_offset_after_dropped_connection(faults: Faults, client: RegistryClient,
                                                                 tmp_path: Path) -> None:
    big = incompressible(8 * MB)
    manifest_digest, (layer,) = await publish(client, "team/app", "1", [big])
    faults.add("GET", layer, "drop_body", after=3 * MB)
    layout = ImageLayout(tmp_path / "store")
    events: list[Progress] = []
    result = await pull(client, parse_reference(f"{REGISTRY}/team/app:1"), layout, progress=events.append)
    gets = faults.seen_for("GET", layer)
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    assert gets[1].headers["Range"] == f"bytes={3 * MB}-"          # from the offset, not from zero
    assert layout.read_blob(layer) == big
    assert str(result.named.digest) == manifest_digest
    assert any(e.state == "retrying" for e in events)
    assert not list((layout.root / "ingest").iterdir())


@pytest.mark.parametrize("status, retry_after, least_wait", [(500, None, 0.0), (503, None, 0.0), (429, "7", 7.0)])
async def test_pull_retries_server_errors_and_honours_retry_after(
        faults: Faults, client: RegistryClient, tmp_path: Path, status: int, retry_after: str | None,
        least_wait: float) -> None:
    _, (layer,) = await publish(client, "team/busy", "1", [incompressible(MB)])
    faults.add("GET", layer, "status", status=status, retry_after=retry_after)
    clock = Clock()
    layout = ImageLayout(tmp_path / "store").init()
    fetcher = BlobFetcher(client, "team/busy", layout, retry=clock.policy())
    assert await fetcher.fetch(Descriptor(mt.OCI_LAYER_GZIP, Digest.parse(layer), MB))
    assert len(faults.seen_for("GET", layer)) == 2
    assert len(clock.waits) == 1 and clock.waits[0] >= least_wait
    assert layout.has_blob(Digest.parse(layer))


async def test_pull_gives_up_after_its_retries(faults: Faults, client: RegistryClient, tmp_path: Path) -> None:
    _, (layer,) = await publish(client, "team/down", "1", [incompressible(1000)])
    faults.add("GET", layer, "status", status=502, times=10)
    clock = Clock()
    fetcher = BlobFetcher(client, "team/down", ImageLayout(tmp_path / "s").init(), retry=clock.policy(retries=2))
    with pytest.raises(TransferFailed, match="gave up after 2 retries"):
        await fetcher.fetch(Descriptor(mt.OCI_LAYER_GZIP, Digest.parse(layer), 1000))
    assert len(faults.seen_for("GET", layer)) == 3 and len(clock.waits) == 2


async def test_denied_is_not_retried(faults: Faults, client: RegistryClient, tmp_path: Path) -> None:
    _, (layer,) = await publish(client, "team/no", "1", [incompressible(1000)])
    faults.add("GET", layer, "status", status=403)
    clock = Clock()
    fetcher = BlobFetcher(client, "team/no", ImageLayout(tmp_path / "s").init(), retry=clock.policy())
    with pytest.raises(AccessDenied):
        await fetcher.fetch(Descriptor(mt.OCI_LAYER_GZIP, Digest.parse(layer), 1000))
    assert len(faults.seen_for("GET", layer)) == 1 and clock.waits == []


@pytest.mark.parametrize("kind", ["truncate", "corrupt"])
async def test_short_or_wrong_bytes_are_refused_and_nothing_is_committed(
        faults: Faults, client: RegistryClient, tmp_path: Path, kind: str) -> None:
    _, (_, bad) = await publish(client, "team/bad", "1", [incompressible(MB), incompressible(2 * MB)])
    faults.add("GET", bad, kind, after=MB)
    layout = ImageLayout(tmp_path / "store")
    with pytest.raises(ContentInvalid, match="refused"):
        await pull(client, parse_reference(f"{REGISTRY}/team/bad:1"), layout)
    assert not layout.has_blob(Digest.parse(bad))
    assert layout.refs() == []
    assert not (layout.root / "ingest" / f"sha256-{bad[7:]}.partial").exists()


async def test_push_after_a_lost_answer_continues_from_the_registry_offset(
        faults: Faults, client: RegistryClient, tmp_path: Path) -> None:
    """The second chunk reached the registry but its answer was lost: the upload's status says
    so, and the push goes on after it rather than sending it again."""
    layout = ImageLayout(tmp_path / "store").init()
    big = incompressible(20 * MB)
    ref = f"{REGISTRY}/team/pushed:1"
    desc = build_image(layout, ref, [big], compress=False)
    faults.add("PATCH", "/blobs/uploads/", "drop_answer", skip=1)   # the second PATCH
    clock = Clock()
    pusher = Pusher(client, parse_reference(ref), layout, chunk_bytes=8 * MB, monolithic_max=MB,
                    retry=clock.policy())
    await pusher.push(desc)
    ranges = [p.headers["Content-Range"] for p in faults.seen_for("PATCH", "/blobs/uploads/")]
    assert ranges == [f"0-{8 * MB - 1}", f"{8 * MB}-{16 * MB - 1}", f"{16 * MB}-{20 * MB - 1}"]
    assert faults.seen_for("GET", "/blobs/uploads/")              # the upload's status was asked
    assert await read_blob(client, "team/pushed", str(Digest.of(big))) == big
    raw, _, _ = await client.get_manifest("team/pushed", "1")
    assert raw == layout.read_blob(desc.digest)


async def test_push_resends_a_chunk_the_registry_did_not_keep(faults: Faults, client: RegistryClient,
                                                              tmp_path: Path) -> None:
    """A PATCH cut mid-body is rolled back by the registry; the status says where to go on."""
    layout = ImageLayout(tmp_path / "store").init()
    big = incompressible(12 * MB)
    ref = f"{REGISTRY}/team/cut:1"
    desc = build_image(layout, ref, [big], compress=False)
    faults.add("PATCH", "/blobs/uploads/", "drop_request", after=3 * MB)
    clock = Clock()
    await Pusher(client, parse_reference(ref), layout, chunk_bytes=8 * MB, monolithic_max=MB,
                 retry=clock.policy()).push(desc)
    ranges = [p.headers["Content-Range"] for p in faults.seen_for("PATCH", "/blobs/uploads/")]
    assert ranges == [f"0-{8 * MB - 1}", f"0-{8 * MB - 1}", f"{8 * MB}-{12 * MB - 1}"]
    assert len(clock.waits) == 1
    assert await read_blob(client, "team/cut", str(Digest.of(big))) == big


async def test_monolithic_push_retries_a_server_error_in_a_new_upload(faults: Faults, client: RegistryClient,
                                                                      tmp_path: Path) -> None:
    layout = ImageLayout(tmp_path / "store").init()
    small = incompressible(100_000)
    ref = f"{REGISTRY}/team/mono:1"
    desc = build_image(layout, ref, [small], compress=False)
    faults.add("PUT", "/blobs/uploads/", "status", status=500)
    clock = Clock()
    await Pusher(client, parse_reference(ref), layout, retry=clock.policy()).push(desc)
    assert len(faults.seen_for("PUT", "/blobs/uploads/")) == 3     # config, layer (500), layer again
    assert len(clock.waits) == 1
    assert await read_blob(client, "team/mono", str(Digest.of(small))) == small


# -- the CLI, on loopback ----------------------------------------------------------------------------

@pytest.fixture
async def served(faults: Faults) -> AsyncIterator[tuple[RegistryClient, str]]:
    """(a client for it, "127.0.0.1:PORT"): the faulty application on loopback."""
    async with serve_on_loopback(faulty_app(faults)) as addr:
        async with RegistryClient(addr) as c:
            yield c, addr


async def test_bad_bytes_are_one_line_error_in_the_cli(faults: Faults, served: tuple[RegistryClient, str],
                                                       hoist: Hoist) -> None:
    c, addr = served
    _, (_, bad) = await publish(c, "team/bad", "1", [incompressible(MB), incompressible(2 * MB)])
    faults.add("GET", bad, "corrupt")
    result = await run_hoist(hoist, "pull", f"{addr}/team/bad:1", ok=False)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and bad in lines[0] and "refused" in lines[0]
    layout = hoist.layout()
    assert not layout.has_blob(Digest.parse(bad))
    assert layout.refs() == []
    assert not (hoist.images / "ingest" / f"sha256-{bad[7:]}.partial").exists()


async def test_interrupted_pull_leaves_store_consistent_and_next_pull_resumes(
        faults: Faults, served: tuple[RegistryClient, str], hoist: Hoist) -> None:
    c, addr = served
    big = tar_layer(16 * MB)
    _, (layer,) = await publish(c, "team/slow", "1", [big])
    faults.add("GET", layer, "trickle", after=64 << 10, delay=0.01, times=1000)   # slow enough to interrupt
    partial = hoist.images / "ingest" / f"sha256-{layer[7:]}.partial"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hoist.cli", "pull", f"{addr}/team/slow:1", env=hoist.env, cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    for _ in range(200):
        await asyncio.sleep(0.05)
        if partial.exists() and partial.stat().st_size > 0:
            break
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err and b"interrupted" in err
    kept = partial.stat().st_size
    assert 0 < kept < len(big)
    assert hoist.layout().refs() == [] and not hoist.layout().has_blob(Digest.parse(layer))

    faults.pending.clear()
    await run_hoist(hoist, "pull", f"{addr}/team/slow:1")
    last_get = faults.seen_for("GET", layer)[-1]
    assert int(last_get.headers["Range"].removeprefix("bytes=").rstrip("-")) >= kept
    assert hoist.layout().read_blob(layer) == big


async def test_errors_are_one_clear_line(served: tuple[RegistryClient, str], hoist: Hoist) -> None:
    c, addr = served
    await publish(c, "team/app", "1", [b"layer"])
    cases = {
        f"{addr}/team/app:nope": "not found",
        f"{addr}/team/none:1": "not found",
        "127.0.0.1:1/team/app:1": "unreachable",
    }
    for ref, words in cases.items():
        result = await run_hoist(hoist, "pull", ref, ok=False)
        assert result.code != 0
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], result.err
    result = await run_hoist(hoist, "pull", "--platform", "linux/arm64", f"{addr}/team/app:1", ok=False)
    # A plain manifest (no index) for another architecture is refused by its config.
    assert result.code != 0 and "linux/arm64" in result.err
    result = await run_hoist(hoist, "push", f"{addr}/team/missing:1", ok=False)
    assert result.code != 0 and "no such image" in result.err


def _token_config(tmp_path: Path) -> dict[str, object]:
    key = generate_key()
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    (tmp_path / "htpasswd").write_text(f"alice:{hash_password('s3cret', 4)}\n")
    return {"auth": {"token": {"service": "hoist-test", "issuer": "hoist-test",
                               "signingkey": str(tmp_path / "key.pem"), "htpasswd": str(tmp_path / "htpasswd"),
                               "acl": [{"account": "alice", "name": "team/*", "actions": ["pull", "push"]}]}}}


async def test_bearer_auth_login_and_token_reuse(faults: Faults, hoist: Hoist, tmp_path: Path) -> None:
    app = faulty_app(faults, from_dict(_token_config(tmp_path)))
    async with serve_on_loopback(app) as addr:
        ref = f"{addr}/team/private:1"
        denied = await run_hoist(hoist, "pull", ref, ok=False)
        assert denied.code != 0 and "hoist login" in denied.err and len(denied.err.strip().splitlines()) == 1

        wrong = await run_hoist(hoist, "login", "-u", "alice", "-p", "nope", addr, ok=False)
        assert wrong.code != 0 and "alice" in wrong.err
        await run_hoist(hoist, "login", "-u", "alice", "--password-stdin", addr, stdin=b"s3cret\n")
        stored = json.loads((hoist.docker_config / "config.json").read_text())
        assert stored["auths"][addr]["auth"] == "YWxpY2U6czNjcmV0"      # base64("alice:s3cret"), as docker writes

        layout = hoist.layout()
        build_image(layout, ref, [tar_layer(1000), tar_layer(2000), tar_layer(3000)])
        await run_hoist(hoist, "push", ref)
        await run_hoist(hoist, "rmi", ref)
        faults.seen.clear()
        await run_hoist(hoist, "pull", ref)
        # One token for the repository's pull scope, reused for the manifest, config and every layer.
        tokens = [s for s in faults.seen if s.method == "GET" and s.path.startswith("/token")]
        assert len(tokens) == 1 and "scope=repository:team/private:pull" in tokens[0].path

        await run_hoist(hoist, "logout", addr)
        assert addr not in json.loads((hoist.docker_config / "config.json").read_text())["auths"]
