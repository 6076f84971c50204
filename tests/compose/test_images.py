"""``hoist compose build``, ``push`` and ``pull`` against hoist's registry on loopback, ``images``
and ``down --rmi``: a service built here and named for the registry is pushed; another hoist
(its own store) pulls it through the compose file and runs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import Hoist
from tests.images import busybox_image
from tests.registry.http import ServerProcess
from tests.runtime.conftest import need_root_and_busybox


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "registry-root")
    try:
        yield server
    finally:
        server.stop()


def test_build_push_pull_images_and_rmi(registry: ServerProcess, tmp_path: Path) -> None:
    need_root_and_busybox()
    project = tmp_path / "pub"
    (project / "app").mkdir(parents=True)
    (project / "app" / "Dockerfile").write_text("FROM busybox:latest\nCOPY msg /msg\nCMD [\"cat\", \"/msg\"]\n")
    (project / "app" / "msg").write_text("built, pushed, pulled\n")
    (project / "compose.yaml").write_text(
        "services:\n"
        f"  app:\n    build: ./app\n    image: {registry.addr}/team/app:1\n    network_mode: none\n"
        "  local:\n    build: ./app\n    network_mode: none\n")
    builder = Hoist(tmp_path / "builder")
    busybox_image(builder.layout())
    f = str(project / "compose.yaml")
    built = builder("compose", "-f", f, "build", subprocess=True, timeout=300)
    assert "Service app  Built" in built.err and "Service local  Built" in built.err
    builder("compose", "-f", f, "push", subprocess=True)
    assert (tmp_path / "registry-root" / "docker" / "registry" / "v2" / "repositories" / "team" / "app").is_dir()
    # The unnamed build (pub-local) is not pushed: compose pushes what it builds and names.
    assert not (tmp_path / "registry-root" / "docker" / "registry" / "v2" / "repositories" / "pub-local").exists()

    puller = Hoist(tmp_path / "puller")
    puller.layout()
    (project / "pull-only.yaml").write_text(
        f"services:\n  app:\n    image: {registry.addr}/team/app:1\n    network_mode: none\n")
    g = str(project / "pull-only.yaml")
    puller("compose", "-f", g, "pull", subprocess=True)
    run = puller("compose", "-f", g, "run", "--rm", "app", subprocess=True)
    assert run.out == "built, pushed, pulled\n"
    puller("compose", "-f", g, "up", "-d", subprocess=True)
    images = puller("compose", "-f", g, "images", subprocess=True).out.splitlines()
    assert images[0].split() == ["CONTAINER", "REPOSITORY", "TAG", "IMAGE", "ID"]
    assert images[1].split()[:3] == ["pub-app-1", f"{registry.addr}/team/app", "1"]

    builder("compose", "-f", f, "down", "--rmi", "local", subprocess=True)
    listing = builder("images").out
    assert "pub-local" not in listing and "team/app" in listing
    puller("compose", "-f", g, "down", "--rmi", "all", subprocess=True)
    assert "team/app" not in puller("images").out
