"""The users' upgrade and rollback, as their notes script it (issue 13), with the new version
pulled in advance from the real registry (in memory, on loopback): pull 1.1, stop 1.0, rename it,
run 1.1 on the same volume (the data survives), then stop, rename back and start 1.0 again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from runtime.image import load_image
from runtime.snapshots import SnapshotStore, chain_ids
from tests.cli.conftest import run_hoist
from tests.cli.helpers import Hoist as CliHoist
from tests.images import busybox_image, files_layer
from tests.registry.faults import Faults, faulty_app, serve_on_loopback
from tests.runtime.conftest import Hoist


def _until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


async def test_pull_in_advance_upgrade_and_roll_back(hoist: Hoist, tmp_path: Path) -> None:
    pusher = CliHoist(tmp_path / "pusher")
    for version in ("1.0", "1.1"):
        busybox_image(pusher.layout(), f"app:{version}", config={"Env": ["PATH=/bin", f"VERSION={version}"]},
                      more_layers=[files_layer({"srv/version": version})])
    data = tmp_path / "data"
    data.mkdir()
    serve = "echo $VERSION >> /data/versions; echo serving $(cat /srv/version); exec sleep 600"
    async with serve_on_loopback(faulty_app(Faults())) as host:
        for version in ("1.0", "1.1"):
            await run_hoist(pusher, "tag", f"app:{version}", f"{host}/team/app:{version}")
            await run_hoist(pusher, "push", f"{host}/team/app:{version}")
        v10, v11 = f"{host}/team/app:1.0", f"{host}/team/app:1.1"

        def cli(*args: str) -> str:
            return hoist.ok(*args)

        await asyncio.to_thread(cli, "run", "-d", "--name", "app", "--restart", "always", "-v", f"{data}:/data",
                                v10, "sh", "-c", serve)
        await asyncio.to_thread(_until, lambda: (data / "versions").exists(), "1.0 to serve")
        await asyncio.to_thread(cli, "pull", v11)                    # in advance, while 1.0 serves
    # the registry is gone from here on: nothing below may need it
    image = load_image(hoist.root / "images", v11)
    top = SnapshotStore(hoist.root / "snapshots").path(chain_ids(list(image.diff_ids))[-1])
    assert (top / "srv" / "version").read_text() == "1.1"            # unpacked by the pull
    before = sorted(p.name for p in (hoist.root / "snapshots").iterdir())
    hoist.ok("stop", "-t", "1", "app")
    hoist.ok("rename", "app", "app-1.0")
    hoist.ok("run", "-d", "--name", "app", "--restart", "always", "-v", f"{data}:/data", v11, "sh", "-c", serve)
    _until(lambda: (data / "versions").read_text().split() == ["1.0", "1.1"], "1.1 on 1.0's data")
    assert sorted(p.name for p in (hoist.root / "snapshots").iterdir()) == before   # no unpacking at the run
    # roll back
    hoist.ok("stop", "-t", "1", "app")
    hoist.ok("rename", "app", "app-1.1")
    hoist.ok("rename", "app-1.0", "app")
    assert hoist.ok("start", "app") == "app\n"
    _until(lambda: (data / "versions").read_text().split() == ["1.0", "1.1", "1.0"], "1.0 to serve again")
    assert hoist.ok("inspect", "-f", "{{.Config.Image}} {{.State.Status}} {{.HostConfig.RestartPolicy.Name}}",
                    "app").strip() == f"{v10} running always"
    assert hoist.ok("logs", "app").splitlines() == ["serving 1.0", "serving 1.0"]   # its own root again
    assert hoist.ok("logs", "app-1.1").splitlines() == ["serving 1.1"]
