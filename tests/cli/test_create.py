"""``hoist create``: run's flags, a container made but not started (docker's ``create``), then
``start`` runs it as docker's does: ``Created`` until then, the health check, ports, ``--rm`` and
``--cidfile`` kept from the create."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import Hoist, one_line
from tests.images import busybox_image


@pytest.fixture
def h(containers: Hoist) -> Iterator[Hoist]:
    busybox_image(containers.layout())
    yield containers


def _state(h: Hoist, name: str) -> dict[str, object]:
    return json.loads(h("inspect", name).out)[0]["State"]  # type: ignore[no-any-return]


def test_create_makes_a_container_start_runs(h: Hoist, tmp_path: Path) -> None:
    cid = h("create", "--name", "made", "-e", "GREETING=hi", "--label", "k=v", "--cidfile",
            str(tmp_path / "cid"), "busybox", "sh", "-c", "echo $GREETING from $(hostname); exit 3").out.strip()
    assert len(cid) == 64 and (tmp_path / "cid").read_text() == cid
    state = _state(h, "made")
    assert state["Status"] == "created" and state["Running"] is False and state["Pid"] == 0
    ps = h("ps", "-a", "--format", "{{.Names}} {{.Status}}").out
    assert "made Created" in ps
    assert h("ps", "-q").out == ""                               # not running
    assert h("logs", "made").out == ""                           # nothing ran
    r = h("start", "-a", "made", ok=False)
    assert r.code == 3 and r.out == f"hi from {cid[:12]}\n"
    state = _state(h, "made")
    assert state["Status"] == "exited" and state["ExitCode"] == 3
    assert json.loads(h("inspect", "made").out)[0]["Config"]["Labels"] == {"k": "v"}
    h("start", "made")                                           # again, detached: the log has both runs
    h("wait", "made")
    assert h("logs", "made").out == f"hi from {cid[:12]}\n" * 2


def test_create_rm_and_health_are_kept_for_start(h: Hoist) -> None:
    h("create", "--rm", "--name", "once", "busybox", "true")
    h("start", "-a", "once")
    assert "once" not in h("ps", "-a", "--format", "{{.Names}}").out    # --rm: gone once it exited
    h("create", "--name", "checked", "--health-cmd", "true", "--health-interval", "200ms", "busybox", "sleep", "30")
    assert "Health" not in _state(h, "checked") or _state(h, "checked")["Health"] is None
    h("start", "checked")
    for _ in range(100):
        health = _state(h, "checked").get("Health") or {}
        if health.get("Status") == "healthy":  # type: ignore[union-attr]
            break
        time.sleep(0.1)
    assert health.get("Status") == "healthy"  # type: ignore[union-attr]
    h("rm", "-f", "checked")


def test_create_refuses_what_run_refuses_and_leaves_nothing(h: Hoist) -> None:
    r = h("create", "-d", "busybox", ok=False)                      # not one of create's flags (docker: unknown flag)
    assert r.code == 2 and r.err.splitlines()[-1].endswith("unrecognized arguments: -d")
    one_line(h("create", "--restart", "on-failure:x", "busybox", ok=False), "invalid restart policy")
    one_line(h("create", "--health-interval", "nope", "busybox", ok=False), "nope")
    one_line(h("create", "--pull", "never", "no/such:image", ok=False), "no/such")
    h("create", "--name", "taken", "busybox")
    one_line(h("create", "--name", "taken", "busybox", ok=False), "taken")
    assert h("ps", "-a", "--format", "{{.Names}}").out == "taken\n"
