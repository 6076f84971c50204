"""An image made by ``hoist build`` and pushed with ``hoist push`` to CNCF Distribution is an
ordinary image to everyone else: skopeo reads it (manifest, config, layers), umoci unpacks it,
runc runs the bundle, docker pulls and runs it; the output is what ``hoist run`` prints.

One Dockerfile (FROM the busybox-static base, RUN, COPY, ENV, WORKDIR, USER, CMD) built in each
shape CI pushes: ``--format oci`` and ``--format docker`` with gzip layers, and ``--format oci
--compression zstd``. Two peers here cannot read zstd layers, and those combinations say so:
Debian's docker 20.10 (zstd pulls came with Engine 23) is skipped; Debian's umoci 0.4.7 (zstd came
with 0.5) gets the layout skopeo writes with ``--dest-compress-format gzip``, so skopeo
decompressing hoist's zstd layers is what makes the bundle runc runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storage import mediatypes as mt
from storage.layout import ImageLayout
from storage.reference import parse_reference
from tests.cli.helpers import Hoist
from tests.images import busybox_image, manifest_digest
from tests.peers import Distribution, Dockerd, absent, need_tool, skopeo

DOCKERFILE = """\
FROM busybox
RUN mkdir -p /srv/data && echo built by RUN > /srv/data/run.txt && chown -R app:app /srv/data
COPY msg.txt /srv/
ENV GREETING=hello
WORKDIR /srv
USER app
CMD ["sh", "-c", "echo \\"$GREETING from $(pwd) as $(id -u):$(id -g)\\"; cat msg.txt data/run.txt"]
"""
EXPECTED = "hello from /srv as 1000:1000\ncopied by COPY\nbuilt by RUN\n"

CASES = [("oci", "gzip"), ("docker", "gzip"), ("oci", "zstd")]
IDS = [f"{fmt}-{comp}" for fmt, comp in CASES]
DOCKER_CANNOT_ZSTD = pytest.mark.skip(reason="Debian's docker 20.10 cannot pull zstd layers (Engine 23 can)")


@dataclass(frozen=True)
class Pushed:
    fmt: str
    compression: str
    ref: str                  # REGISTRY/build/FMT-COMP:1
    digest: str               # the manifest digest in the local store, which the registry must serve
    image_id: str             # the config digest `hoist build` printed
    config: dict[str, Any]    # the image config hoist built


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Hoist:
    if os.geteuid() != 0:
        absent("hoist build runs RUN steps in containers: needs root")
    base = tmp_path_factory.mktemp("build-interop")
    hoist = Hoist(base)
    busybox_image(hoist.images)
    ctx = base / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "msg.txt").write_text("copied by COPY\n")
    return hoist


@pytest.fixture(scope="module")
def pushed(distribution: Distribution, builder: Hoist) -> Iterator[Callable[[str, str], Pushed]]:
    """Build and push each (format, compression) once per module."""
    done: dict[tuple[str, str], Pushed] = {}
    ctx = builder.root.parent / "ctx"

    def get(fmt: str, compression: str) -> Pushed:
        if (fmt, compression) not in done:
            ref = f"{distribution.addr}/build/{fmt}-{compression}:1"
            image_id = builder("build", "-q", "--format", fmt, "--compression", compression, "-t", ref,
                               str(ctx)).out.strip()
            assert builder("run", "--rm", ref).out == EXPECTED
            out = builder("push", ref).out
            layout = ImageLayout(builder.images)
            digest = manifest_digest(builder.images, str(parse_reference(ref)))
            assert f"digest: {digest}" in out, out
            desc, manifest = layout.resolve_image(str(parse_reference(ref)))
            assert manifest.config is not None and str(manifest.config.digest) == image_id
            config = json.loads(layout.read_blob(manifest.config.digest))
            done[fmt, compression] = Pushed(fmt, compression, ref, digest, image_id, config)
        return done[fmt, compression]

    yield get


@pytest.mark.parametrize(("fmt", "compression"), CASES, ids=IDS)
def test_skopeo_reads_the_pushed_build(pushed: Callable[[str, str], Pushed], fmt: str, compression: str,
                                       tmp_path: Path) -> None:
    image = pushed(fmt, compression)
    remote = f"docker://{image.ref}"
    info = json.loads(skopeo("inspect", "--tls-verify=false", remote).stdout)
    assert info["Digest"] == image.digest
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert len(info["Layers"]) == len(image.config["rootfs"]["diff_ids"])

    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", remote).stdout)
    layer_types = [layer["mediaType"] for layer in raw["layers"]]
    if fmt == "docker":
        assert raw["mediaType"] == mt.DOCKER_MANIFEST and raw["config"]["mediaType"] == mt.DOCKER_CONFIG
        assert set(layer_types) == {mt.DOCKER_LAYER}
    else:
        assert raw["mediaType"] == mt.OCI_MANIFEST and raw["config"]["mediaType"] == mt.OCI_CONFIG
        new = mt.OCI_LAYER_ZSTD if compression == "zstd" else mt.OCI_LAYER_GZIP
        # The base's layer is kept as it was stored (gzip); the build's own layers are `compression`.
        assert layer_types[0] == mt.OCI_LAYER_GZIP and set(layer_types[1:]) == {new}

    raw_config = skopeo("inspect", "--config", "--raw", "--tls-verify=false", remote).stdout
    assert "sha256:" + hashlib.sha256(raw_config).hexdigest() == image.image_id == raw["config"]["digest"]
    config = json.loads(raw_config)
    assert config == image.config
    c = config["config"]
    assert c["User"] == "app" and c["WorkingDir"] == "/srv" and "GREETING=hello" in c["Env"]
    assert c["Cmd"][:2] == ["sh", "-c"]

    # skopeo copy verifies every blob against its digest: the OCI build lands unchanged; the
    # Docker one is converted to OCI (a new manifest and config), its layers' bytes kept.
    out = tmp_path / "oci"
    skopeo("copy", "--src-tls-verify=false", remote, f"oci:{out}:app")
    copied = manifest_digest(out, "app")
    manifest = json.loads((out / "blobs" / "sha256" / copied.split(":")[1]).read_text())
    assert [layer["digest"] for layer in manifest["layers"]] == [layer["digest"] for layer in raw["layers"]]
    if fmt == "oci":
        assert copied == image.digest
    else:
        converted = json.loads((out / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_text())
        assert converted["config"] == c and converted["rootfs"] == config["rootfs"]


def _runc_run(bundle: Path, state: Path) -> subprocess.CompletedProcess[str]:
    runc = need_tool("runc")
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False          # umoci writes a bundle for a terminal
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"hoist-build-interop-{os.getpid()}-{bundle.name}"
    try:
        return subprocess.run([runc, "--root", str(state), "run", "-b", str(bundle), cid], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run([runc, "--root", str(state), "delete", "-f", cid], capture_output=True)


@pytest.mark.parametrize(("fmt", "compression"), CASES, ids=IDS)
def test_umoci_unpacks_and_runc_runs_the_pushed_build(pushed: Callable[[str, str], Pushed], fmt: str,
                                                      compression: str, tmp_path: Path) -> None:
    image = pushed(fmt, compression)
    umoci = need_tool("umoci")
    layout = tmp_path / "oci"
    # umoci 0.4.7 refuses zstd layers; skopeo turns them into gzip ones (decompressing and checking them).
    recompress = ["--dest-compress-format", "gzip"] if compression == "zstd" else []
    skopeo("copy", "--src-tls-verify=false", *recompress, f"docker://{image.ref}", f"oci:{layout}:app")
    bundle = tmp_path / "bundle"
    res = subprocess.run([umoci, "unpack", "--image", f"{layout}:app", str(bundle)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr

    rootfs = bundle / "rootfs"
    assert (rootfs / "bin" / "busybox").read_bytes() == Path("/usr/bin/busybox").read_bytes()
    assert (rootfs / "srv" / "msg.txt").read_text() == "copied by COPY\n"
    assert (rootfs / "srv" / "msg.txt").stat().st_mode & 0o777 == 0o644
    data = (rootfs / "srv" / "data").stat()
    assert (data.st_uid, data.st_gid) == (1000, 1000)          # RUN's chown, kept in its layer
    assert (rootfs / "srv" / "data" / "run.txt").stat().st_uid == 1000

    process = json.loads((bundle / "config.json").read_text())["process"]
    assert process["cwd"] == "/srv" and process["user"]["uid"] == 1000
    assert "GREETING=hello" in process["env"]
    run = _runc_run(bundle, tmp_path / "runc-state")
    assert run.returncode == 0, run.stderr
    assert run.stdout == EXPECTED


@pytest.mark.parametrize(("fmt", "compression"), [
    ("oci", "gzip"), ("docker", "gzip"), pytest.param("oci", "zstd", marks=DOCKER_CANNOT_ZSTD)], ids=IDS)
def test_docker_pulls_and_runs_the_pushed_build(pushed: Callable[[str, str], Pushed], dockerd: Dockerd,
                                                fmt: str, compression: str) -> None:
    image = pushed(fmt, compression)
    dockerd("pull", image.ref)                    # 127.0.0.0/8 is an insecure registry to dockerd
    try:
        digests = json.loads(dockerd("inspect", "--format", "{{json .RepoDigests}}", image.ref).stdout)
        assert f"{image.ref.rsplit(':', 1)[0]}@{image.digest}" in digests
        assert dockerd("inspect", "--format", "{{.Id}}", image.ref).stdout.decode().strip() == image.image_id
        assert dockerd("run", "--rm", "--network", "none", image.ref).stdout.decode() == EXPECTED
    finally:
        dockerd("rmi", "-f", image.ref, check=False)

