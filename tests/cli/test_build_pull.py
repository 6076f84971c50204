"""``hoist build`` FROM a registry image: pulled with the client when not local (or with --pull),
its digest resolved and shown, the result run. The registry is the real one (in memory, on
loopback); the base image reaches it through ``hoist push``."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import run_hoist
from tests.cli.helpers import Hoist
from tests.images import busybox_image
from tests.registry.faults import Faults, faulty_app, serve_on_loopback


async def test_from_a_registry_image(hoist: Hoist, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    pusher = Hoist(tmp_path / "pusher")
    busybox_image(pusher.layout(), "bb:1")
    async with serve_on_loopback(faulty_app(Faults())) as host:
        await run_hoist(pusher, "tag", "bb:1", f"{host}/lib/bb:1")
        pushed = await run_hoist(pusher, "push", f"{host}/lib/bb:1")
        digest = pusher.layout().find(f"{host}/lib/bb:1").descriptor.digest
        assert str(digest) in pushed.out + pushed.err
        (ctx / "Dockerfile").write_text(f"FROM {host}/lib/bb:1\nRUN echo pulled > /p\n")
        r = await run_hoist(hoist, "build", "-t", "x:1", str(ctx))
        assert f"FROM {host}/lib/bb:1@{digest}" in r.err
    out = await run_hoist(hoist, "run", "--rm", "x:1", "cat", "/p")
    assert out.out == "pulled\n"
    # Local now: a rebuild does not ask the registry (it is gone); --pull does, and says so.
    again = await run_hoist(hoist, "build", "-t", "x:1", str(ctx))
    assert "CACHED" in again.err
    failed = await run_hoist(hoist, "build", "--pull", "-t", "x:2", str(ctx), ok=False)
    assert failed.code == 1 and "Dockerfile:1: " in failed.err.strip().splitlines()[-1]
    assert "Traceback" not in failed.err
