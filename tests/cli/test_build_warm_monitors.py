"""RUN steps' monitors started ahead (builder.execute ``_prewarm``, runtime.lifecycle
``WarmMonitor``): once a step of a stage runs and a RUN comes later in it, that RUN's monitor is
started while the step works. The RUNs give what they give without it; a monitor no RUN took
(a RUN that was a hit, a stage that failed) is ended; nothing is left running after the build."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import busybox_hoist
from tests.cli.helpers import REPO_ROOT, Hoist

DOCKERFILE = """\
FROM busybox AS build
COPY a.txt /a.txt
RUN cat /a.txt > /b.txt && echo one >> /b.txt
RUN cat /b.txt > /c.txt && echo two >> /c.txt
FROM busybox
COPY --from=build /c.txt /c.txt
CMD ["cat", "/c.txt"]
"""


# ``hoist ARGS`` as its own process (a build is one: tests/cli/helpers.needs_process), with
# WarmMonitor counting the monitors made, those a RUN started and those discarded unused; the
# counts and the pids go to the file named first.
_COUNTING = """
import json, sys
from runtime import lifecycle

counts = {"made": 0, "started": 0, "discarded": 0, "pids": []}
real = lifecycle.WarmMonitor


class Warm(real):
    def __init__(self):
        super().__init__()
        counts["made"] += 1
        counts["pids"].append(self.pid)

    def start(self, container):
        pid = super().start(container)
        counts["started"] += pid is not None
        return pid

    def discard(self):
        counts["discarded"] += not self.started
        super().discard()


lifecycle.WarmMonitor = Warm
from hoist.cli import main

try:
    code = main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as f:
        json.dump(counts, f)
sys.exit(code)
"""


def counted_build(h: Hoist, tmp_path: Path, *args: str, ok: bool = True) -> tuple[subprocess.CompletedProcess, dict]:
    counts = tmp_path / "counts.json"
    res = subprocess.run([sys.executable, "-c", _COUNTING, str(counts), "build", *args], env=h.env,
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in res.stderr, res.stderr
    assert (res.returncode == 0) == ok, res.stderr
    return res, json.loads(counts.read_text())


def none_left(counts: dict) -> bool:
    """No monitor the build made is still a process (running, or unreaped)."""
    return not any(_ours(pid) for pid in counts["pids"])


def _ours(pid: int) -> bool:
    try:
        return "warm_main" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def made_started_discarded(counts: dict) -> tuple[int, int, int]:
    return counts["made"], counts["started"], counts["discarded"]


@pytest.fixture
def h(tmp_path: Path) -> Hoist:
    return busybox_hoist(tmp_path / "h", "1700000000")


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    path = tmp_path / "ctx"
    path.mkdir()
    (path / "Dockerfile").write_text(DOCKERFILE)
    (path / "a.txt").write_text("zero\n")
    return path


def test_runs_take_the_monitors_started_ahead(h: Hoist, ctx: Path, tmp_path: Path) -> None:
    _, counts = counted_build(h, tmp_path, "-q", "-t", "app:1", str(ctx))
    assert h("run", "--rm", "app:1").out == "zero\none\ntwo\n"
    # The COPY ran, so the first RUN's monitor was started during it; that RUN started the
    # second RUN's as it began. Both were taken; none was left over.
    assert made_started_discarded(counts) == (2, 2, 0)
    assert none_left(counts)

    # A changed file: the same again, and the image holds the new content.
    (ctx / "a.txt").write_text("zero, changed\n")
    _, counts = counted_build(h, tmp_path, "-q", "-t", "app:2", str(ctx))
    assert h("run", "--rm", "app:2").out == "zero, changed\none\ntwo\n"
    assert made_started_discarded(counts) == (2, 2, 0)
    assert none_left(counts)


def test_a_monitor_no_run_takes_is_ended(h: Hoist, ctx: Path, tmp_path: Path) -> None:
    # The first COPY runs, with RUNs ahead: their monitor is started; the next COPY fails.
    (ctx / "Dockerfile").write_text(DOCKERFILE.replace("COPY a.txt /a.txt\n", "COPY a.txt /a.txt\nCOPY absent /x\n"))
    res, counts = counted_build(h, tmp_path, "-q", "-t", "app:1", str(ctx), ok=False)
    assert "absent" in res.stderr
    assert made_started_discarded(counts) == (1, 0, 1)
    assert none_left(counts)


def test_a_failing_stage_ends_its_monitor(h: Hoist, ctx: Path, tmp_path: Path) -> None:
    (ctx / "Dockerfile").write_text(DOCKERFILE.replace("echo one >> /b.txt", "exit 3"))
    res, counts = counted_build(h, tmp_path, "-q", "-t", "app:1", str(ctx), ok=False)
    assert "exit code: 3" in res.stderr
    # The first RUN took the COPY's monitor and started the second RUN's as it began; it
    # failed, and the second RUN's monitor was ended unused.
    assert made_started_discarded(counts) == (2, 1, 1)
    assert none_left(counts)


def test_a_single_threaded_build_forks_its_monitors(h: Hoist, ctx: Path, tmp_path: Path) -> None:
    """One stage and no registry: the build has no threads, so its RUNs fork their monitors
    and none is started ahead."""
    (ctx / "Dockerfile").write_text(DOCKERFILE.split("FROM busybox\n")[0])
    _, counts = counted_build(h, tmp_path, "-q", "-t", "app:1", str(ctx))
    assert made_started_discarded(counts) == (0, 0, 0)
    assert h("run", "--rm", "app:1", "cat", "/c.txt").out == "zero\none\ntwo\n"
