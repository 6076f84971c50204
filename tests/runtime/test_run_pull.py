"""``run --pull missing|always|never`` against the real registry (in memory, on loopback); the
image reaches it through ``hoist push``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from storage.layout import ImageLayout
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
    assert res.returncode == 125 and "invalid --pull 'sometimes'" in _one_line(res)
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


async def test_pull_unpacks_layers_while_the_rest_download(hoist: Hoist, tmp_path: Path) -> None:
    """The busybox layer is unpacked into its snapshot while the second layer is still on its
    way (the registry trickles it): the snapshot exists before that blob does."""
    import os
    import sys

    from runtime.snapshots import SnapshotStore, chain_ids
    from tests.cli.helpers import REPO_ROOT
    from tests.images import files_layer

    pusher = CliHoist(tmp_path / "pusher")
    desc = busybox_image(pusher.layout(), "two:1", more_layers=[files_layer({"big": os.urandom(8 << 20)})])
    manifest = pusher.layout().manifest(desc)
    first, second = manifest.layers
    diff_ids = pusher.layout().config(manifest)["rootfs"]["diff_ids"]
    snapshots = SnapshotStore(hoist.root / "snapshots")
    first_snapshot, second_snapshot = (snapshots.path(c) for c in chain_ids(diff_ids))
    faults = Faults()
    async with serve_on_loopback(faulty_app(faults)) as host:
        ref = f"{host}/lib/two:1"
        await run_hoist(pusher, "tag", "two:1", ref)
        await run_hoist(pusher, "push", ref)
        faults.add("GET", str(second.digest), "trickle", after=16 << 10, delay=0.01, times=1000)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hoist.cli", "pull", "-q", ref, env=hoist.env(), cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        layout = ImageLayout(hoist.root / "images")
        while not first_snapshot.is_dir():
            assert proc.returncode is None, await proc.communicate()
            await asyncio.sleep(0.02)
        assert not layout.has_blob(second.digest)          # still downloading: unpacked meanwhile
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err
    assert layout.has_blob(second.digest)
    assert (second_snapshot / "big").stat().st_size == 8 << 20
