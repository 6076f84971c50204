"""``hoist pull`` and ``hoist load`` unpack every layer into its snapshot (runtime/prepare.py), so
the first ``hoist run`` unpacks nothing; a layer the unpacker refuses fails the pull in one line
and leaves no snapshot of it; ``hoist run --pull missing|always|never``. Against the real registry
application on loopback (tests/registry/faults.py)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.client.client import RegistryClient
from runtime.snapshots import chain_ids
from storage.digest import Digest
from tests.cli.conftest import run_hoist
from tests.cli.helpers import Hoist
from tests.cli.test_transfers import publish
from tests.images import Entry, build_image, busybox_entries, files_layer, layer_tar
from tests.registry.faults import Faults, faulty_app, serve_on_loopback


@pytest.fixture
async def served() -> AsyncIterator[tuple[RegistryClient, str]]:
    async with serve_on_loopback(faulty_app(Faults())) as addr:
        async with RegistryClient(addr) as c:
            yield c, addr


def snapshots(hoist: Hoist) -> dict[str, tuple[int, int]]:
    """Every entry of the snapshot store: name -> (inode, mtime_ns)."""
    root = hoist.root / "snapshots"
    if not root.is_dir():
        return {}
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.iterdir() if p.name != ".locks"}


def chain_names(diff_ids: list[str]) -> set[str]:
    return {c.removeprefix("sha256:") for c in chain_ids(diff_ids)}


async def publish_app(c: RegistryClient, name: str, tag: str, message: str) -> list[str]:
    """A runnable three-layer image (busybox, then two small layers, the last one overriding a
    file of the second); returns its diff ids (its layers are plain tars)."""
    layers = [layer_tar(busybox_entries()),
              files_layer({"msg": "first\n", "keep": "kept\n"}, mode=0o644),
              files_layer({"msg": message + "\n"}, mode=0o644)]
    _, digests = await publish(c, name, tag, layers)
    return digests


async def test_pull_prepares_every_snapshot_and_run_unpacks_nothing(
        served: tuple[RegistryClient, str], hoist: Hoist) -> None:
    c, addr = served
    diff_ids = await publish_app(c, "team/app", "1", "hello")
    assert snapshots(hoist) == {}
    await run_hoist(hoist, "pull", f"{addr}/team/app:1")
    before = snapshots(hoist)
    assert set(before) == chain_names(diff_ids)          # one snapshot per chain, nothing half-made
    top = hoist.root / "snapshots" / chain_ids(diff_ids)[-1].removeprefix("sha256:")
    assert (top / "msg").read_text() == "hello\n"

    result = await run_hoist(hoist, "run", "--rm", f"{addr}/team/app:1", "cat", "/msg", "/keep")
    assert result.out == "hello\nkept\n"
    assert snapshots(hoist) == before                    # the run made and replaced no snapshot


async def test_pull_of_a_hostile_layer_fails_in_one_line_and_leaves_no_snapshot(
        served: tuple[RegistryClient, str], hoist: Hoist, tmp_path: Path) -> None:
    c, addr = served
    good = layer_tar(busybox_entries())
    hostile = layer_tar([Entry("../../../../escaped", data=b"out")])
    diff_ids = await publish(c, "team/evil", "1", [good, hostile])
    result = await run_hoist(hoist, "pull", f"{addr}/team/evil:1", ok=False)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "cannot unpack" in lines[0], result.err
    assert "Traceback" not in result.err
    left = snapshots(hoist)
    good_chain, evil_chain = (c.removeprefix("sha256:") for c in chain_ids(diff_ids[1]))
    assert evil_chain not in left and not any(n.startswith(".unpack-") for n in left)
    assert set(left) <= {good_chain}
    assert not (tmp_path / "escaped").exists() and not (hoist.root / "escaped").exists()
    assert hoist.layout().refs() == []                   # the pull failed: nothing tagged


async def test_load_prepares_the_snapshots(hoist: Hoist, tmp_path: Path) -> None:
    layers = [layer_tar(busybox_entries()), files_layer({"msg": "loaded\n"}, mode=0o644)]
    build_image(hoist.layout(), "team/saved:1", layers)
    diff_ids = [str(Digest.of(raw)) for raw in layers]
    archive = tmp_path / "saved.tar"
    await run_hoist(hoist, "save", "-o", str(archive), "team/saved:1")

    other = Hoist(tmp_path / "other")
    await run_hoist(other, "load", "-i", str(archive))
    before = snapshots(other)
    assert set(before) == chain_names(diff_ids)
    result = await run_hoist(other, "run", "--rm", "--pull", "never", "team/saved:1", "cat", "/msg")
    assert result.out == "loaded\n"
    assert snapshots(other) == before


async def test_run_pull_policies(served: tuple[RegistryClient, str], hoist: Hoist) -> None:
    c, addr = served
    ref = f"{addr}/team/svc:1"
    await publish_app(c, "team/svc", "1", "v1")

    never = await run_hoist(hoist, "run", "--rm", "--pull", "never", ref, "cat", "/msg", ok=False)
    assert never.code == 125 and "no image" in never.err and len(never.err.strip().splitlines()) == 1
    assert hoist.layout().refs() == []

    first = await run_hoist(hoist, "run", "--rm", ref, "cat", "/msg")    # default: missing
    assert first.out == "v1\n" and "Unable to find image" in first.err

    await publish_app(c, "team/svc", "1", "v2")                          # the tag moves on
    local = await run_hoist(hoist, "run", "--rm", "--pull", "missing", ref, "cat", "/msg")
    assert local.out == "v1\n" and "Unable to find image" not in local.err
    fresh = await run_hoist(hoist, "run", "--rm", "--pull", "always", ref, "cat", "/msg")
    assert fresh.out == "v2\n" and "Downloaded newer image" in fresh.err

    bad = await run_hoist(hoist, "run", "--rm", "--pull", "sometimes", ref, "true", ok=False)
    assert bad.code != 0 and "Traceback" not in bad.err
    gone = await run_hoist(hoist, "run", "--rm", f"{addr}/team/absent:1", "true", ok=False)
    # docker's two lines: "Unable to find image ... locally", then the pull's error
    assert gone.code == 125 and gone.err.strip().splitlines()[0].startswith("Unable to find image")
    (error,) = gone.err.strip().splitlines()[1:]
    assert "no image" in error and "not found" in error and "Traceback" not in gone.err


def test_layers_are_unpacked_lowest_first_with_hardlinks_into_lowers(tmp_path: Path) -> None:
    """A layer hard-linking to a file of a lower layer unpacks through ChainPreparer, even when
    its blob is stored before the lower one's."""
    import asyncio

    from runtime.prepare import ChainPreparer
    from runtime.snapshots import SnapshotStore

    lower = layer_tar([Entry("data", data=b"shared")])
    upper = layer_tar([Entry("link", kind="hardlink", link="data")])
    blobs: dict[str, Path] = {}
    for raw in (lower, upper):
        d = str(Digest.of(raw))
        blobs[d] = tmp_path / d.removeprefix("sha256:")
        blobs[d].write_bytes(raw)
    diff_ids = list(blobs)
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cd = str(Digest.of(config))
    blobs[cd] = tmp_path / "config"
    blobs[cd].write_bytes(config)
    store = SnapshotStore(tmp_path / "snapshots")

    async def go() -> list[Path]:
        prep = ChainPreparer(store, lambda d: blobs[d], cd, diff_ids)
        task = asyncio.ensure_future(prep.run())
        prep.stored(diff_ids[1])          # the upper layer arrives first
        prep.stored(cd)
        await asyncio.sleep(0)
        prep.stored(diff_ids[0])
        return await task

    chain = asyncio.run(go())
    assert (chain[1] / "link").read_bytes() == b"shared"
    assert os.listdir(tmp_path / "snapshots") and not any(
        n.startswith(".unpack-") for n in os.listdir(tmp_path / "snapshots"))
