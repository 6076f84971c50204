"""The build cache keeps itself under a bound (BuildKit's: 10 % of the disk; ``HOIST_BUILD_CACHE_MAX``
sets it): a build that grew the cache evicts the least recently used entries and cache mounts until
it fits, never while another build or pull runs, and nothing when ``none``."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from tests.cli.helpers import Hoist
from tests.cli.test_builder_prune import df, entries
from tests.images import busybox_image

BIG = 300_000        # each step's layer: random bytes, so its blob is about this size compressed too


def dockerfile(name: str, mount: bool = False) -> str:
    step = f"RUN echo {name} && head -c {BIG} /dev/urandom > /big-{name}"
    if mount:
        step = f"RUN --mount=type=cache,target=/cache echo {name} && head -c {BIG} /dev/urandom > /cache/{name}"
    return f"FROM busybox\n{step}\n"


@pytest.fixture
def h(tmp_path: Path) -> Hoist:
    hoist = Hoist(tmp_path)
    busybox_image(hoist.images)
    hoist.env["HOIST_BUILD_CACHE_MAX"] = str(BIG * 3 // 2)
    return hoist


def build(h: Hoist, tmp_path: Path, name: str, mount: bool = False) -> str:
    ctx = tmp_path / f"ctx-{name}"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile(name, mount))
    return h("build", "--progress", "plain", "-t", f"{name}:1", str(ctx)).err


def keys(h: Hoist) -> set[str]:
    return {e["key"] for e in entries(h)}


def test_a_build_that_grows_the_cache_past_the_bound_evicts_the_least_recently_used(h: Hoist,
                                                                                   tmp_path: Path) -> None:
    build(h, tmp_path, "a")
    first = keys(h)
    assert len(first) == 1                          # within the bound: nothing goes
    build(h, tmp_path, "b")
    second = keys(h) - first
    assert keys(h) == second and len(second) == 1   # a's entry was the least recently used
    assert df(h)["Build Cache"]["Size"] <= BIG * 3 // 2
    assert "CACHED" in build(h, tmp_path, "b")      # b's is still a hit
    again = build(h, tmp_path, "a")                 # a's runs again, and b's goes in its turn
    assert "CACHED" not in again and keys(h) & second == set()
    # The images keep their layers: eviction drops cache entries, never a tagged image's blobs.
    assert h("run", "--rm", "b:1", "wc", "-c", "/big-b").out.split()[0] == str(BIG)


def test_cache_mounts_are_evicted_in_the_same_least_recently_used_order(h: Hoist, tmp_path: Path) -> None:
    build(h, tmp_path, "m", mount=True)             # a cache mount holding BIG bytes, and a small entry
    mount_dirs = list((h.root / "cache" / "cachemounts").iterdir())
    assert len(mount_dirs) == 1
    os.utime(mount_dirs[0], (1, 1))                 # used long ago
    build(h, tmp_path, "x")
    assert not mount_dirs[0].exists()               # the mount went first, and that was enough
    assert len(keys(h)) == 2
    assert df(h)["Cache mounts"]["Size"] == 0


def test_no_eviction_while_another_build_runs_and_none_means_no_bound(h: Hoist, tmp_path: Path) -> None:
    build(h, tmp_path, "a")
    lock = h.images / ".gc.lock"
    with open(lock, "a") as held:                   # what a running build or pull holds
        fcntl.flock(held, fcntl.LOCK_SH)
        build(h, tmp_path, "b")                     # finishes without waiting and evicts nothing
        fcntl.flock(held, fcntl.LOCK_UN)
    assert len(keys(h)) == 2
    h.env["HOIST_BUILD_CACHE_MAX"] = "none"
    build(h, tmp_path, "c")
    assert len(keys(h)) == 3
    h.env["HOIST_BUILD_CACHE_MAX"] = str(BIG * 3 // 2)
    build(h, tmp_path, "d")                         # the next build that grows it catches up
    assert len(keys(h)) == 1
    assert json.loads(h("inspect", "c:1").out)[0]["Id"]


def test_a_bound_that_is_not_a_size_is_one_line(h: Hoist, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile("z"))
    h.env["HOIST_BUILD_CACHE_MAX"] = "lots"
    r = h("build", str(ctx), ok=False)
    assert r.code == 1 and "HOIST_BUILD_CACHE_MAX" in r.err and len(r.err.strip().splitlines()) == 1
    assert keys(h) == set()                         # refused before anything ran
