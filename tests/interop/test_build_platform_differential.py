"""``FROM --platform`` and ``build --platform`` other than the host's, built by BuildKit (Debian's
docker 20.10, ``DOCKER_BUILDKIT=1``, the spec) and by ``hoist build`` from one multi-platform index
in the real registry on loopback: the same platform's layers, the same recorded architecture,
the same TARGET* arguments.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.platform import Platform
from tests.builder.differential import BuildKit, Hoist, compare, normalise, read_archive, read_layout
from tests.cli.conftest import run_hoist
from tests.cli.helpers import Hoist as HoistCli
from tests.images import Entry, add_image, build_index, busybox_entries, layer_tar
from tests.peers import Dockerd
from tests.registry.faults import Faults, faulty_app, serve_on_loopback

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.skipif(Platform.host().architecture != "amd64",
                                reason="the fixture index pairs this host's amd64 with a foreign arm64")


@pytest.fixture(scope="module")
def peers(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BuildKit, Hoist, Path]]:
    work = tmp_path_factory.mktemp("platform-differential")
    (work / "hoist").mkdir()
    yield BuildKit(dockerd.socket, dockerd.base / "client-config", dockerd.docker), Hoist(work / "hoist"), work


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[str]:
    pusher = HoistCli(tmp_path / "pusher")
    layout = pusher.layout()
    children = {}
    for arch in ("amd64", "arm64"):
        layer = layer_tar(busybox_entries([Entry("etc/arch", data=f"{arch}\n".encode())]))
        children[f"linux/{arch}"] = add_image(layout, None, [layer], {"Env": [PATH_ENV], "Cmd": ["sh"]}, arch=arch)
    async with serve_on_loopback(faulty_app(Faults())) as host:
        build_index(layout, f"{host}/lib/multi:1", children)
        await run_hoist(pusher, "push", f"{host}/lib/multi:1")
        single = layer_tar(busybox_entries([Entry("etc/arch", data=b"amd64 only\n")]))
        add_image(layout, f"{host}/lib/single:1", [single], {"Env": [PATH_ENV], "Cmd": ["sh"]}, arch="amd64")
        await run_hoist(pusher, "push", f"{host}/lib/single:1")
        yield host


def _docker(buildkit: BuildKit, *args: str) -> None:
    subprocess.run([buildkit.docker, *args], check=True, capture_output=True, env=dict(os.environ, **buildkit.env),
                   timeout=600)


@pytest.mark.parametrize("case", ["from-platform", "build-platform", "single-platform-image"])
async def test_other_platform_matches_buildkit(peers: tuple[BuildKit, Hoist, Path], registry: str,
                                               case: str) -> None:
    buildkit, hoist, work = peers
    ctx = work / case
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    if case == "from-platform":
        (ctx / "Dockerfile").write_text(f"FROM --platform=linux/arm64 {registry}/lib/multi:1\nCOPY a.txt /a.txt\n")
        flags: list[str] = []
    elif case == "single-platform-image":  # used as it is: BuildKit takes it, the result is amd64
        (ctx / "Dockerfile").write_text(f"FROM --platform=linux/arm64 {registry}/lib/single:1\nCOPY a.txt /a.txt\n")
        flags = []
    else:
        (ctx / "Dockerfile").write_text(f"FROM {registry}/lib/multi:1\nARG TARGETPLATFORM\nARG TARGETARCH\n"
                                        "LABEL target=$TARGETPLATFORM arch=$TARGETARCH\nCOPY a.txt /\n")
        flags = ["--platform", "linux/arm64"]
    tag = f"plat-{case}"
    archive = work / f"{case}.tar"
    await asyncio.to_thread(_docker, buildkit, "build", "--network", "host", "-q", *flags, "-t", f"{tag}:bk", str(ctx))
    await asyncio.to_thread(_docker, buildkit, "save", "-o", str(archive), f"{tag}:bk")
    await asyncio.to_thread(hoist.cli, "build", *flags, "-t", f"{tag}:hoist", str(ctx))
    spec_config, spec_layers = read_archive(archive)
    ours_config, ours_layers = read_layout(hoist.root / "images", f"{tag}:hoist")
    spec, ours = normalise(spec_config, spec_layers), normalise(ours_config, ours_layers)
    diffs = compare(spec, ours, other_name="hoist", history=False)
    assert not diffs, f"{case}: differs from BuildKit:\n" + "\n".join(diffs)
    assert spec.rootfs["/etc/arch"] == ours.rootfs["/etc/arch"]
    for key in ("os", "architecture"):
        assert ours_config.get(key) == spec_config.get(key), key
    assert spec_config["architecture"] == ("amd64" if case == "single-platform-image" else "arm64")
