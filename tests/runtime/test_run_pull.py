"""``run --pull missing|always|never`` against the real registry (in memory, on loopback); the
image reaches it through ``hoist push``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.cli.conftest import run_hoist
from tests.cli.helpers import Hoist as CliHoist
from tests.images import busybox_image
from tests.registry.faults import Faults, faulty_app, serve_on_loopback
from tests.runtime.conftest import Hoist


def _one_line(res) -> str:
    err = res.stderr.decode()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


async def test_run_pulls_what_is_missing(hoist: Hoist, tmp_path: Path) -> None:
    pusher = CliHoist(tmp_path / "pusher")
    busybox_image(pusher.layout(), "bb:1", config={"Env": ["PATH=/bin", "FROM_REGISTRY=yes"]})
    async with serve_on_loopback(faulty_app(Faults())) as host:
        ref = f"{host}/lib/bb:1"
        await run_hoist(pusher, "tag", "bb:1", ref)
        await run_hoist(pusher, "push", ref)
        res = await asyncio.to_thread(hoist, "run", "--pull", "never", "--rm", ref, "true")
        assert res.returncode == 125 and "no image" in _one_line(res)
        res = await asyncio.to_thread(hoist, "run", "--rm", ref, "sh", "-c", "echo $FROM_REGISTRY")
        assert res.returncode == 0 and res.stdout == b"yes\n", res.stderr   # the pull's words go to stderr
        err = res.stderr.decode()
        assert f"Unable to find image '{ref}' locally" in err and "Downloaded newer image" in err
        res = await asyncio.to_thread(hoist, "run", "--rm", ref, "true")
        assert res.returncode == 0 and b"Unable to find" not in res.stderr and b"Status" not in res.stderr
        res = await asyncio.to_thread(hoist, "run", "--rm", "--pull", "always", ref, "true")
        assert res.returncode == 0 and f"Image is up to date for {ref}" in res.stderr.decode()
    # the registry is gone: "always" cannot pull, "missing" does not need to
    res = await asyncio.to_thread(hoist, "run", "--rm", "--pull", "always", ref, "true")
    assert res.returncode == 125 and _one_line(res)
    assert (await asyncio.to_thread(hoist, "run", "--rm", ref, "true")).returncode == 0
    res = await asyncio.to_thread(hoist, "run", "--rm", "--pull", "sometimes", ref, "true")
    assert res.returncode == 125 and "invalid pull option" in _one_line(res)
    res = await asyncio.to_thread(hoist, "run", "--rm", "127.0.0.1:1/lib/none:1", "true")
    assert res.returncode == 125 and "unreachable" in res.stderr.decode().strip().splitlines()[-1]


async def test_pull_prepares_the_first_run(hoist: Hoist, tmp_path: Path) -> None:
    pusher = CliHoist(tmp_path / "pusher")
    busybox_image(pusher.layout(), "bb:2", more_layers=[])
    async with serve_on_loopback(faulty_app(Faults())) as host:
        ref = f"{host}/lib/bb:2"
        await run_hoist(pusher, "tag", "bb:2", ref)
        await run_hoist(pusher, "push", ref)
        res = await asyncio.to_thread(hoist, "pull", ref, subprocess=True)
        assert res.returncode == 0, res.stderr
    snapshots = hoist.root / "snapshots"
    from runtime.image import load_image
    from runtime.snapshots import chain_ids
    image = load_image(hoist.root / "images", ref)
    top = snapshots / chain_ids(list(image.diff_ids))[-1].split(":")[-1]
    assert top.is_dir() and (top / "bin" / "busybox").exists()      # unpacked by the pull
    before = sorted(p.name for p in snapshots.iterdir())
    assert (await asyncio.to_thread(hoist, "run", "--rm", ref, "true")).returncode == 0
    assert sorted(p.name for p in snapshots.iterdir()) == before     # the run unpacked nothing
