"""``hoist ps`` and ``hoist images`` flags and columns as docker's: -q, -s, --no-trunc, -n/-l,
--filter, --format (Go templates through hoist/gotemplate.py), SIZE as the unpacked size."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from hoist.commands.images import path_match
from hoist.commands.ps import format_ports
from hoist.progress import docker_size, human_duration
from tests.cli.helpers import Hoist, Result
from tests.images import BUSYBOX, add_image, busybox_image, files_layer


def _one_line(res: Result, *words: str) -> None:
    assert res.code != 0 and "Traceback" not in res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    for w in words:
        assert w in lines[0], lines[0]


# -- pure parts -----------------------------------------------------------------------------------

def test_docker_sizes_and_durations() -> None:
    assert [docker_size(n) for n in (0, 999, 1000, 4_260_000, 123_456_789, 1_980_000)] == \
        ["0B", "999B", "1kB", "4.26MB", "123MB", "1.98MB"]
    assert docker_size(1_983_000, 4) == "1.983MB"
    assert [human_duration(s) for s in (0.5, 1, 59, 60, 119, 3599, 3600, 5400, 86400 * 3, 86400 * 20)] == \
        ["Less than a second", "1 second", "59 seconds", "About a minute", "About a minute", "59 minutes",
         "About an hour", "2 hours", "3 days", "2 weeks"]


def test_ports_column_groups_ranges() -> None:
    bindings = [{"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8080 + i, "container_port": 80 + i}
                for i in range(3)]
    bindings += [{"proto": "udp", "host_ip": "127.0.0.1", "host_port": 53, "container_port": 53},
                 {"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 0, "container_port": 9000}]
    assert format_ports(bindings) == "0.0.0.0:8080-8082->80-82/tcp, 127.0.0.1:53->53/udp, 9000/tcp"
    assert format_ports([]) == ""


def test_reference_patterns_are_go_path_match() -> None:
    assert path_match("bus*", "busybox") and path_match("*/app", "team/app")
    assert not path_match("*", "team/app")                       # * never crosses a /
    assert path_match("team/ap?", "team/app") and path_match("[a-c]pp", "app")
    assert not path_match("bus*", "registry.local:5000/busybox")


# -- images -----------------------------------------------------------------------------------------

def test_images_size_is_the_unpacked_size_however_stored(hoist: Hoist) -> None:
    data = b"x" * 300_000 + os.urandom(200_000)
    layer = files_layer({"data/a": data, "data/b": b"y" * 1000})
    layout = hoist.layout()
    add_image(layout, "gz:1", [layer], {"Labels": {"tier": "web"}}, "gzip")
    add_image(layout, "plain:1", [layer], {"Labels": {"tier": "web"}}, None)
    add_image(layout, "zst:1", [layer], {"Labels": {"tier": "web"}}, "zstd")
    add_image(layout, "other:1", [files_layer({"o": b"o"})], {}, None)
    rows = {r["Repository"]: r for r in map(json.loads, hoist("images", "--format", "json").out.splitlines())}
    assert {rows[r]["Size"] for r in ("gz", "plain", "zst")} == {docker_size(len(data) + 1000)}
    assert rows["other"]["Size"] == "1B"
    # The same layer however compressed: the same config, so one image id.
    assert len({rows[r]["ID"] for r in ("gz", "plain", "zst")}) == 1
    assert hoist("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "label=tier=web").out.split() \
        == ["gz:1", "plain:1", "zst:1"]


def test_images_filters_format_quiet_digests(hoist: Hoist) -> None:
    layout = hoist.layout()
    old = busybox_image(layout, "registry.local:5000/team/app:1")
    add_image(layout, "tool:2", [files_layer({"t": b"2"})], {"Labels": {"kind": "tool"}},
              created="2030-01-01T00:00:00Z")
    untagged = add_image(layout, None, [files_layer({"t": b"dangling"})], {}, created="2031-01-01T00:00:00Z")
    layout.tag(str(untagged.digest), untagged)  # as `hoist load` keeps an archive's untagged image
    assert len(layout.refs()) == 3

    listed = hoist("images").out.splitlines()
    assert listed[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert [line.split()[0] for line in listed[1:]] == ["<none>", "tool", "registry.local:5000/team/app"]

    fmt = "{{.Repository}}|{{.Tag}}"
    assert hoist("images", "--filter", "dangling=true", "--format", fmt).out == "<none>|<none>\n"
    assert hoist("images", "--filter", "dangling=false", "--format", fmt).out.splitlines() == \
        ["tool|2", "registry.local:5000/team/app|1"]
    assert hoist("images", "--filter", "reference=tool", "--format", fmt).out == "tool|2\n"
    assert hoist("images", "--filter", "reference=*/team/*:1", "--format", fmt).out == \
        "registry.local:5000/team/app|1\n"
    assert hoist("images", "-f", "label=kind=tool", "--format", fmt).out == "tool|2\n"
    assert hoist("images", "-f", "since=registry.local:5000/team/app:1", "-f", "dangling=false",
                 "--format", fmt).out == "tool|2\n"

    table = hoist("images", "--format", "table {{.Repository}}\t{{.Size}}").out.splitlines()
    assert table[0].split() == ["REPOSITORY", "SIZE"] and len(table) == 4
    ids = hoist("images", "-q").out.split()
    assert len(ids) == 3 and all(len(i) == 12 for i in ids)
    assert all(i.startswith("sha256:") and len(i) == 71 for i in hoist("images", "-q", "--no-trunc").out.split())
    # Not pulled from nor pushed to a registry: no repo digest, as docker shows for a local image.
    digests = hoist("images", "--digests", "registry.local:5000/team/app").out.splitlines()
    assert digests[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"] and digests[1].split()[2] == "<none>"
    layout.record_sources([old.digest], "registry.local:5000/team/app")
    assert str(old.digest) in hoist("images", "--digests").out

    _one_line(hoist("images", "--filter", "colour=red", ok=False), "invalid filter 'colour'")
    _one_line(hoist("images", "--filter", "dangling=maybe", ok=False), "dangling=maybe")
    _one_line(hoist("images", "--format", "{{.Nope}}", ok=False), "can't evaluate field Nope")


# -- ps ---------------------------------------------------------------------------------------------

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


def test_ps_columns_filters_and_formats(h: Hoist) -> None:
    h("run", "-d", "--name", "web", "--label", "tier=front", "--label", "team=a", "busybox", "sleep", "60")
    h("run", "-d", "--name", "job", "--label", "tier=batch", "busybox", "sh", "-c",
      "echo 123456789 > /written; exit 3")
    _wait_exited(h, "job")
    h("run", "-d", "--name", "ok", "busybox", "true")
    _wait_exited(h, "ok")

    table = h("ps").out.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert len(table) == 2 and table[1].split()[1] == "busybox" and '"sleep 60"' in table[1]
    assert table[1].rstrip().endswith("web") and "Up " in table[1]

    names = "{{.Names}}"
    assert h("ps", "-a", "--format", names).out.split() == ["ok", "job", "web"]   # newest first
    assert h("ps", "-l", "--format", names).out.split() == ["ok"]
    assert h("ps", "-n", "2", "--format", names).out.split() == ["ok", "job"]
    assert h("ps", "--filter", "status=exited", "--format", names).out.split() == ["ok", "job"]  # implies -a
    assert h("ps", "-a", "--filter", "exited=3", "--format", names).out.split() == ["job"]
    assert h("ps", "--filter", "exited=3", "--format", names).out.split() == []  # exited= alone: running only
    assert h("ps", "-a", "--filter", "name=^jo", "--format", names).out.split() == ["job"]
    assert h("ps", "-a", "--filter", "label=tier", "--format", names).out.split() == ["job", "web"]
    assert h("ps", "-a", "--filter", "label=tier=front", "-f", "label=team=a", "--format", names).out.split() == ["web"]
    assert h("ps", "-a", "--filter", "status=running", "--filter", "status=exited", "--format", names).out.split() \
        == ["ok", "job", "web"]
    assert h("ps", "-a", "--filter", "ancestor=busybox", "--format", names).out.split() == ["ok", "job", "web"]
    assert h("ps", "-a", "--filter", "ancestor=nosuch:1", "--format", names).out.split() == []

    ids = h("ps", "-aq").out.split()
    assert len(ids) == 3 and all(len(i) == 12 for i in ids)
    assert all(len(i) == 64 for i in h("ps", "-aq", "--no-trunc").out.split())
    full = h("ps", "-a", "--no-trunc", "--filter", "name=job", "--format", "{{.Command}}").out.strip()
    assert full == '"sh -c \'echo 123456789 > /written; exit 3\'"'
    short = h("ps", "-a", "--filter", "name=job", "--format", "{{.Command}}").out.strip()
    assert short == '"sh -c \'echo 1234567…"'

    sized = h("ps", "-a", "-s", "--filter", "name=job").out.splitlines()
    assert sized[0].split()[-1] == "SIZE"
    assert sized[1].rstrip().endswith(f"10B (virtual {docker_size(10 + _busybox_size(h))})")
    assert _busybox_size(h) > BUSYBOX.stat().st_size

    rows = [json.loads(line) for line in h("ps", "-a", "--format", "json").out.splitlines()]
    assert {r["Names"]: r["State"] for r in rows} == {"ok": "exited", "job": "exited", "web": "running"}
    assert {r["Names"]: r["Labels"] for r in rows}["web"] == "team=a,tier=front"
    assert list(rows[0]) == sorted(rows[0])
    assert h("ps", "-a", "--format", "table {{.Names}}\t{{.Status}}", "-f", "name=job").out.splitlines()[1] \
        .split()[:3] == ["job", "Exited", "(3)"]

    _one_line(h("ps", "--filter", "status=sleepy", ok=False), "invalid filter 'status=sleepy'")
    _one_line(h("ps", "--filter", "colour=red", ok=False), "invalid filter 'colour'")
    _one_line(h("ps", "--filter", "nokey", ok=False), "bad format of filter")
    _one_line(h("ps", "--format", "{{.Nope}}", ok=False), "can't evaluate field Nope")


def _busybox_size(h: Hoist) -> int:
    """The busybox image's unpacked size: its layers' regular file bytes."""
    from storage.archive import layer_content_size

    layout = h.layout()
    _, manifest = layout.platform_image(layout.find("busybox").descriptor)
    return sum(layer_content_size(layout.blob_path(d.digest)) for d in manifest.layers)


def test_status_texts_as_docker() -> None:
    from hoist.commands.ps import status_text

    now = 1_700_000_000.0
    assert status_text("running", {"started_at": now - 120}, now) == "Up 2 minutes"
    assert status_text("running", {"started_at": now - 120, "paused": True}, now) == "Up 2 minutes (Paused)"
    assert status_text("restarting", {"exit_code": 1, "finished_at": now - 5}, now) == "Restarting (1) 5 seconds ago"
    assert status_text("exited", {"exit_code": 137, "finished_at": now - 3600}, now) == "Exited (137) About an hour ago"
    assert status_text("created", {}, now) == "Created"
