"""Pull and push against a registry that misbehaves: dropped connections resume from the
offset, bad bytes are refused, Ctrl-C leaves a store the next pull resumes from."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from registry.client.client import RegistryClient
from registry.client.events import Progress
from registry.client.pull import pull
from registry.client.push import Pusher
from storage.digest import Digest
from storage.layout import ImageLayout
from storage.reference import parse_reference
from tests.cli.conftest import incompressible, publish, run_hoist
from tests.cli.fakeregistry import FakeRegistry
from tests.cli.helpers import REPO_ROOT, Hoist
from tests.images import build_image

MB = 1 << 20


async def test_pull_resumes_from_offset_after_dropped_connection(fake: tuple[FakeRegistry, str],
                                                                 tmp_path: Path) -> None:
    registry, addr = fake
    big = incompressible(8 * MB)
    manifest_digest, (layer,) = publish(registry, "team/app", "1", [big])
    registry.behaviour.drop_blob_after[layer] = 3 * MB
    layout = ImageLayout(tmp_path / "store")
    events: list[Progress] = []
    async with RegistryClient(addr) as client:
        result = await pull(client, parse_reference(f"{addr}/team/app:1"), layout, progress=events.append)
    gets = registry.seen_for("GET", layer)
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    assert gets[1].headers["Range"] == f"bytes={3 * MB}-"          # from the offset, not from zero
    assert layout.read_blob(layer) == big
    assert str(result.named.digest) == manifest_digest
    assert any(e.state == "retrying" for e in events)
    assert not list((layout.root / "ingest").iterdir())


async def test_push_asks_upload_status_and_continues_from_registry_offset(fake: tuple[FakeRegistry, str],
                                                                         tmp_path: Path) -> None:
    registry, addr = fake
    layout = ImageLayout(tmp_path / "store").init()
    big = incompressible(20 * MB)
    ref = f"{addr}/team/pushed:1"
    desc = build_image(layout, ref, [big], compress=False)
    layer = str(Digest.of(big))
    registry.behaviour.drop_patch_after = 3 * MB
    async with RegistryClient(addr) as client:
        pusher = Pusher(client, parse_reference(ref), layout, chunk_bytes=8 * MB, monolithic_max=MB)
        await pusher.push(desc)
    patches = [s for s in registry.seen_for("PATCH", "/blobs/uploads/")]
    ranges = [p.headers["Content-Range"] for p in patches]
    assert ranges[0] == f"0-{8 * MB - 1}"                          # the chunk that was cut
    assert ranges[1] == f"{3 * MB}-{11 * MB - 1}"                   # continues where the registry stopped
    assert registry.seen_for("GET", "/blobs/uploads/")              # the upload's status was asked
    assert registry.blobs[layer] == big
    assert registry.manifests[("team/pushed", "1")][0] == layout.read_blob(desc.digest)


async def test_bad_bytes_are_refused_and_nothing_is_committed(fake: tuple[FakeRegistry, str], hoist: Hoist) -> None:
    registry, addr = fake
    _, (good, bad) = publish(registry, "team/bad", "1", [incompressible(MB), incompressible(2 * MB)])
    registry.behaviour.corrupt.add(bad)
    result = await run_hoist(hoist, "pull", f"{addr}/team/bad:1", ok=False)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and bad in lines[0] and "refused" in lines[0]
    layout = hoist.layout()
    assert not layout.has_blob(Digest.parse(bad))
    assert layout.refs() == []
    assert not (hoist.images / "ingest" / f"sha256-{bad[7:]}.partial").exists()


async def test_interrupted_pull_leaves_store_consistent_and_next_pull_resumes(
        fake: tuple[FakeRegistry, str], hoist: Hoist) -> None:
    registry, addr = fake
    big = incompressible(16 * MB)
    _, (layer,) = publish(registry, "team/slow", "1", [big])
    registry.behaviour.trickle[layer] = 0.01                      # ~6 MB/s: slow enough to interrupt
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

    registry.behaviour.trickle.clear()
    await run_hoist(hoist, "pull", f"{addr}/team/slow:1")
    last_get = registry.seen_for("GET", layer)[-1]
    assert int(last_get.headers["Range"].removeprefix("bytes=").rstrip("-")) >= kept
    assert hoist.layout().read_blob(layer) == big


async def test_errors_are_one_clear_line(fake: tuple[FakeRegistry, str], hoist: Hoist) -> None:
    registry, addr = fake
    publish(registry, "team/app", "1", [b"layer"])
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


async def test_bearer_auth_login_and_token_reuse(fake: tuple[FakeRegistry, str], hoist: Hoist) -> None:
    registry, addr = fake
    registry.behaviour.auth, registry.behaviour.users = "bearer", {"alice": "s3cret"}
    publish(registry, "team/private", "1", [incompressible(1000), incompressible(2000), incompressible(3000)])
    ref = f"{addr}/team/private:1"
    denied = await run_hoist(hoist, "pull", ref, ok=False)
    assert denied.code != 0 and "hoist login" in denied.err and len(denied.err.strip().splitlines()) == 1

    wrong = await run_hoist(hoist, "login", "-u", "alice", "-p", "nope", addr, ok=False)
    assert wrong.code != 0 and "alice" in wrong.err
    await run_hoist(hoist, "login", "-u", "alice", "--password-stdin", addr, stdin=b"s3cret\n")
    stored = json.loads((hoist.docker_config / "config.json").read_text())
    assert stored["auths"][addr]["auth"] == "YWxpY2U6czNjcmV0"      # base64("alice:s3cret"), as docker writes

    registry.tokens_issued.clear()
    await run_hoist(hoist, "pull", ref)
    # One token for the repository's pull scope, reused for the manifest, config and every layer.
    assert [t["scope"] for t in registry.tokens_issued] == [["repository:team/private:pull"]]

    await run_hoist(hoist, "logout", addr)
    assert addr not in json.loads((hoist.docker_config / "config.json").read_text())["auths"]


async def test_basic_auth(fake: tuple[FakeRegistry, str], hoist: Hoist) -> None:
    registry, addr = fake
    registry.behaviour.auth, registry.behaviour.users = "basic", {"bob": "pw"}
    publish(registry, "team/basic", "1", [b"x" * 100])
    assert (await run_hoist(hoist, "pull", f"{addr}/team/basic:1", ok=False)).code != 0
    await run_hoist(hoist, "login", "-u", "bob", "-p", "pw", addr)
    await run_hoist(hoist, "pull", f"{addr}/team/basic:1")
