"""``hoist builder prune`` and ``hoist system df``: they report and reclaim what they say,
measured with ``du -sb``; a running build's cache is never evicted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.conftest import busybox_hoist
from tests.cli.helpers import REPO_ROOT, Hoist

EPOCH = "1700000000"
DOCKERFILE = """\
FROM busybox AS tool
RUN head -c 200000 /bin/busybox > /tool.bin && echo not copied > /other
FROM busybox
RUN --mount=type=cache,target=/cache echo filled > /cache/x; head -c 300000 /bin/busybox > /big
COPY a.txt /a.txt
COPY --from=tool /tool.bin /tool.bin
"""


@pytest.fixture
def h(tmp_path: Path) -> Hoist:
    return busybox_hoist(tmp_path, EPOCH)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    path = tmp_path / "ctx"
    path.mkdir()
    (path / "Dockerfile").write_text(DOCKERFILE)
    (path / "a.txt").write_text("a\n")
    return path


def du(*paths: Path) -> int:
    existing = [str(p) for p in paths if p.exists()]
    if not existing:
        return 0
    out = subprocess.run(["du", "-sbc", *existing], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def df(h: Hoist) -> dict[str, dict]:
    rows = [json.loads(line) for line in h("system", "df", "--format", "json").out.splitlines()]
    return {row["Type"]: row for row in rows}


def entries(h: Hoist) -> list[dict]:
    base = h.root / "cache" / "build"
    return [json.loads(p.read_text()) | {"key": p.stem} for p in sorted(base.glob("*.json"))
            if p.name != "context-hashes.json"]


def blob(h: Hoist, digest: str) -> Path:
    return h.images / "blobs" / "sha256" / digest.removeprefix("sha256:")


def snapshot(h: Hoist, chain_id: str) -> Path:
    return h.root / "snapshots" / chain_id.removeprefix("sha256:")


def reclaimed(text: str) -> str:
    return text.strip().splitlines()[-1].removeprefix("Total reclaimed space: ")


def human(n: int) -> str:
    from hoist.progress import human_size
    return human_size(n)


def mount_dirs(h: Hoist) -> list[Path]:
    from builder.prune import MOUNT_DIRS
    return [h.root / "cache" / d for d in MOUNT_DIRS]


def mounts(h: Hoist) -> list[Path]:
    return [p for d in mount_dirs(h) if d.is_dir() for p in d.iterdir()]


def measured(h: Hoist) -> int:
    r = h.root
    return du(r / "images" / "blobs", r / "snapshots", r / "cache" / "build", *mount_dirs(h))


def test_df_counts_what_du_counts(h: Hoist, ctx: Path) -> None:
    h("build", "-t", "app:1", str(ctx))
    usage = df(h)
    cache = entries(h)
    # Four steps; COPY --from is cached under its content key and its source key.
    assert usage["Build Cache"]["TotalCount"] == len(cache) == 5
    # The tool stage's layer is in no image: no output held it, so it has no blob, only its
    # snapshot (a lazy entry), which is the build cache's and its reclaimable (dangling) part.
    lazy = [e for e in cache if not e["layer"]["digest"]]
    assert len(lazy) == 1
    held = snapshot(h, lazy[0]["layer"]["snapshot"])
    layer_blobs = {e["layer"]["digest"] for e in cache} - {""}
    assert usage["Build Cache"]["Size"] == du(*(blob(h, d) for d in layer_blobs), held)
    image_layers = set(h.layout().resolve_image("docker.io/library/app:1")[1].doc["layers"][i]["digest"]
                       for i in range(4))
    assert layer_blobs <= image_layers
    assert usage["Build Cache"]["Reclaimable"] == du(held)
    assert usage["Build Cache"]["Active"] == 4
    snaps = [p for p in (h.root / "snapshots").iterdir() if not p.name.startswith(".") and p.name not in ("empty", held.name)]
    assert usage["Snapshots"]["TotalCount"] == len(snaps) and usage["Snapshots"]["Size"] == du(*snaps)
    assert usage["Cache mounts"]["TotalCount"] == 1 and usage["Cache mounts"]["Size"] == du(*mounts(h))
    table = h("system", "df").out
    assert table.splitlines()[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]


def test_prune_removes_dangling_cache_and_reports_what_du_sees(h: Hoist, ctx: Path) -> None:
    h("build", "-t", "app:1", str(ctx))
    before_entries = entries(h)
    before = measured(h)
    r = h("builder", "prune")
    after = measured(h)
    assert reclaimed(r.out) == human(before - after) and before > after
    removed = {line for line in r.out.splitlines()[1:-1]}
    assert len(removed) == 1 and removed < {e["key"] for e in before_entries}
    assert df(h)["Build Cache"]["Reclaimable"] == 0
    # The image is whole (run it) and its own steps still hit; only the tool stage runs again.
    assert h("run", "--rm", "app:1", "cat", "/a.txt").out == "a\n"
    again = h("build", "--progress", "plain", "-t", "app:1", str(ctx))
    assert again.err.count("CACHED") == 3


def test_prune_all_removes_every_entry_cache_mounts_and_unused_snapshots(h: Hoist, ctx: Path) -> None:
    h("build", "-t", "app:1", str(ctx))
    h("rmi", "app:1")
    before = measured(h)
    r = h("builder", "prune", "--all")
    assert len(r.out.splitlines()) == 1 + 5 + 1
    assert entries(h) == [] and mounts(h) == []
    assert reclaimed(r.out) == human(before - measured(h))
    # Only busybox's own chain is left unpacked (it is still a local image); its blobs stay.
    usage = df(h)
    assert usage["Snapshots"]["Reclaimable"] == 0 and usage["Build Cache"]["TotalCount"] == 0
    assert h("run", "--rm", "busybox", "echo", "ok").out == "ok\n"
    cold = h("build", "--progress", "plain", "-t", "app:1", str(ctx))
    assert "CACHED" not in cold.err


def test_keep_storage_evicts_least_recently_used_first(h: Hoist, ctx: Path) -> None:
    import os
    h("build", "-t", "app:1", str(ctx))
    cache = entries(h)
    path = {e["key"]: h.root / "cache" / "build" / f"{e['key']}.json" for e in cache}
    # A hit is a use: age every entry, rebuild, and every entry that hit is young again (all but
    # COPY --from's content key: its source key hit first). Touching a context file (its ctime
    # moves, its bytes do not) makes the build memo miss and every step hit.
    for p in path.values():
        os.utime(p, (1, 1))
    os.utime(ctx / "a.txt")
    rebuilt = h("build", "--progress", "plain", "-t", "app:1", str(ctx))
    assert rebuilt.err.count("CACHED") == len(path) - 1
    assert len([k for k, p in path.items() if p.stat().st_mtime == 1]) == 1
    # A build the memo answers (builder.memo: that build recorded it) uses what that build used.
    for p in path.values():
        os.utime(p, (1, 1))
    h("build", "-t", "app:1", str(ctx))
    assert len([k for k, p in path.items() if p.stat().st_mtime == 1]) == 1
    # The tool stage's entry made the oldest: it goes first, and alone frees enough.
    image_layers = {d["digest"] for d in h.layout().resolve_image("docker.io/library/app:1")[1].doc["layers"]}
    tool = next(e["key"] for e in cache if e["layer"]["digest"] not in image_layers)
    for i, key in enumerate(sorted(path, key=lambda k: k != tool)):
        os.utime(path[key], (10 + i, 10 + i))
    # What prune counts: a blob's bytes; a lazy entry's (the tool stage's) tar length.
    sizes = {e["layer"]["digest"] or e["layer"]["snapshot"]:
             blob(h, e["layer"]["digest"]).stat().st_size if e["layer"]["digest"] else e["layer"]["size"]
             for e in cache}
    r = h("builder", "prune", "--all", "--keep-storage", str(sum(sizes.values()) - 1))
    assert r.out.splitlines()[1:-1] == [tool]
    assert {e["key"] for e in entries(h)} == set(path) - {tool}
    assert df(h)["Build Cache"]["Size"] <= sum(sizes.values()) - 1
    nothing = h("builder", "prune", "--all", "--keep-storage", "1g")
    assert nothing.out.strip() == "Total reclaimed space: 0B"


def test_until_filter(h: Hoist, ctx: Path) -> None:
    h("build", "-t", "app:1", str(ctx))
    kept = h("builder", "prune", "--all", "--filter", "until=24h")
    assert kept.out.strip() == "Total reclaimed space: 0B" and len(entries(h)) == 5
    gone = h("builder", "prune", "--all", "--filter", "until=0s")
    assert len(gone.out.splitlines()) == 7 and entries(h) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--filter", "label=x"], "only until=DURATION"),
    (["--filter", "until=tomorrow"], "invalid duration"),
    (["--keep-storage", "lots"], "invalid size"),
])
def test_bad_prune_options(h: Hoist, args: list[str], message: str) -> None:
    r = h("builder", "prune", *args, ok=False)
    assert r.code != 0 and message in r.err and len(r.err.strip().splitlines()) == 1


def test_prune_waits_for_a_running_build_and_evicts_nothing_it_uses(h: Hoist, ctx: Path, tmp_path: Path) -> None:
    (ctx / "Dockerfile").write_text(DOCKERFILE + "RUN --mount=type=bind,from=tool,target=/t cat /t/tool.bin > /copy\n"
                                    "RUN --mount=type=bind,source=.,target=/ctx "
                                    "while [ ! -e /ctx/go ]; do sleep 0.05; done\n")
    build = subprocess.Popen([sys.executable, "-m", "hoist.cli", "build", "--progress", "plain", "-t", "w:1",
                              str(ctx)], env=h.env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert build.stderr is not None
    for line in build.stderr:                # the waiting step has started
        if "while [ ! -e /ctx/go ]" in line:
            break
    prune = subprocess.Popen([sys.executable, "-m", "hoist.cli", "builder", "prune", "--all"], env=h.env,
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)                            # room for a wrong prune to run; a right one waits forever
    assert prune.poll() is None
    (ctx / "go").write_text("")
    _, build_err = build.communicate(timeout=120)
    assert build.returncode == 0, build_err
    out, err = prune.communicate(timeout=120)
    assert prune.returncode == 0, err
    assert h("run", "--rm", "w:1", "cat", "/a.txt").out == "a\n"
