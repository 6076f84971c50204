"""Lazy layers (builder.execute): a step of a stage no output of the build holds gets no blob,
only its snapshot, which its cache entry names. What needs the layer later (a build of that
stage as its target, a cache export) gets the blob an eager build would have written: the same
image, byte for byte. The snapshot is kept as a gc root keeps a blob (``rmi`` leaves it), goes
with its entry (``builder prune``), and a snapshot that is gone is a miss."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import busybox_hoist
from tests.cli.helpers import Hoist
from tests.cli.test_build_cache_registry import steps

EPOCH = "1700000000"
DOCKERFILE = """\
FROM busybox AS build
RUN head -c 300000 /bin/busybox > /big && echo built > /built
COPY a.txt /src/a.txt
RUN cat /src/a.txt /built > /out
FROM busybox
COPY --from=build /out /out
CMD ["cat", "/out"]
"""
BUILD_STEPS = ("RUN head -c", "COPY a.txt", "RUN cat /src/a.txt")


@pytest.fixture
def h(tmp_path: Path) -> Hoist:
    return busybox_hoist(tmp_path / "h", EPOCH)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    path = tmp_path / "ctx"
    path.mkdir()
    (path / "Dockerfile").write_text(DOCKERFILE)
    (path / "a.txt").write_text("version one\n")
    return path


def entries(h: Hoist) -> list[dict]:
    base = h.root / "cache" / "build"
    return [json.loads(p.read_text())["layer"] | {"key": p.stem} for p in sorted(base.glob("v*.json"))]


def lazy(h: Hoist) -> list[dict]:
    return [e for e in entries(h) if e["digest"] == ""]


def snapshot(h: Hoist, chain_id: str) -> Path:
    return h.root / "snapshots" / chain_id.removeprefix("sha256:")


def blobs(h: Hoist) -> set[str]:
    return {"sha256:" + p.name for p in (h.images / "blobs" / "sha256").iterdir()}


def image_blobs(h: Hoist, *refs: str) -> set[str]:
    layout = h.layout()
    out = set()
    for ref in refs:
        desc, manifest = layout.resolve_image(ref)
        out |= {str(desc.digest), str(manifest.config.digest)} | {str(layer.digest) for layer in manifest.layers}
    return out


def build(h: Hoist, ctx: Path, *args: str, ok: bool = True) -> tuple[set[str], set[str], str]:
    """(the build stage's steps shown CACHED, those that ran, stderr)."""
    res = h("build", "--progress", "plain", *args, str(ctx), ok=ok)
    cached, ran = steps(res.err)
    return _of_build(cached), _of_build(ran), res.err


def _of_build(names: list[str]) -> set[str]:
    return {step for step in BUILD_STEPS for name in names if step in name}


def test_a_stage_no_output_holds_writes_no_blob(h: Hoist, ctx: Path) -> None:
    build(h, ctx, "-t", "app:1")
    assert h("run", "--rm", "app:1").out == "version one\nbuilt\n"
    # Every blob in the store is the image's or the base's: none for the build stage's steps.
    assert blobs(h) == image_blobs(h, "app:1", "busybox")
    made = lazy(h)
    assert len(made) == 3                           # the build stage's RUN, COPY, RUN
    for entry in made:
        assert snapshot(h, entry["snapshot"]).is_dir()
        assert not (h.images / "gc-roots" / f"build-{entry['key']}").exists()
    # The COPY --from of the lazy stage is the image's own (eager) layer, rooted as any.
    eager = [e for e in entries(h) if e["digest"]]
    assert eager and all((h.images / "gc-roots" / f"build-{e['key']}").is_file() for e in eager)


def test_a_later_target_of_the_stage_gets_the_blobs_an_eager_build_writes(h: Hoist, ctx: Path,
                                                                          tmp_path: Path) -> None:
    build(h, ctx, "-t", "app:1")
    cached, ran, _ = build(h, ctx, "--target", "build", "-t", "stage:1")
    assert cached == set(BUILD_STEPS) and ran == set()
    assert h("run", "--rm", "stage:1", "cat", "/out").out == "version one\nbuilt\n"
    assert lazy(h) == []                             # each entry now names its blob
    for entry in entries(h):
        assert (h.images / "gc-roots" / f"build-{entry['key']}").is_file()
    # The image an empty root builds for that target first (every layer eager): the same.
    fresh = busybox_hoist(tmp_path / "fresh", EPOCH)
    build(fresh, ctx, "--target", "build", "-t", "stage:1")
    assert h.layout().find("stage:1").descriptor.digest == fresh.layout().find("stage:1").descriptor.digest
    assert image_blobs(h, "stage:1") <= blobs(h)


def test_rmi_keeps_the_snapshots_lazy_entries_hold(h: Hoist, ctx: Path) -> None:
    build(h, ctx, "-t", "app:1")
    held = [snapshot(h, e["snapshot"]) for e in lazy(h)]
    h("rmi", "app:1")
    assert all(p.is_dir() for p in held)
    cached, ran, _ = build(h, ctx, "-t", "app:1")
    assert cached == set(BUILD_STEPS) and ran == set()
    assert h("run", "--rm", "app:1").out == "version one\nbuilt\n"


def test_a_lazy_entry_whose_snapshot_is_gone_is_a_miss(h: Hoist, ctx: Path) -> None:
    build(h, ctx, "-t", "app:1")
    copy = next(e for e in lazy(h) if (snapshot(h, e["snapshot"]) / "src" / "a.txt").exists())
    shutil.rmtree(snapshot(h, copy["snapshot"]))
    cached, ran, _ = build(h, ctx, "-t", "app:2")
    # The COPY runs again and makes the same layer (the same chain id): the RUN on it still hits.
    assert cached == {"RUN head -c", "RUN cat /src/a.txt"} and ran == {"COPY a.txt"}
    assert snapshot(h, copy["snapshot"]).is_dir()
    assert h("run", "--rm", "app:2").out == "version one\nbuilt\n"


def test_a_changed_snapshot_is_refused_when_its_blob_is_made(h: Hoist, ctx: Path) -> None:
    build(h, ctx, "-t", "app:1")
    run = next(e for e in lazy(h) if (snapshot(h, e["snapshot"]) / "big").exists())   # the first RUN
    (snapshot(h, run["snapshot"]) / "built").write_text("tampered\n")
    _, _, err = build(h, ctx, "--target", "build", "-t", "stage:1", ok=False)
    assert "the snapshot of cached layer" in err and "changed" in err and "Traceback" not in err
    assert "builder prune" in err
    assert h("inspect", "stage:1", ok=False).code != 0      # nothing tagged


def test_prune_removes_what_lazy_entries_hold(h: Hoist, ctx: Path) -> None:
    build(h, ctx, "-t", "app:1")
    held = [snapshot(h, e["snapshot"]) for e in lazy(h)]
    h("builder", "prune", "--keep-storage", "0")     # a filtered prune: the dangling entries go
    assert lazy(h) == [] and not any(p.exists() for p in held)
    cached, ran, _ = build(h, ctx, "-t", "app:1")
    assert ran == set(BUILD_STEPS)
    assert h("run", "--rm", "app:1").out == "version one\nbuilt\n"


@pytest.mark.parametrize("snapshot", ["../../etc", "sha256:zz", 7, None, "sha256:" + "0" * 64])
def test_a_damaged_lazy_entry_is_a_miss_never_a_path(h: Hoist, ctx: Path, snapshot: object) -> None:
    build(h, ctx, "-t", "app:1")

    def damage() -> None:
        entry = next(e for e in lazy(h) if (snapshot_of(h, e) / "big").exists())
        path = h.root / "cache" / "build" / f"{entry['key']}.json"
        doc = json.loads(path.read_text())
        doc["layer"]["snapshot"] = snapshot
        path.write_text(json.dumps(doc))

    damage()
    assert "Build Cache" in h("system", "df").out          # df, rmi and prune read the entries
    h("rmi", "app:1")
    cached, ran, _ = build(h, ctx, "-t", "app:2")
    assert "RUN head -c" in ran                                # the damaged entry missed
    assert h("run", "--rm", "app:2").out == "version one\nbuilt\n"
    damage()
    h("builder", "prune", "--keep-storage", "0")


def snapshot_of(h: Hoist, entry: dict) -> Path:
    return snapshot(h, entry["snapshot"]) if isinstance(entry.get("snapshot"), str) else h.root / "none"
