"""The everyday loop across all three parts of hoist: an image built by docker is pushed to
hoist's registry, pulled by `hoist pull` on a "host" and run by `hoist run`."""

from __future__ import annotations

import os
from pathlib import Path

from tests.cli.helpers import Hoist
from tests.images import busybox_files, write_image
from tests.peers import Dockerd, absent, skopeo
from tests.registry.http import ServerProcess


def test_docker_build_push_then_hoist_pull_run(tmp_path: Path, dockerd: Dockerd) -> None:
    if os.geteuid() != 0:
        absent("hoist run needs root")
    registry = ServerProcess(tmp_path / "registry-root")
    try:
        context = tmp_path / "ctx"
        context.mkdir()
        (context / "busybox").write_bytes(Path("/usr/bin/busybox").read_bytes())
        (context / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
            "ENV GREETING=hello\nWORKDIR /srv\nCMD [\"sh\", \"-c\", \"echo $GREETING from $(pwd) as $(id -u)\"]\n")
        ref = f"{registry.addr}/team/app:1.4"
        os.chmod(context / "busybox", 0o755)
        dockerd("build", "--network", "host", "-t", ref, str(context), env={"DOCKER_BUILDKIT": "1"})
        dockerd("push", ref)
        expected = dockerd("run", "--rm", "--network", "none", ref).stdout.decode()
        host = Hoist(tmp_path / "host")
        host("pull", ref)
        assert host("run", "--rm", ref).out == expected == "hello from /srv as 0\n"
        # And back: what hoist pulled, hoist pushes to another repository, and skopeo reads it.
        again = f"{registry.addr}/team/copy:1"
        host("tag", ref, again)
        host("push", again)
        skopeo("inspect", "--tls-verify=false", f"docker://{again}")
    finally:
        registry.stop()


def test_skopeo_push_hoist_pull_run(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        absent("hoist run needs root")
    registry = ServerProcess(tmp_path / "registry-root")
    try:
        layout = tmp_path / "src"
        write_image(layout, "bb", [busybox_files(), {"etc/motd": b"from the registry\n"}], {"Cmd": ["cat", "/etc/motd"]})
        ref = f"{registry.addr}/team/bb:1"
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:bb", f"docker://{ref}")
        host = Hoist(tmp_path / "host")
        host("pull", ref)
        assert host("run", "--rm", ref).out == "from the registry\n"
    finally:
        registry.stop()
