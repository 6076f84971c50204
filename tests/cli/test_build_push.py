"""``hoist build --push``: every ``-t`` pushed with the client after the build, blobs already in
the registry not sent again; a registry that refuses fails the command after the build with its
reason, the image kept in the local store. The registry is hoist's own, on loopback."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import run_hoist
from tests.cli.helpers import Hoist
from tests.images import busybox_image
from tests.peers import free_port
from tests.registry.faults import Faults, faulty_app, serve_on_loopback

EPOCH = "1700000000"


def _runner(base: Path) -> Hoist:
    h = Hoist(base)
    busybox_image(h.images)
    h.env["SOURCE_DATE_EPOCH"] = EPOCH
    return h


def _ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo built > /b\nCOPY a.txt /a.txt\n")
    (ctx / "a.txt").write_text("a\n")
    return ctx


def _uploads(faults: Faults) -> list[str]:
    return [s.path for s in faults.seen if s.method in ("POST", "PATCH", "PUT") and "/blobs/uploads/" in s.path]


async def test_push_sends_every_tag_and_skips_blobs_already_there(tmp_path: Path) -> None:
    h = _runner(tmp_path / "a")
    ctx = _ctx(tmp_path)
    faults = Faults()
    async with serve_on_loopback(faulty_app(faults)) as host:
        r = await run_hoist(h, "build", "--push", "-t", f"{host}/team/app:1", "-t", f"{host}/team/app:2", str(ctx))
        image_id = r.out.strip()
        assert f"pushing {host}/team/app:1: digest: " in r.err and f"pushing {host}/team/app:2" in r.err
        local = h.layout().find(f"{host}/team/app:1").descriptor
        assert len(_uploads(faults)) > 0
        # Another runner pulls what was pushed: the same manifest, the same image id.
        other = Hoist(tmp_path / "b")
        for tag in ("1", "2"):
            await run_hoist(other, "pull", f"{host}/team/app:{tag}")
            pulled = other.layout().find(f"{host}/team/app:{tag}").descriptor
            assert pulled.digest == local.digest
            assert str(other.layout().image_id(pulled)) == image_id
        # A rebuild pushed under a new tag sends no blob: each is there (HEAD), only the manifest goes.
        faults.seen.clear()
        again = await run_hoist(h, "build", "--push", "-t", f"{host}/team/app:3", str(ctx))
        assert again.out.strip() == image_id and "(0 blobs uploaded)" in again.err
        assert _uploads(faults) == []
        assert faults.seen_for("PUT", "/team/app/manifests/3")


async def test_refused_push_fails_after_the_build_and_keeps_the_image(tmp_path: Path) -> None:
    h = _runner(tmp_path / "a")
    ctx = _ctx(tmp_path)
    faults = Faults()
    faults.add("POST", "/blobs/uploads/", "status", status=403, times=1000)
    async with serve_on_loopback(faulty_app(faults)) as host:
        ref = f"{host}/team/app:1"
        r = await run_hoist(h, "build", "--push", "-t", ref, str(ctx), ok=False)
    assert r.code == 1
    last = r.err.strip().splitlines()[-1]
    assert last.startswith(f"hoist build: push of {ref} failed: ") and "denied" in last, r.err
    assert f"the image is kept locally as {ref}" in last
    assert "DONE" in r.err                          # the build itself ran to its end first
    out = await run_hoist(h, "run", "--rm", ref, "cat", "/b", "/a.txt")
    assert out.out == "built\na\n"


async def test_push_to_a_registry_that_is_down(tmp_path: Path) -> None:
    h = _runner(tmp_path / "a")
    ctx = _ctx(tmp_path)
    ref = f"127.0.0.1:{free_port()}/team/app:1"
    r = await run_hoist(h, "build", "--push", "-t", ref, str(ctx), ok=False)
    assert r.code == 1
    last = r.err.strip().splitlines()[-1]
    assert "unreachable" in last and "kept locally" in last, r.err
    assert h.layout().find(ref)


async def test_push_needs_a_tag(tmp_path: Path) -> None:
    h = _runner(tmp_path / "a")
    r = await run_hoist(h, "build", "--push", str(_ctx(tmp_path)), ok=False)
    assert r.code != 0 and "--push needs at least one -t" in r.err and "#1" not in r.err
