"""Start-up is a product feature (``bench/run_bench.py``: ``hoist run`` against ``runc run`` and
``docker run``; ``bench/build_bench.py``'s cached rebuild): the everyday paths must not import what
they do not use. Read from ``python -X importtime`` of the real command: ``hoist run`` of a local
image loads no registry client (aiohttp: ~130 ms), no pty code without ``-t``, no health checks
without one; a fully cached ``hoist build`` loads neither the client nor the pruning code (and
one the build memo answers, not even the frontend)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


from tests.cli.helpers import REPO_ROOT, Hoist
from tests.runtime.conftest import need_root_and_busybox

HEAVY_FOR_RUN = ("aiohttp", "registry.client.client", "hoist.commands.pull", "runtime.tty", "runtime.health",
                 "asyncio")
HEAVY_FOR_CACHED_BUILD = ("aiohttp", "registry.client.client", "builder.prune", "hoist.disk_usage", "runtime.tty")


def imported(h: Hoist, *args: str) -> set[str]:
    env = dict(h.env, PYTHONPATH=str(REPO_ROOT))
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "hoist.cli", *args], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    names = set()
    for line in res.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "hoist.errors" in names         # the report is there at all (hoist.cli runs as __main__)
    return names


def loaded(names: set[str], heavy: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in heavy))


def test_run_of_a_local_image_imports_no_client_pty_or_health_code(h: Hoist) -> None:
    need_root_and_busybox()
    names = imported(h, "run", "--rm", "--network", "none", "busybox", "true")
    assert loaded(names, HEAVY_FOR_RUN) == []
    assert "runtime.lifecycle" in names
    never = imported(h, "run", "--rm", "--network", "none", "--pull", "never", "busybox", "true")
    assert loaded(never, HEAVY_FOR_RUN) == []
    # and the same run with a health check and a missing image does load what it needs
    with_health = imported(h, "run", "--rm", "--network", "none", "--health-cmd", "true", "busybox", "true")
    assert "runtime.health" in with_health


def test_a_fully_cached_build_imports_no_client_or_pruning_code(h: Hoist, tmp_path: Path) -> None:
    need_root_and_busybox()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo hi > /hi\nCOPY a /a\n")
    (ctx / "a").write_text("a\n")
    h("build", "-q", "-t", "app:1", str(ctx))
    # The build memo (builder.memo) answers: not even the frontend or the executor is loaded.
    names = imported(h, "build", "-q", "-t", "app:1", str(ctx))
    assert loaded(names, HEAVY_FOR_CACHED_BUILD + ("builder.execute", "builder.dispatch", "builder.instructions")) == []
    assert "builder.memo" in names
    # A source touched (its bytes the same): the memo misses, every step is a cache hit.
    os.utime(ctx / "a")
    names = imported(h, "build", "-q", "-t", "app:1", str(ctx))
    assert loaded(names, HEAVY_FOR_CACHED_BUILD) == []
    assert "builder.execute" in names
    assert os.path.exists(h.root / "cache" / "build")
