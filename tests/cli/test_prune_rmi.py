"""``rmi`` of an image a container uses (docker's conflicts), and ``container prune``,
``image prune``, ``system prune``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.cli.helpers import Hoist, one_line
from tests.images import Entry, add_image, busybox_image, files_layer


@pytest.fixture
def h(containers: Hoist) -> Iterator[Hoist]:
    hoist = containers
    busybox_image(hoist.layout())
    yield hoist


def _wait_exited(h: Hoist, name: str) -> None:
    from runtime.containers import ContainerStore

    c = ContainerStore(h.root / "containers").get(name)
    deadline = time.monotonic() + 60
    while c.status()[0] != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_rmi_refuses_an_image_a_container_uses(h: Hoist) -> None:
    layout = h.layout()
    h("run", "-d", "--name", "busy", "busybox", "sleep", "60")
    image_id = h("images", "-q", "--no-trunc").out.split()[0]
    one_line(h("rmi", "busybox", ok=False), 'unable to remove repository reference "busybox" (must force)',
              "is using its referenced image")
    one_line(h("rmi", "-f", image_id[7:19], ok=False), "(cannot be forced) - image is being used by running container")
    # Another name keeps it: untagging this one is fine.
    h("tag", "busybox", "other:1")
    assert "Untagged: docker.io/library/other:1" in h("rmi", "other:1").out
    # -f: the name goes, the image stays (untagged) while the container uses it.
    out = h("rmi", "-f", "busybox").out
    assert "Untagged: docker.io/library/busybox:latest" in out and "Deleted" not in out
    assert h("images", "--format", "{{.Repository}}:{{.Tag}}").out == "<none>:<none>\n"
    blobs = set(layout.blobs())
    assert blobs and h("ps", "-q").out.strip()
    # Once no container uses it, image prune takes it.
    h("rm", "-f", "busy")
    out = h("image", "prune", "-f").out
    assert "Deleted Images:" in out and "Total reclaimed space:" in out
    assert list(layout.blobs()) == [] and layout.refs() == []


def test_container_image_and_system_prune(h: Hoist) -> None:
    h("run", "-d", "--name", "up", "busybox", "sleep", "60")
    h("run", "-d", "--name", "done1", "--label", "keep=no", "busybox", "sh", "-c", "echo data > /f")
    h("run", "-d", "--name", "done2", "--label", "keep=yes", "busybox", "true")
    for name in ("done1", "done2"):
        _wait_exited(h, name)
    out = h("container", "prune", "-f", "--filter", "label=keep=no").out
    assert out.startswith("Deleted Containers:\n") and "Total reclaimed space: 5B" in out
    assert h("ps", "-a", "--format", "{{.Names}}").out.split() == ["done2", "up"]
    h("container", "prune", "-f")
    assert h("ps", "-a", "--format", "{{.Names}}").out.split() == ["up"]

    layout = h.layout()
    unused = add_image(layout, "unused:1", [files_layer({"u": b"unused"})], {})
    dangling = add_image(layout, None, [files_layer({"d": b"dangling"})], {})
    layout.tag(str(dangling.digest), dangling)
    out = h("image", "prune", "-f").out
    assert f"untagged: {dangling.digest}" in out and f"deleted: {dangling.digest}" in out
    assert not layout.has_blob(dangling.digest) and layout.has_blob(unused.digest)
    out = h("image", "prune", "-a", "-f").out                # busybox is in use by "up": kept
    assert "untagged: docker.io/library/unused:1" in out
    assert h("images", "--format", "{{.Repository}}").out.split() == ["busybox"]

    h("run", "--name", "anon", "-v", "/scratch", "busybox", "true")
    h("volume", "create", "named")
    h("stop", "-t", "0", "up")
    out = h("system", "prune", "-a", "--volumes", "-f").out
    assert "Deleted Containers:" in out and "Deleted Volumes:" in out and "Deleted Images:" in out
    assert h("ps", "-aq").out == "" and h("images", "-q").out == ""
    assert h("volume", "ls", "-q").out.split() == ["named"]   # named volumes stay (docker 23+)
    one_line(h("container", "prune", "--filter", "colour=red", ok=False), "invalid filter")


def test_rmi_and_image_prune_remove_the_unpacked_layers(h: Hoist) -> None:
    """docker's rmi removes the image's layers: here the snapshots no image and no container
    uses any more (before, removing every image left them all)."""
    snapshots = h.root / "snapshots"

    def chains() -> set[str]:
        return {p.name for p in snapshots.iterdir() if not p.name.startswith(".")} if snapshots.is_dir() else set()

    busybox_image(h.layout(), "two:1", extra=[Entry("a.txt", data=b"a\n", mode=0o644)])
    h("run", "--rm", "busybox", "true")
    h("run", "--name", "keeper", "two:1", "cat", "/a.txt")
    before = chains()
    assert len(before) >= 2
    h("rm", "keeper")
    h("rmi", "two:1")
    after = chains()
    assert after and after < before          # busybox's stays: its image is still tagged
    h("rmi", "busybox")
    assert chains() == set()
