"""``--cache-to ...,mounts=true``: a ``RUN --mount=type=cache`` directory reaches a fresh CI runner
through the registry cache (BuildKit's users ask for it: buildkit#1474). Runner A exports it,
runner B (an empty ``HOIST_ROOT``) starts the same cache from it in a step that runs; without
``mounts=true`` nothing travels; a cache B has locally is its own; a hostile mount layer is
refused as any layer would be (the step runs on an empty cache, nothing outside is touched), and
its device nodes are left out as they are from any layer hoist unpacks unprivileged."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from builder.remote_cache import ARTIFACT_TYPE, CONFIG_TYPE
from registry.client.client import RegistryClient
from storage import mediatypes as mt
from storage.digest import Digest
from tests.cli.conftest import run_hoist
from tests.cli.helpers import Hoist, Result
from tests.cli.test_build_cache_registry import _put_artifact, distribution, hoist_registry, runner, seed_base
from tests.peers import Distribution

__all__ = ["distribution"]          # the module-scoped CNCF Distribution fixture, shared

DOCKERFILE = """\
FROM {base}
COPY a.txt /a.txt
RUN --mount=type=cache,target=/cache,id=pkgs \\
    ls -A /cache > /listing; if [ -e /cache/pkg ]; then echo hit > /result; else echo miss > /result; fi; \\
    cat /a.txt >> /cache/log; echo data > /cache/pkg; cp /cache/log /log
"""


def project(tmp_path: Path, base: str, name: str, text: str) -> Path:
    ctx = tmp_path / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    (ctx / "a.txt").write_text(text)
    return ctx


async def result(h: Hoist, image: str) -> tuple[str, str]:
    """What the RUN found in its cache mount, and the log the cache held."""
    found = await run_hoist(h, "run", "--rm", image, "cat", "/result")
    log = await run_hoist(h, "run", "--rm", image, "cat", "/log")
    return found.out.strip(), log.out


async def _fresh_runner_gets_the_cache_mount(tmp_path: Path, host: str) -> None:
    base = await seed_base(tmp_path, host)
    cache = f"{host}/team/cache:mounts"
    a, b, c = runner(tmp_path / "a"), runner(tmp_path / "b"), runner(tmp_path / "c")
    built = await run_hoist(a, "build", "-t", "app:a", "--cache-to", f"type=registry,ref={cache},mounts=true",
                            str(project(tmp_path, base, "ctx-a", "one\n")))
    assert f"exporting cache to {cache}" in built.err
    assert await result(a, "app:a") == ("miss", "one\n")

    # A fresh runner, one file changed: the RUN runs, on the cache A left.
    changed = project(tmp_path, base, "ctx-b", "two\n")
    got = await run_hoist(b, "build", "--progress", "plain", "-t", "app:b",
                          "--cache-from", f"type=registry,ref={cache}", str(changed))
    assert "cache mount 'pkgs': imported" in got.err and "WARNING" not in got.err
    assert await result(b, "app:b") == ("hit", "one\ntwo\n")
    # B's own cache now: a later build uses it, not the import again.
    (changed / "a.txt").write_text("three\n")
    again = await run_hoist(b, "build", "--progress", "plain", "-t", "app:b2",
                            "--cache-from", f"type=registry,ref={cache}", str(changed))
    assert "imported" not in again.err
    assert await result(b, "app:b2") == ("hit", "one\ntwo\nthree\n")

    # Without mounts=true no mount travels.
    plain = f"{host}/team/cache:plain"
    await run_hoist(a, "build", "-t", "app:a", "--cache-to", f"type=registry,ref={plain}",
                    str(project(tmp_path, base, "ctx-a2", "one\n")))
    async with RegistryClient(host) as client:
        raw, _, _ = await client.get_manifest("team/cache", "plain")
        response = await client.open_blob("team/cache", Digest.parse(json.loads(raw)["config"]["digest"]))
        config = json.loads(await response.read())
    assert "mounts" not in config
    got = await run_hoist(c, "build", "--progress", "plain", "-t", "app:c",
                          "--cache-from", f"type=registry,ref={plain}", str(project(tmp_path, base, "ctx-c", "four\n")))
    assert "imported" not in got.err
    assert await result(c, "app:c") == ("miss", "four\n")


async def test_a_fresh_runner_gets_the_cache_mount_through_hoists_registry(tmp_path: Path) -> None:
    async with hoist_registry() as host:
        await _fresh_runner_gets_the_cache_mount(tmp_path, host)


async def test_a_fresh_runner_gets_the_cache_mount_through_distribution(tmp_path: Path,
                                                                       distribution: Distribution) -> None:
    await _fresh_runner_gets_the_cache_mount(tmp_path, distribution.addr)


def _hostile_layer(kind: str) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if kind == "escape":
            info = tarfile.TarInfo("../../../escaped-by-cache-mount")
            payload = b"out\n"
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        else:
            info = tarfile.TarInfo("mem")
            info.type = tarfile.CHRTYPE
            info.devmajor, info.devminor = 1, 1
            tar.addfile(info)
    plain = raw.getvalue()
    return gzip.compress(plain), "sha256:" + hashlib.sha256(plain).hexdigest()


async def _upload(host: str, repo: str, data: bytes) -> str:
    digest = Digest.of(data)
    async with RegistryClient(host) as client:
        upload = await client.start_upload(repo)

        async def body() -> AsyncIterator[bytes]:
            yield data
        await client.finish_upload(upload, repo, digest, lambda: body(), len(data))
    return str(digest)


def _escaped(tmp_path: Path) -> bool:
    return bool(list(tmp_path.rglob("escaped-by-cache-mount"))) or Path("/escaped-by-cache-mount").exists()


def _instance_names(h: Hoist) -> list[str]:
    instance = next((h.root / "cache" / "cachemounts").glob("*/0"))
    return sorted(p.name for p in instance.iterdir())


async def _build_from_handmade_cache(tmp_path: Path, host: str, kind: str, mounts: object) -> tuple[Hoist, Result]:
    """A cache artifact made by hand (one ``kind`` layer, no entries, ``mounts`` as given) in
    ``host``, and a fresh runner's build of the project with it as ``--cache-from``."""
    base = await seed_base(tmp_path, host)
    blob, diff_id = _hostile_layer(kind)
    digest = await _upload(host, "team/handmade", blob)
    layer = {"digest": digest, "size": len(blob), "mediaType": mt.OCI_LAYER_GZIP, "diffID": diff_id}
    config = {"version": 1, "layers": [layer], "entries": {}, "mounts": mounts}
    await _put_artifact(host, "team/handmade", "cache", json.dumps(config).encode(), CONFIG_TYPE, ARTIFACT_TYPE,
                        [{"mediaType": mt.OCI_LAYER_GZIP, "digest": digest, "size": len(blob)}])
    b = runner(tmp_path / "b")
    got = await run_hoist(b, "build", "--progress", "plain", "-t", "app:b",
                          "--cache-from", f"type=registry,ref={host}/team/handmade:cache",
                          str(project(tmp_path, base, "ctx", "one\n")))
    return b, got


@pytest.mark.parametrize("kind", ["escape", "device"])
async def test_a_hostile_cache_mount_layer_is_refused_or_defused(tmp_path: Path, kind: str) -> None:
    async with hoist_registry() as host:
        b, got = await _build_from_handmade_cache(tmp_path, host, kind, [{"id": "pkgs", "origin": "", "layer": 0}])
        assert await result(b, "app:b") == ("miss", "one\n")
        listing = (await run_hoist(b, "run", "--rm", "app:b", "cat", "/listing")).out
        assert listing == ""                                   # what the step saw: an empty cache
        if kind == "escape":
            assert "cache mount 'pkgs': not imported" in got.err and "escape" in got.err.lower(), got.err
            assert not _escaped(tmp_path)
        else:                                                  # imported, without the device node
            assert "cache mount 'pkgs': imported" in got.err, got.err
            assert _instance_names(b) == ["log", "pkg"]


@pytest.mark.parametrize("mounts", [
    [{"id": "", "origin": "", "layer": 0}],
    [{"id": "pkgs", "origin": "", "layer": 7}],
    [{"id": "pkgs", "origin": 3, "layer": 0}],
    {"id": "pkgs"},
])
async def test_a_corrupt_mounts_list_is_a_warning_and_a_cold_build(tmp_path: Path, mounts: object) -> None:
    async with hoist_registry() as host:
        b, got = await _build_from_handmade_cache(tmp_path, host, "device", mounts)
        assert "WARNING" in got.err and "building without it" in got.err
        assert await result(b, "app:b") == ("miss", "one\n")
