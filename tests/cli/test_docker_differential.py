"""``ps``, ``images``, ``inspect`` and ``logs`` against docker's, for the same image and the same
containers (the session's private dockerd): the columns and fields docker users read must say
the same thing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import REPO_ROOT, Hoist
from tests.images import busybox_image
from tests.peers import Dockerd

REF = "hoist-diff/box:1"
# The pauses keep the two streams' records in one order for both (each engine reads stdout and
# stderr from separate pipes, so lines written back to back may be recorded either way round).
SCRIPT = "echo out one; sleep 0.2; echo err one >&2; sleep 0.2; echo out two; exit 3"


@pytest.fixture
def both(containers: Hoist, dockerd: Dockerd, tmp_path: Path) -> Iterator[tuple[Hoist, Dockerd]]:
    hoist = containers
    busybox_image(hoist.layout(), REF, config={"Labels": {"from": "image"}})
    archive = tmp_path / "box.tar"
    hoist("save", "-o", str(archive), REF)
    dockerd("load", "-i", str(archive))
    names = ["hd-job", "hd-svc"]
    yield hoist, dockerd
    dockerd("rm", "-f", *names, check=False)
    dockerd("rmi", "-f", REF, check=False)


def _docker(d: Dockerd, *args: str) -> str:
    return d(*args).stdout.decode()


def _hoist_wait(h: Hoist, name: str) -> None:
    from runtime.containers import ContainerStore

    c = ContainerStore(h.root / "containers").get(name)
    deadline = time.monotonic() + 60
    while c.status()[0] != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_images_and_inspect_match_docker(both: tuple[Hoist, Dockerd]) -> None:
    h, d = both
    fmt = "{{.Repository}}|{{.Tag}}|{{.ID}}|{{.Size}}|{{.Digest}}"
    ours = h("images", "--format", fmt, "hoist-diff/box").out
    theirs = _docker(d, "images", "--format", fmt, "hoist-diff/box")
    assert ours == theirs            # the unpacked SIZE included: the same bytes however stored
    assert h("images").out.splitlines()[0].split() == _docker(d, "images").splitlines()[0].split()
    assert h("images", "--digests").out.splitlines()[0].split() == \
        _docker(d, "images", "--digests").splitlines()[0].split()
    assert h("images", "-q", "hoist-diff/box").out == _docker(d, "images", "-q", "hoist-diff/box")
    assert h("images", "--filter", "reference=hoist-diff/*", "--format", "{{.Repository}}").out == \
        _docker(d, "images", "--filter", "reference=hoist-diff/*", "--format", "{{.Repository}}")
    ours_i, theirs_i = json.loads(h("inspect", REF).out)[0], json.loads(_docker(d, "inspect", REF))[0]
    assert ours_i["Id"] == theirs_i["Id"]
    assert ours_i["RootFS"]["diff_ids"] == theirs_i["RootFS"]["Layers"]


def test_ps_and_logs_match_docker(both: tuple[Hoist, Dockerd], tmp_path: Path) -> None:
    h, d = both
    common = ["--label", "hdiff=1", "--label", "tier=batch", REF, "sh", "-c", SCRIPT]
    h("run", "-d", "--name", "hd-job", *common)
    d("run", "-d", "--network", "none", "--name", "hd-job", *common)
    d("wait", "hd-job", check=False)
    _hoist_wait(h, "hd-job")
    svc = ["--label", "hdiff=1", "--label", "tier=web", REF, "sleep", "60"]
    h("run", "-d", "--name", "hd-svc", *svc)
    d("run", "-d", "--network", "none", "--name", "hd-svc", *svc)

    fmt = "{{.Names}}|{{.Image}}|{{.Command}}|{{.State}}|{{.Labels}}|{{.Ports}}|{{.Size}}"
    for flags in (["-a"], [], ["-a", "--filter", "status=exited"], ["-a", "--filter", "exited=3"],
                  ["-a", "--filter", "label=tier=web"], ["-a", "--filter", "name=job"], ["-a", "--no-trunc"]):
        # label=hdiff: only this test's containers (the session's dockerd is shared)
        ours = h("ps", *flags, "--filter", "label=hdiff", "-s", "--format", fmt).out
        theirs = _docker(d, "ps", *flags, "--filter", "label=hdiff", "-s", "--format", fmt)
        assert ours, flags
        assert _labels_sorted(ours) == _labels_sorted(theirs), flags
    ours_status = h("ps", "-a", "--filter", "name=hd-job", "--format", "{{.Status}}").out
    theirs_status = _docker(d, "ps", "-a", "--filter", "name=hd-job", "--format", "{{.Status}}")
    assert ours_status.split()[:2] == theirs_status.split()[:2] == ["Exited", "(3)"]
    header = h("ps", "-a", "-s").out.splitlines()[0].split()  # the header, whatever the rows
    assert header == _docker(d, "ps", "-a", "-s").splitlines()[0].split()

    for flags in ([], ["--tail", "1"], ["--tail", "0"], ["--since", "1h"], ["--until", "1h"]):
        ours_p = subprocess.run([sys.executable, "-m", "hoist.cli", "logs", *flags, "hd-job"], capture_output=True,
                                env=h.env, cwd=REPO_ROOT)
        theirs_p = d("logs", *flags, "hd-job")
        assert (ours_p.stdout, ours_p.stderr) == (theirs_p.stdout, theirs_p.stderr), flags
    stamp = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z out one$")
    ours_t = subprocess.run([sys.executable, "-m", "hoist.cli", "logs", "-t", "hd-job"], capture_output=True,
                            env=h.env, cwd=REPO_ROOT).stdout.splitlines()[0]
    theirs_t = d("logs", "-t", "hd-job").stdout.splitlines()[0]
    assert stamp.match(ours_t) and stamp.match(theirs_t), (ours_t, theirs_t)


def _labels_sorted(text: str) -> list[str]:
    """docker prints a container's labels in map order: compare them as sets."""
    out = []
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) > 4:
            fields[4] = ",".join(sorted(fields[4].split(",")))
        out.append("|".join(fields))
    return out


def test_docker_save_then_load_and_push_compresses(both: tuple[Hoist, Dockerd], tmp_path: Path) -> None:
    """``docker save X | hoist load; hoist push``: the layers go up gzipped, as docker pushes."""
    from registry import routes
    from storage import mediatypes as mt
    from tests.registry.http import ServerProcess

    _, d = both
    archive = tmp_path / "docker-saved.tar"
    archive.write_bytes(d("save", REF).stdout)
    h = Hoist(tmp_path / "fresh")
    proc = subprocess.run([sys.executable, "-m", "hoist.cli", "load"], stdin=open(archive, "rb"),
                          capture_output=True, text=True, env=h.env, cwd=REPO_ROOT)
    assert proc.returncode == 0 and f"Loaded image: {REF}" in proc.stdout, proc
    local = h.layout().manifest(h.layout().find(REF).descriptor)
    assert {layer.media_type for layer in local.layers} == {mt.OCI_LAYER}       # docker saves them plain
    server = ServerProcess(tmp_path / "registry")
    try:
        target = f"{server.addr}/team/box:1"
        h("tag", REF, target)
        h("push", target)
        res = server.client().request("GET", routes.manifest("team/box", "1"),
                                      headers={"Accept": f"{mt.OCI_MANIFEST}, {mt.DOCKER_MANIFEST}"})
        pushed = json.loads(res.body)
        assert [layer["mediaType"] for layer in pushed["layers"]] == [mt.OCI_LAYER_GZIP] * len(local.layers)
        assert sum(layer["size"] for layer in pushed["layers"]) < sum(layer.size for layer in local.layers)
        assert pushed["config"]["digest"] == json.loads(_docker(d, "inspect", REF))[0]["Id"]
    finally:
        server.stop()
