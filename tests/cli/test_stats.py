"""``hoist stats --no-stream``: docker's columns from the container's cgroups (or, on a v1 host
where the container has no cgroup of a kind, from its processes)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from hoist.commands.stats import bytes_size
from tests.cli.helpers import Hoist
from tests.images import busybox_image


@pytest.fixture
def h(containers: Hoist) -> Iterator[Hoist]:
    hoist = containers
    busybox_image(hoist.layout())
    yield hoist


def test_bytes_size_is_go_units() -> None:
    assert [bytes_size(n) for n in (0, 1023, 1024, 1_556_480, 64 << 20)] == ["0B", "1023B", "1KiB", "1.484MiB", "64MiB"]


def test_stats_of_a_busy_and_a_limited_container(h: Hoist) -> None:
    h("run", "-d", "--name", "busy", "busybox", "sh", "-c", "sleep 60 & while :; do :; done")
    h("run", "-d", "--name", "capped", "--memory", "64m", "--pids-limit", "20", "busybox", "sleep", "60")
    h("run", "--name", "gone", "busybox", "true")
    table = h("stats", "--no-stream").out.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%",
                                "NET", "I/O", "BLOCK", "I/O", "PIDS"]
    assert len(table) == 3   # running ones only
    rows = {r["Name"]: r for r in map(json.loads, h("stats", "--no-stream", "--format", "json").out.splitlines())}
    assert float(rows["busy"]["CPUPerc"].rstrip("%")) > 10      # a spinning shell: most of a CPU
    assert int(rows["busy"]["PIDs"]) >= 2
    assert rows["capped"]["MemUsage"].endswith(" / 64MiB")
    assert re.fullmatch(r"[\d.]+(B|KiB|MiB) / 64MiB", rows["capped"]["MemUsage"])
    assert rows["capped"]["NetIO"] == "0B / 0B"                 # --network none
    one = h("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "gone").out
    assert one == "gone 0\n"
    res = h("stats", "--no-stream", "nosuch", ok=False)
    assert res.code != 0 and "no such container" in res.err
