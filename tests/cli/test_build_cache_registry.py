"""``--cache-to`` / ``--cache-from`` through a registry: two empty ``HOIST_ROOT``s are two CI
runners, a registry between them (hoist's own on loopback, and CNCF Distribution 2.8). Runner B
gets every step CACHED and the same image digest, downloads no cached layer nothing needs, and
after a one-file change rebuilds only the steps that depend on it. Bad caches are a warning
and a cold build, never a failure and never a wrong hit."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from builder.remote_cache import ARTIFACT_TYPE, CONFIG_TYPE
from registry import routes
from registry.client.client import RegistryClient
from storage import mediatypes as mt
from storage.digest import Digest
from tests.cli.conftest import run_hoist
from tests.cli.helpers import Hoist
from tests.images import busybox_image
from tests.peers import Distribution, free_port
from tests.registry.faults import Faults, faulty_app, serve_on_loopback

EPOCH = "1700000000"
DOCKERFILE = """\
FROM {base} AS tool
RUN echo tool > /t
FROM {base}
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt /one > /both
COPY --from=tool /t /t
"""
STEPS = ("RUN echo tool", "RUN echo one", "COPY a.txt", "RUN cat /a.txt", "COPY /t /t")


def runner(base: Path) -> Hoist:
    """A fresh CI runner: an empty HOIST_ROOT."""
    h = Hoist(base)
    h.env["SOURCE_DATE_EPOCH"] = EPOCH
    return h


def steps(err: str) -> tuple[list[str], list[str]]:
    """(names of the steps shown CACHED, names of those that ran), FROM left out."""
    names: dict[str, str] = {}
    cached, ran = [], []
    for line in err.splitlines():
        m = re.match(r"#(\d+) (\[.*)$", line)
        if m:
            names[m.group(1)] = m.group(2)
            continue
        m = re.match(r"#(\d+) (CACHED|DONE)", line)
        if m and "FROM " not in names.get(m.group(1), "FROM "):
            (cached if m.group(2) == "CACHED" else ran).append(names[m.group(1)])
    return cached, ran


def shown(names: list[str]) -> set[str]:
    return {step for step in STEPS for name in names if step in name}


async def seed_base(tmp_path: Path, host: str) -> str:
    seed = Hoist(tmp_path / "seed")
    busybox_image(seed.layout(), "bb:1")
    ref = f"{host}/lib/bb:1"
    await run_hoist(seed, "tag", "bb:1", ref)
    await run_hoist(seed, "push", ref)
    return ref


def context(tmp_path: Path, base: str, name: str = "ctx") -> Path:
    ctx = tmp_path / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    (ctx / "a.txt").write_text("version one\n")
    return ctx


def layer_digests(h: Hoist, ref: str) -> list[str]:
    layout = h.layout()
    _, manifest = layout.resolve_image(ref)
    return [str(layer.digest) for layer in manifest.layers]


@asynccontextmanager
async def hoist_registry(faults: Faults | None = None) -> AsyncIterator[str]:
    async with serve_on_loopback(faulty_app(faults or Faults())) as host:
        yield host


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    base = tmp_path_factory.mktemp("distribution")
    server = Distribution(base / "root", base).start()
    try:
        yield server
    finally:
        server.stop()


async def two_runners(tmp_path: Path, host: str, mode: str, faults: Faults | None = None) -> None:
    base = await seed_base(tmp_path, host)
    ctx = context(tmp_path, base)
    cache = f"{host}/team/cache:main"
    a, b = runner(tmp_path / "a"), runner(tmp_path / "b")
    built = await run_hoist(a, "build", "-t", f"{host}/team/app:a", "--push",
                            "--cache-to", f"type=registry,ref={cache},mode={mode}", str(ctx))
    image_a = a.layout().find(f"{host}/team/app:a").descriptor.digest
    assert f"exporting cache to {cache}" in built.err
    assert shown(steps(built.err)[1]) == set(STEPS)

    # Runner B, same commit: every step CACHED (mode=min: the tool stage is not in the cache, it
    # runs, and the COPY --from of its identical output still hits), the same image digest.
    if faults is not None:
        faults.seen.clear()
    same = await run_hoist(b, "build", "-t", f"{host}/team/app:b", "--push",
                           "--cache-from", f"type=registry,ref={cache}", str(ctx))
    cached, ran = steps(same.err)
    expected_ran = set() if mode == "max" else {"RUN echo tool"}
    assert shown(cached) == set(STEPS) - expected_ran and shown(ran) == expected_ran, same.err
    assert "WARNING" not in same.err
    # Pushed by manifest alone: the layers are in the registry already (HEAD), never downloaded.
    assert "pushed without loading it locally" in same.err or mode == "min"
    async with RegistryClient(host) as client:
        raw, _, _ = await client.get_manifest("team/app", "b")
    assert Digest.of(raw) == image_a
    if faults is not None and mode == "max":
        # Not even the tool stage's layer: COPY --from hits on its source's chain id, so no
        # file of it is needed.
        own = layer_digests(a, f"{host}/team/app:a")[1:]
        fetched = {d for s in faults.seen if s.method == "GET" and "/blobs/" in s.path for d in own if d in s.path}
        assert fetched == set(), fetched

    # One file changes: only COPY a.txt and what is built on it run again.
    (ctx / "a.txt").write_text("version two\n")
    changed = await run_hoist(b, "build", "-t", "app:changed", "--cache-from", f"type=registry,ref={cache}",
                              str(ctx))
    cached, ran = steps(changed.err)
    assert shown(ran) == {"COPY a.txt", "RUN cat /a.txt", "COPY /t /t"}, changed.err
    assert shown(cached) == {"RUN echo one", "RUN echo tool"}     # the tool stage: B's own cache now
    out = await run_hoist(b, "run", "--rm", "app:changed", "cat", "/both", "/t")
    assert out.out == "version two\none\ntool\n"


async def test_two_runners_through_hoists_registry_mode_max(tmp_path: Path) -> None:
    faults = Faults()
    async with hoist_registry(faults) as host:
        await two_runners(tmp_path, host, "max", faults)


async def test_two_runners_through_hoists_registry_mode_min(tmp_path: Path) -> None:
    async with hoist_registry() as host:
        await two_runners(tmp_path, host, "min")


async def test_two_runners_through_distribution(tmp_path: Path, distribution: Distribution) -> None:
    await two_runners(tmp_path, distribution.addr, "max")
    async with RegistryClient(distribution.addr) as client:
        raw, ctype, _ = await client.get_manifest("team/cache", "main")
    doc = json.loads(raw)
    # Distribution 2.8 stores the OCI 1.1 form as it is (it ignores fields it does not know).
    assert ctype == mt.OCI_MANIFEST and doc["config"]["mediaType"] == CONFIG_TYPE
    assert doc.get("artifactType") == ARTIFACT_TYPE


async def test_registry_refusing_the_artifact_form_gets_the_image_manifest_form(tmp_path: Path) -> None:
    faults = Faults()
    faults.add("PUT", "/team/cache/manifests/", "status", status=400)
    async with hoist_registry(faults) as host:
        base = await seed_base(tmp_path, host)
        ctx = context(tmp_path, base)
        cache = f"{host}/team/cache:main"
        a, b = runner(tmp_path / "a"), runner(tmp_path / "b")
        built = await run_hoist(a, "build", "--cache-to", f"type=registry,ref={cache},mode=max", str(ctx))
        assert "refused the cache as an OCI artifact" in built.err
        async with RegistryClient(host) as client:
            raw, _, _ = await client.get_manifest("team/cache", "main")
        doc = json.loads(raw)
        assert "artifactType" not in doc and doc["config"]["mediaType"] == CONFIG_TYPE
        again = await run_hoist(b, "build", "--cache-from", cache, str(ctx))
        assert shown(steps(again.err)[0]) == set(STEPS)
        assert again.out.strip() == built.out.strip()


async def test_inline_cache(tmp_path: Path) -> None:
    async with hoist_registry() as host:
        base = await seed_base(tmp_path, host)
        ctx = context(tmp_path, base)
        a, b = runner(tmp_path / "a"), runner(tmp_path / "b")
        ref = f"{host}/team/app:inline"
        built = await run_hoist(a, "build", "-t", ref, "--push", "--build-arg", "BUILDKIT_INLINE_CACHE=1", str(ctx))
        config = a.layout().config(a.layout().resolve_image(ref)[1])
        # The final stage's 4 steps (COPY --from under its source key only: the one every build
        # computes, so the config, and the image digest, do not depend on which key hit).
        assert len(config["dev.hoist.buildcache.v1"]["entries"]) == 4
        again = await run_hoist(b, "build", "--cache-from", ref, "--cache-to", "type=inline", str(ctx))
        cached, ran = steps(again.err)
        assert shown(ran) == {"RUN echo tool"} and shown(cached) == set(STEPS) - {"RUN echo tool"}
        assert again.out.strip() == built.out.strip()


# -- bad caches: a warning and a cold build ----------------------------------------------------

async def _put_artifact(host: str, repo: str, tag: str, config: bytes, config_type: str,
                        artifact_type: str | None, layers: list[dict] | None = None) -> None:
    async with RegistryClient(host) as client:
        digest = Digest.of(config)
        if not await client.blob_exists(repo, digest):
            upload = await client.start_upload(repo)

            async def body() -> AsyncIterator[bytes]:
                yield config
            await client.finish_upload(upload, repo, digest, lambda: body(), len(config))
        doc: dict = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                     "config": {"mediaType": config_type, "digest": str(digest), "size": len(config)},
                     "layers": layers or []}
        if artifact_type:
            doc["artifactType"] = artifact_type
        await client.put_manifest(repo, tag, json.dumps(doc).encode(), mt.OCI_MANIFEST)


async def test_bad_caches_are_warnings_and_cold_builds(tmp_path: Path) -> None:
    async with hoist_registry() as host:
        base = await seed_base(tmp_path, host)
        ctx = context(tmp_path, base)
        await _put_artifact(host, "team/other", "tool", b'{"some": "thing"}', "application/vnd.example.config+json",
                            "application/vnd.example+json")
        await _put_artifact(host, "team/corrupt", "notjson", b"{not json", CONFIG_TYPE, ARTIFACT_TYPE)
        await _put_artifact(host, "team/corrupt", "badindex",
                            json.dumps({"version": 1, "layers": [], "entries": {"a" * 64: 3}}).encode(),
                            CONFIG_TYPE, ARTIFACT_TYPE)
        cases = {
            f"{host}/team/nothing:here": "not found",
            base: "not a hoist cache",                                  # a plain image
            f"{host}/team/other:tool": "not a hoist cache",             # another tool's artifact
            f"{host}/team/corrupt:notjson": "its config is not JSON",
            f"{host}/team/corrupt:badindex": "which is not there",
            f"127.0.0.1:{free_port()}/team/cache:down": "unreachable",
        }
        for i, (ref, why) in enumerate(cases.items()):
            b = runner(tmp_path / f"b{i}")
            r = await run_hoist(b, "build", "--cache-from", f"type=registry,ref={ref}", str(ctx))
            warnings = [line for line in r.err.splitlines() if line.startswith("WARNING")]
            assert len(warnings) == 1 and ref in warnings[0] and why in warnings[0], (ref, r.err)
            cached, ran = steps(r.err)
            assert cached == [] and shown(ran) == set(STEPS)


async def test_missing_cache_layers_are_misses_for_their_steps(tmp_path: Path) -> None:
    async with hoist_registry() as host:
        base = await seed_base(tmp_path, host)
        ctx = context(tmp_path, base)
        cache = f"{host}/team/cache:main"
        a, b = runner(tmp_path / "a"), runner(tmp_path / "b")
        built = await run_hoist(a, "build", "-t", "app:a", "--cache-to", f"type=registry,ref={cache},mode=max",
                                str(ctx))
        gone = layer_digests(a, "app:a")[3]                   # RUN cat's layer
        async with aiohttp.ClientSession() as session:
            async with session.delete(f"http://{host}{routes.blob('team/cache', gone)}") as answer:
                assert answer.status == 202
        r = await run_hoist(b, "build", "--cache-from", cache, str(ctx))
        assert "1 of its 4 layers are missing" in r.err
        cached, ran = steps(r.err)
        assert shown(ran) == {"RUN cat /a.txt"} and shown(cached) == set(STEPS) - {"RUN cat /a.txt"}
        assert r.out.strip() == built.out.strip()      # the step ran again and made the same layer


@pytest.mark.parametrize("value", [
    "type=local,src=/tmp/x", "type=registry", "type=registry,ref=a,mode=all", "type=registry,ref=a,colour=red",
    "type=registry,ref=a,compression=zstd",
])
def test_bad_cache_flags(tmp_path: Path, value: str) -> None:
    h = runner(tmp_path / "a")
    busybox_image(h.images)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    r = h("build", "--cache-to", value, str(ctx), ok=False)
    assert r.code != 0 and "invalid --cache-to" in r.err and len(r.err.strip().splitlines()) == 1, r.err


# -- stale hits: each change misses exactly the steps that depend on it ---------------------------

STALE = """\
FROM {base}
RUN echo independent > /i
COPY data/ /data/
RUN ls -lnR /data > /listing; cat /data/f >> /listing
RUN --mount=type=bind,source=data,target=/src ls -ln /src > /bound
"""
STALE_STEPS = ("RUN echo independent", "COPY data/", "RUN ls -lnR", "RUN --mount=type=bind")


def _mutate(ctx: Path, kind: str) -> None:
    import os
    data = ctx / "data"
    if kind == "same-size-and-mtime":
        st = (data / "f").stat()
        (data / "f").write_text("AAAA\n")
        os.utime(data / "f", ns=(st.st_atime_ns, st.st_mtime_ns))
    elif kind == "mode":
        os.chmod(data / "f", 0o600)
    elif kind == "owner":
        os.chown(data / "f", 1234, 1234)
    elif kind == "symlink":
        os.unlink(data / "l")
        os.symlink("g", data / "l")
    elif kind == "rename":
        os.rename(data / "g", data / "h")
        os.unlink(data / "l")
        os.symlink("h", data / "l")


@pytest.mark.parametrize("kind", ["same-size-and-mtime", "mode", "owner", "symlink", "rename"])
async def test_stale_hits(tmp_path: Path, kind: str) -> None:
    async with hoist_registry() as host:
        base = await seed_base(tmp_path, host)
        ctx = tmp_path / "ctx"
        (ctx / "data").mkdir(parents=True)
        (ctx / "Dockerfile").write_text(STALE.format(base=base))
        (ctx / "data" / "f").write_text("aaaa\n")
        (ctx / "data" / "g").write_text("g\n")
        (ctx / "data" / "l").symlink_to("f")
        cache = f"{host}/team/cache:stale"
        a = runner(tmp_path / "a")
        await run_hoist(a, "build", "-t", "s:1", "--cache-to", f"type=registry,ref={cache},mode=max", str(ctx))
        # The same runner, whose context hash cache has seen every file, and a fresh one.
        _mutate(ctx, kind)
        fresh = runner(tmp_path / "fresh")
        cold = runner(tmp_path / "cold")
        truth = (await run_hoist(cold, "build", "--no-cache", str(ctx))).out.strip()
        for h in (a, fresh):
            r = await run_hoist(h, "build", "-t", "s:2", "--cache-from", cache, str(ctx))
            cached, ran = steps(r.err)
            names = {s for s in STALE_STEPS for n in cached if s in n}
            # COPY from the context gives files to root (BuildKit), so an owner change reaches
            # only the RUN that sees the context itself through a bind mount.
            hits = {"RUN echo independent"} | ({"COPY data/", "RUN ls -lnR"} if kind == "owner" else set())
            assert names == hits, (kind, r.err)
            assert len(ran) == len(STALE_STEPS) - len(hits)
            assert r.out.strip() == truth                    # the same image a cold build makes
        if kind == "owner":
            listing = await run_hoist(fresh, "run", "--rm", "s:2", "cat", "/bound")
            assert " 1234 " in listing.out


def test_cache_spec_parsing() -> None:
    from builder.remote_cache import CacheSpecError, parse_cache_spec
    spec = parse_cache_spec("type=registry,ref=r/c:1,mode=max,ignore-error=true", "to", "gzip")
    assert (spec.type, spec.ref, spec.mode, spec.ignore_error) == ("registry", "r/c:1", "max", True)
    assert parse_cache_spec("r/c:1", "from", "gzip").ref == "r/c:1"
    assert parse_cache_spec("type=inline", "to", "gzip").type == "inline"
    with pytest.raises(CacheSpecError):
        parse_cache_spec("type=inline", "from", "gzip")
    with pytest.raises(CacheSpecError):
        parse_cache_spec("type=registry,ref=a,mode=max", "from", "gzip")



async def test_lazy_layers_reach_another_registry(tmp_path: Path) -> None:
    """B imports from registry X and pushes the image and its cache to registry Y: the layers
    nothing needed stayed in X, so they are fetched from there (verified) and uploaded to Y."""
    y_faults = Faults()
    async with hoist_registry() as x, hoist_registry(y_faults) as y:
        base = await seed_base(tmp_path, x)
        ctx = context(tmp_path, base)
        a, b = runner(tmp_path / "a"), runner(tmp_path / "b")
        built = await run_hoist(a, "build", "--cache-to", f"type=registry,ref={x}/team/cache:main,mode=max", str(ctx))
        r = await run_hoist(b, "build", "--cache-from", f"{x}/team/cache:main", "-t", f"{y}/team/app:1", "--push",
                            "--cache-to", f"type=registry,ref={y}/team/cache:main,mode=max", str(ctx))
        assert shown(steps(r.err)[0]) == set(STEPS) and r.out.strip() == built.out.strip()
        c = runner(tmp_path / "c")
        again = await run_hoist(c, "build", "--cache-from", f"{y}/team/cache:main", str(ctx))
        assert shown(steps(again.err)[0]) == set(STEPS) and "WARNING" not in again.err
        other = Hoist(tmp_path / "d")
        await run_hoist(other, "pull", f"{y}/team/app:1")
        out = await run_hoist(other, "run", "--rm", f"{y}/team/app:1", "cat", "/both", "/t")
        assert out.out == "version one\none\ntool\n"


async def test_a_cache_export_after_a_local_build_writes_the_blobs_of_its_lazy_layers(tmp_path: Path) -> None:
    """A local build leaves the tool stage's layer lazy (no output held it: only its snapshot);
    a later build with ``mode=max`` hits it and exports it, its blob written from the snapshot,
    so a fresh runner gets the tool stage CACHED and its files from the registry."""
    async with hoist_registry() as host:
        base = await seed_base(tmp_path, host)
        ctx = context(tmp_path, base)
        cache = f"{host}/team/cache:main"
        a, b = runner(tmp_path / "a"), runner(tmp_path / "b")
        await run_hoist(a, "build", "-t", "app:local", str(ctx))
        exported = await run_hoist(a, "build", "-t", "app:local", "--cache-to", f"type=registry,ref={cache},mode=max",
                                   str(ctx))
        assert shown(steps(exported.err)[0]) == set(STEPS), exported.err
        tool = await run_hoist(b, "build", "--target", "tool", "-t", "tool:b", "--cache-from", cache, str(ctx))
        assert shown(steps(tool.err)[0]) == {"RUN echo tool"} and "WARNING" not in tool.err, tool.err
        assert (await run_hoist(b, "run", "--rm", "tool:b", "cat", "/t")).out == "tool\n"
        mine = await run_hoist(a, "build", "--target", "tool", "-t", "tool:a", str(ctx))
        assert mine.out.strip() == tool.out.strip()        # the same image id


async def test_refused_cache_export_fails_the_build_unless_ignore_error(tmp_path: Path) -> None:
    faults = Faults()
    faults.add("POST", "/team/cache/blobs/uploads/", "status", status=403, times=1000)
    async with hoist_registry(faults) as host:
        base = await seed_base(tmp_path, host)
        ctx = context(tmp_path, base)
        a = runner(tmp_path / "a")
        cache = f"{host}/team/cache:main"
        r = await run_hoist(a, "build", "-t", "app:1", "--cache-to", f"type=registry,ref={cache}", str(ctx), ok=False)
        assert r.code == 1
        last = r.err.strip().splitlines()[-1]
        assert last.startswith(f"hoist build: cache export to {cache} failed: ") and "denied" in last, r.err
        assert a.layout().find("app:1")                 # the image itself was built and kept
        ok = await run_hoist(a, "build", "-t", "app:1", "--cache-to", f"type=registry,ref={cache},ignore-error=true",
                             str(ctx))
        assert f"WARNING: cache export to {cache} failed" in ok.err
