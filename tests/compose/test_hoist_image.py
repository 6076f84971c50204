"""hoist's own image (the ``Dockerfile`` at the root) built by ``hoist build`` on a local base (a
debootstrap'd bookworm with python3, venv and CA certificates added by a ``hoist build``, the
base ``tests/interop/test_build_debian.py`` makes), then run by ``hoist run``: the default
command serves the registry on 0.0.0.0:5000 with its store in /var/lib/hoist/registry, and with
``--network host`` on a loopback port it takes a real ``hoist push`` and ``hoist pull``; saved by
``hoist save`` and loaded into docker, ``docker run`` of it serves the same.

Slow by nature (debootstrap, apt and pip over the network): the image is built once (conftest).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.cli.helpers import Hoist
from tests.images import busybox_image
from tests.peers import Dockerd

PROBE = ("import json, urllib.request, urllib.error\n"
         "try:\n"
         "    r = urllib.request.urlopen('http://127.0.0.1:5000/v2/', timeout=5)\n"
         "    print(r.status, r.headers.get('Docker-Distribution-API-Version'))\n"
         "except urllib.error.HTTPError as e:\n"
         "    print(e.code)\n"
         "except OSError as e:\n"
         "    print('down', e.__class__.__name__)\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_v2(url: str) -> urllib.request.http.client.HTTPResponse:  # type: ignore[name-defined]
    last: Exception | None = None
    for _ in range(300):
        try:
            return urllib.request.urlopen(url, timeout=5)
        except (urllib.error.URLError, ConnectionError) as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered: {last}")


def test_hoist_image_built_by_hoist_serves_the_registry(hoist_image: Hoist, tmp_path: Path,
                                                         dockerd: Dockerd) -> None:
    hoist = hoist_image
    assert "hoist 0." in hoist.built  # type: ignore[attr-defined]   # the build's own `hoist --version` check

    config = json.loads(hoist("inspect", "hoist").out)[0]["Config"]
    assert config["Entrypoint"] == ["hoist"]
    assert config["Cmd"] == ["registry", "serve", "--addr", "0.0.0.0:5000", "--root", "/var/lib/hoist/registry"]
    assert "/var/lib/hoist/registry" in config["Volumes"] and "5000/tcp" in config["ExposedPorts"]

    # The default command, in the container's own network namespace: /v2/ on port 5000.
    store = tmp_path / "store"
    store.mkdir()
    cid = hoist("run", "-d", "--name", "reg-default", "-v", f"{store}:/var/lib/hoist/registry", "hoist").out.strip()
    try:
        answer = ""
        for _ in range(100):
            res = hoist("exec", cid, "python3", "-c", PROBE, ok=False)
            answer = res.out.strip()
            if res.code == 0 and answer and not answer.startswith("down"):
                break
            time.sleep(0.2)
        assert answer == "200 registry/2.0", answer
    finally:
        hoist("rm", "-f", cid, ok=False)

    # On the host's network at a loopback port: a real push and pull through it.
    port = _free_port()
    cid = hoist("run", "-d", "--network", "host", "-v", f"{store}:/var/lib/hoist/registry", "hoist",
                "registry", "serve", "--addr", f"127.0.0.1:{port}", "--root", "/var/lib/hoist/registry").out.strip()
    try:
        r = _wait_v2(f"http://127.0.0.1:{port}/v2/")
        assert r.status == 200 and r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        busybox_image(hoist.layout(), f"127.0.0.1:{port}/team/busybox:1")
        hoist("push", f"127.0.0.1:{port}/team/busybox:1")
        assert (store / "docker" / "registry" / "v2" / "repositories" / "team" / "busybox").is_dir()
        other = Hoist(tmp_path / "other")
        other("pull", f"127.0.0.1:{port}/team/busybox:1")
        assert other("run", "--rm", f"127.0.0.1:{port}/team/busybox:1", "echo", "pulled").out == "pulled\n"
    finally:
        hoist("rm", "-f", cid, ok=False)

    # The same image under docker: saved by hoist, loaded and run by dockerd.
    archive = tmp_path / "hoist-image.tar"
    hoist("save", "-o", str(archive), "hoist", timeout=600)
    dockerd("load", "-i", str(archive))
    assert dockerd("run", "--rm", "--network", "none", "hoist", "--version").stdout.decode().startswith("hoist 0.")
    dockerd("run", "-d", "--name", "hoist-registry-test", "--network", "none", "hoist")
    try:
        answer = ""
        for _ in range(100):
            res = dockerd("exec", "hoist-registry-test", "python3", "-c", PROBE, check=False)
            answer = res.stdout.decode().strip()
            if res.returncode == 0 and answer and not answer.startswith("down"):
                break
            time.sleep(0.2)
        assert answer == "200 registry/2.0", answer
    finally:
        dockerd("rm", "-f", "hoist-registry-test", check=False)


def test_the_readme_registry_line_serves_on_a_published_port(hoist_image: Hoist, tmp_path: Path) -> None:
    """README: ``hoist run -d --restart=always -p 5000:5000 -v /srv/registry:/var/lib/hoist/registry
    hoist``, on a test "host" namespace: /v2/ from another host and from 127.0.0.1, a push into the
    volume; removed, it leaves no link or rule of its own (the default bridge stays, as docker0)."""
    from tests.runtime.test_network import Bed, eventually

    store = tmp_path / "srv-registry"
    # A root of its own (the session's images and snapshots hard-linked in: both are read-only by
    # convention), so the default bridge it makes is not remembered by the other tests' root.
    own = Hoist(tmp_path)
    own.root.mkdir(mode=0o700)
    for part in ("images", "snapshots"):
        subprocess.run(["cp", "-al", str(hoist_image.root / part), str(own.root / part)], check=True)
    bed = Bed(own.root).start()
    try:
        pristine = bed.kernel_state()
        # As a user types it: the default network, the bridge (the suite's default is none).
        env = {k: v for k, v in bed.env().items() if k != "HOIST_DEFAULT_NETWORK"}
        run = bed.hoist("run", "-d", "--name", "registry", "--restart=always", "-p", "5000:5000",
                        "-v", f"{store}:/var/lib/hoist/registry", "hoist", env=env)
        assert run.code == 0, run.err
        v2 = eventually(lambda: bed.client_sh("busybox", "wget", "-qO-", f"http://{bed.host_addr}:5000/v2/"),
                        "the registry from the client host")
        assert v2.strip() == "{}"
        assert bed.host_sh("busybox", "wget", "-qO-", "http://127.0.0.1:5000/v2/").out.strip() == "{}"
        state = json.loads(bed.ok("inspect", "registry"))[0]
        assert state["HostConfig"]["RestartPolicy"]["Name"] == "always"
        busybox_image(own.layout(), "127.0.0.1:5000/team/busybox:1")
        bed.ok("push", "127.0.0.1:5000/team/busybox:1")
        assert (store / "docker" / "registry" / "v2" / "repositories" / "team" / "busybox").is_dir()
        assert "5000" in str(bed.kernel_state()["rules"])         # its DNAT, while it runs
        bed.ok("rm", "-f", "registry")
        # What stays is the default bridge itself (as docker0 does), not the container's veth or its rules.
        after = bed.kernel_state()
        assert [name for name, _ in set(after["links"]) - set(pristine["links"])] == ["hoist0"]  # type: ignore[arg-type]
        assert "5000" not in str(after["rules"])
    finally:
        bed.stop()
