"""``--platform`` other than the host's, as BuildKit does it without emulation: a multi-platform
index served by the real registry on loopback gives the requested platform's image, COPY-only
stages build, the result records that platform, and a RUN that would need emulation is refused
at its line with a clear error (nothing tagged). The classic cross-build (a
``--platform=$BUILDPLATFORM`` stage that RUNs, copied into the target platform's image) works.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from builder.platforms import can_run
from storage.layout import ImageLayout
from storage.platform import Platform
from storage.reference import parse_reference
from tests.cli.conftest import run_hoist
from tests.cli.helpers import Hoist
from tests.images import Entry, add_image, build_index, busybox_entries, busybox_image, layer_tar
from tests.registry.faults import Faults, faulty_app, serve_on_loopback

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.skipif(Platform.host().architecture != "amd64",
                                reason="the fixture index pairs this host's amd64 with a foreign arm64")


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[str]:
    """A registry on loopback holding ``lib/multi:1``: an index of linux/amd64 and linux/arm64
    images, each with /etc/arch naming its platform."""
    pusher = Hoist(tmp_path / "pusher")
    layout = pusher.layout()
    children = {}
    for arch in ("amd64", "arm64"):
        layer = layer_tar(busybox_entries([Entry("etc/arch", data=f"{arch}\n".encode())]))
        children[f"linux/{arch}"] = add_image(layout, None, [layer], {"Env": [PATH_ENV], "Cmd": ["sh"]}, arch=arch)
    async with serve_on_loopback(faulty_app(Faults())) as host:
        build_index(layout, f"{host}/lib/multi:1", children)
        await run_hoist(pusher, "push", f"{host}/lib/multi:1")
        single = layer_tar(busybox_entries([Entry("etc/arch", data=b"amd64 only\n")]))
        add_image(layout, f"{host}/lib/single-amd64:1", [single], {"Env": [PATH_ENV], "Cmd": ["sh"]}, arch="amd64")
        await run_hoist(pusher, "push", f"{host}/lib/single-amd64:1")
        yield host


@pytest.fixture
def h(tmp_path: Path) -> Hoist:
    hoist = Hoist(tmp_path)
    busybox_image(hoist.layout())
    return hoist


def _ctx(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "a.txt").write_text("a\n")
    return ctx


def _config(h: Hoist, ref: str) -> dict:
    layout = ImageLayout(h.images)
    _, manifest = layout.resolve_image(str(parse_reference(ref)), Platform.parse("linux/arm64"))
    return layout.config(manifest)


def _files(h: Hoist, ref: str) -> dict[str, bytes]:
    import gzip
    import io
    import tarfile

    layout = ImageLayout(h.images)
    _, manifest = layout.resolve_image(str(parse_reference(ref)), Platform.parse("linux/arm64"))
    out: dict[str, bytes] = {}
    for layer in manifest.layers:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layout.read_blob(layer.digest)))) as tar:
            for info in tar:
                if info.isfile():
                    f = tar.extractfile(info)
                    assert f is not None
                    out[info.name] = f.read()
    return out


async def test_from_platform_pulls_that_platform_and_copy_works(h: Hoist, tmp_path: Path, registry: str) -> None:
    ctx = _ctx(tmp_path, f"FROM --platform=linux/arm64 {registry}/lib/multi:1\nCOPY a.txt /a.txt\n")
    await run_hoist(h, "build", "-t", "arm:1", str(ctx))
    config = _config(h, "arm:1")
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    files = _files(h, "arm:1")
    assert files["etc/arch"] == b"arm64\n" and files["a.txt"] == b"a\n"


async def test_build_platform_flag_sets_target_args_and_the_result(h: Hoist, tmp_path: Path, registry: str) -> None:
    ctx = _ctx(tmp_path, f"FROM {registry}/lib/multi:1\nARG TARGETPLATFORM\nARG TARGETARCH\n"
                         "LABEL target=$TARGETPLATFORM arch=$TARGETARCH\nCOPY a.txt /\n")
    await run_hoist(h, "build", "--platform", "linux/arm64", "-t", "arm:2", str(ctx))
    config = _config(h, "arm:2")
    assert config["architecture"] == "arm64"
    assert config["config"]["Labels"] == {"target": "linux/arm64", "arch": "arm64"}
    assert _files(h, "arm:2")["etc/arch"] == b"arm64\n"


async def test_run_that_needs_emulation_is_refused(h: Hoist, tmp_path: Path, registry: str) -> None:
    arm = Platform.parse("linux/arm64")
    if can_run(arm):
        pytest.skip("this host runs arm64 binaries (a binfmt_misc emulator is registered)")
    ctx = _ctx(tmp_path, f"FROM --platform=linux/arm64 {registry}/lib/multi:1\nCOPY a.txt /\nRUN echo hi\n")
    r = await run_hoist(h, "build", "-t", "arm:3", str(ctx), ok=False)
    last = r.err.strip().splitlines()[-1]
    assert r.code == 1 and last.startswith(f"{ctx}/Dockerfile:3: cannot run a linux/arm64 step"), last
    assert "needs emulation" in last
    assert "arm:3" not in (await run_hoist(h, "images")).out
    # FROM scratch with --platform: the scratch image is the target platform's too.
    scratch = _ctx(tmp_path, "FROM scratch\nCOPY a.txt /\n")
    await run_hoist(h, "build", "--platform", "linux/arm64", "-t", "arm:4", str(scratch))
    layout = ImageLayout(h.images)
    _, manifest = layout.resolve_image(str(parse_reference("arm:4")), arm)
    assert layout.config(manifest)["architecture"] == "arm64"


async def test_cross_build_pattern(h: Hoist, tmp_path: Path, registry: str) -> None:
    ctx = _ctx(tmp_path, "FROM --platform=$BUILDPLATFORM busybox AS build\nARG TARGETARCH\n"
                         "RUN echo built for $TARGETARCH on $(cat /etc/arch 2>/dev/null || echo host) > /out\n"
                         f"FROM {registry}/lib/multi:1\nCOPY --from=build /out /out\n")
    await run_hoist(h, "build", "--platform", "linux/arm64", "-t", "arm:5", str(ctx))
    files = _files(h, "arm:5")
    assert files["out"] == b"built for arm64 on host\n" and files["etc/arch"] == b"arm64\n"
    assert _config(h, "arm:5")["architecture"] == "arm64"


async def test_a_platform_the_index_lacks(h: Hoist, tmp_path: Path, registry: str) -> None:
    ctx = _ctx(tmp_path, f"FROM --platform=linux/s390x {registry}/lib/multi:1\nCOPY a.txt /\n")
    r = await run_hoist(h, "build", "-t", "s:1", str(ctx), ok=False)
    last = r.err.strip().splitlines()[-1]
    assert r.code == 1 and "Dockerfile:1: " in last and "linux/s390x" in last, last
    assert "linux/amd64" in last and "linux/arm64" in last     # it says what there is
    # A local single-platform image of another platform is not used for it either: the registry
    # is asked (it does not have it) and the error says both.
    await run_hoist(h, "tag", "busybox", f"{registry}/lib/single:1")
    ctx2 = _ctx(tmp_path, f"FROM --platform=linux/arm64 {registry}/lib/single:1\nCOPY a.txt /\n")
    r2 = await run_hoist(h, "build", "-t", "s:2", str(ctx2), ok=False)
    last2 = r2.err.strip().splitlines()[-1]
    assert r2.code == 1 and "Dockerfile:1: " in last2, last2
    assert "the local image is for linux/amd64, not linux/arm64" in last2 and "pulling it failed" in last2, last2
    assert json.dumps("s:2") not in (await run_hoist(h, "images")).out


async def test_a_single_platform_image_of_another_platform_is_used_with_a_warning(
        h: Hoist, tmp_path: Path, registry: str) -> None:
    """BuildKit (docker 20.10 here, checked by tests/interop/test_build_platform_differential.py)
    builds FROM a single-platform image whatever platform was asked for; current BuildKit warns
    InvalidBaseImagePlatform."""
    ctx = _ctx(tmp_path, f"FROM --platform=linux/arm64 {registry}/lib/single-amd64:1\nCOPY a.txt /\n")
    r = await run_hoist(h, "build", "-t", "single:1", str(ctx))
    assert (f'WARN: InvalidBaseImagePlatform: Base image {registry}/lib/single-amd64:1 was pulled with platform '
            '"linux/amd64", expected "linux/arm64" for current build (line 1)') in r.err
    layout = ImageLayout(h.images)
    _, manifest = layout.resolve_image(str(parse_reference("single:1")), Platform.parse("linux/amd64"))
    assert layout.config(manifest)["architecture"] == "amd64"
