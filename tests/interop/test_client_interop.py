"""hoist's client against real registries and real tools: push to and pull from CNCF
Distribution (and hoist's own server), images moved by skopeo and docker, the local store read
by skopeo and umoci, and archives exchanged with docker."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest

from storage.layout import ImageLayout
from tests.cli.helpers import Hoist
from tests.images import build_index, manifest_digest
from tests.images import distinct_busybox_image as busybox_image
from tests.interop.conftest import RegistryUnderTest
from tests.peers import Distribution, Dockerd, need_tool, skopeo


@pytest.fixture
def hoist(tmp_path: Path) -> Hoist:
    return Hoist(tmp_path / "a")


@pytest.fixture
def other(tmp_path: Path) -> Hoist:
    """A second machine: its own store."""
    return Hoist(tmp_path / "b")


def remote_digest(ref: str) -> str:
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}").stdout)
    return info["Digest"]


def test_push_then_pull_round_trip(registry_server: RegistryUnderTest, hoist: Hoist, other: Hoist) -> None:
    ref = f"{registry_server.addr}/team/app:1.0"
    desc = busybox_image(hoist.layout(), ref)
    out = hoist("push", ref).out
    assert f"digest: {desc.digest}" in out
    assert remote_digest(ref) == str(desc.digest)
    assert "Exists" in hoist("push", ref).out            # second push: HEAD finds every blob

    pulled = other("pull", ref).out
    assert f"Digest: {desc.digest}" in pulled
    assert manifest_digest(other.images, ref) == str(desc.digest)
    assert "Image is up to date" in other("pull", ref).out


def test_local_store_is_read_by_skopeo_and_umoci(registry_server: RegistryUnderTest, hoist: Hoist,
                                                 other: Hoist, tmp_path: Path) -> None:
    ref = f"{registry_server.addr}/team/readable:2.1"
    desc = busybox_image(hoist.layout(), ref)
    hoist("push", ref)
    other("pull", ref)
    info = json.loads(skopeo("inspect", f"oci:{other.images}:{ref}").stdout)
    assert info["Digest"] == str(desc.digest) and info["Architecture"] == "amd64"
    umoci = need_tool("umoci")
    listed = subprocess.run([umoci, "ls", "--layout", str(other.images)], capture_output=True, text=True)
    assert ref in listed.stdout.split(), listed.stderr
    bundle = tmp_path / "bundle"
    unpacked = subprocess.run([umoci, "unpack", "--image", f"{other.images}:{ref}", str(bundle)],
                              capture_output=True, text=True)
    assert unpacked.returncode == 0, unpacked.stderr
    assert (bundle / "rootfs" / "bin" / "busybox").read_bytes() == Path("/bin/busybox").read_bytes()


def test_skopeo_push_is_pulled_by_hoist(registry_server: RegistryUnderTest, other: Hoist, tmp_path: Path) -> None:
    source = ImageLayout(tmp_path / "src").init()
    desc = busybox_image(source, "app", extra=b"from skopeo")
    ref = f"{registry_server.addr}/skopeo/app:1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{source.root}:app", f"docker://{ref}")
    other("pull", ref)
    assert manifest_digest(other.images, ref) == str(desc.digest) == remote_digest(ref)
    by_digest = f"{registry_server.addr}/skopeo/app@{desc.digest}"
    other("pull", by_digest)
    assert manifest_digest(other.images, by_digest) == str(desc.digest)


def test_hoist_push_is_pulled_by_skopeo(registry_server: RegistryUnderTest, hoist: Hoist, tmp_path: Path) -> None:
    ref = f"{registry_server.addr}/hoist/app:1"
    desc = busybox_image(hoist.layout(), ref)
    hoist("push", ref)
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'out'}:app")
    assert manifest_digest(tmp_path / "out", "app") == str(desc.digest)


def test_index_platform_selection_and_mount(registry_server: RegistryUnderTest, other: Hoist,
                                            tmp_path: Path) -> None:
    source = ImageLayout(tmp_path / "src").init()
    amd = busybox_image(source, None, extra=b"amd64")
    arm = busybox_image(source, None, extra=b"arm64", arch="arm64")
    index = build_index(source, "multi", {"linux/amd64": amd, "linux/arm64/v8": arm})
    ref = f"{registry_server.addr}/multi/app:1"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{source.root}:multi", f"docker://{ref}")

    other("pull", ref)                                   # default: the host's platform
    assert manifest_digest(other.images, ref) == str(index.digest)
    inspected = json.loads(other("inspect", ref).out)[0]
    assert inspected["Architecture"] == "amd64"
    assert inspected["Descriptor"]["digest"] == str(index.digest)

    arm_ref = f"{registry_server.addr}/multi/app:arm"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{source.root}:multi", f"docker://{arm_ref}")
    other("pull", "--platform", "linux/arm64", arm_ref)
    assert json.loads(other("inspect", "--platform", "linux/arm64", arm_ref).out)[0]["Architecture"] == "arm64"

    wrong = other("pull", "--platform", "linux/s390x", ref, ok=False)
    assert wrong.code != 0 and "linux/s390x" in wrong.err and "linux/amd64" in wrong.err
    assert len(wrong.err.strip().splitlines()) == 1

    # Both children are now local, so the whole index goes to a sibling repository, its
    # blobs mounted from the repository they came from rather than uploaded.
    sibling = f"{registry_server.addr}/multi/copy:1"
    other("tag", ref, sibling)
    out = other("push", sibling).out
    assert "Mounted" in out and "Pushed" not in out, out
    assert remote_digest(sibling) == str(index.digest)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{sibling}").stdout
    assert {m["digest"] for m in json.loads(raw)["manifests"]} == {str(amd.digest), str(arm.digest)}


_BUILDS = itertools.count(1)


@pytest.fixture
def busybox_docker_image(dockerd: Dockerd, tmp_path: Path) -> str:
    """An image built by docker itself: FROM scratch with busybox-static."""
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (context / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"sh\"]\n")
    tag = f"hoist-client-test/busybox:{next(_BUILDS)}"
    dockerd("build", "-q", "-t", tag, str(context), env={"DOCKER_BUILDKIT": "0"})
    return tag


def _docker_repo_digest(dockerd: Dockerd, ref: str) -> str:
    digests = json.loads(dockerd("inspect", "--format", "{{json .RepoDigests}}", ref).stdout)
    return next(d.split("@")[1] for d in digests if d.startswith(ref.rsplit(":", 1)[0]))


def test_docker_push_is_pulled_by_hoist_and_back(distribution: Distribution, dockerd: Dockerd,
                                                 busybox_docker_image: str, other: Hoist) -> None:
    ref = f"{distribution.addr}/docker/busybox:1"
    dockerd("tag", busybox_docker_image, ref)
    dockerd("push", ref)
    digest = _docker_repo_digest(dockerd, ref)
    other("pull", ref)
    assert manifest_digest(other.images, ref) == digest

    back = f"{distribution.addr}/docker/busybox-back:1"
    other("tag", ref, back)
    other("push", back)
    dockerd("pull", back)
    assert _docker_repo_digest(dockerd, back) == digest


def test_docker_loads_hoist_save_and_hoist_loads_docker_save(dockerd: Dockerd, busybox_docker_image: str,
                                                              hoist: Hoist, tmp_path: Path) -> None:
    saved = tmp_path / "from-docker.tar"
    dockerd("save", "-o", str(saved), busybox_docker_image)
    out = hoist("load", "-i", str(saved)).out
    assert "Loaded image" in out
    docker_id = dockerd("inspect", "--format", "{{.Id}}", busybox_docker_image).stdout.decode().strip()
    assert json.loads(hoist("inspect", busybox_docker_image).out)[0]["Id"] == docker_id

    mine = "127.0.0.1:5999/hoist/saved:1"
    busybox_image(hoist.layout(), mine, extra=b"saved by hoist")
    archive = tmp_path / "from-hoist.tar"
    hoist("save", "-o", str(archive), mine)
    dockerd("load", "-i", str(archive))
    hoist_id = json.loads(hoist("inspect", mine).out)[0]["Id"]
    assert dockerd("inspect", "--format", "{{.Id}}", mine).stdout.decode().strip() == hoist_id
    skopeo("copy", f"docker-archive:{archive}:{mine.split('/', 1)[0]}/hoist/saved:1", f"oci:{tmp_path / 'x'}:x")
    hoist("load", "-i", str(archive))                    # and back into hoist from its own archive
