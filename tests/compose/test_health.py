"""A service's ``healthcheck`` becomes its container's Config.Healthcheck (docker compose's
ToMobyHealthCheck), which the runtime merges over the image's HEALTHCHECK field by field;
``disable`` and ``NONE`` mean none. (The probes themselves: tests/cli/test_health.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hoist.compose.health import container_healthcheck
from tests.cli.helpers import Hoist, Result
from tests.images import busybox_image
from tests.runtime.conftest import need_root_and_busybox
from runtime.health import HealthConfig, merge

S = 1_000_000_000
IMAGE = {"Test": ["CMD-SHELL", "pg_isready"], "Interval": 5 * S, "Timeout": 2 * S, "Retries": 7,
         "StartPeriod": 10 * S}


def effective(svc: dict[str, Any], image: dict[str, Any] | None = IMAGE) -> HealthConfig | None:
    return HealthConfig.from_docker(merge(container_healthcheck(svc), image))


def test_image_healthcheck_is_used_when_the_service_has_none() -> None:
    assert container_healthcheck({}) is None
    check = effective({})
    assert check is not None and check.argv() == ["/bin/sh", "-c", "pg_isready"]
    assert (check.interval, check.timeout, check.retries, check.start_period) == (5 * S, 2 * S, 7, 10 * S)


def test_service_keys_override_the_image_key_by_key() -> None:
    assert container_healthcheck({"healthcheck": {"interval": "1s", "retries": 2}}) == {"Interval": S, "Retries": 2}
    check = effective({"healthcheck": {"interval": "1s", "retries": 2}})
    assert check is not None and check.argv() == ["/bin/sh", "-c", "pg_isready"]
    assert (check.interval, check.timeout, check.retries) == (S, 2 * S, 2)
    check = effective({"healthcheck": {"test": ["CMD", "true"], "start_interval": "100ms",
                                       "start_period": "1m30s", "timeout": "0s"}}, None)
    assert check is not None and check.argv() == ["true"]
    assert (check.interval, check.timeout, check.retries, check.start_period, check.start_interval) == \
        (0, 0, 0, 90 * S, S // 10)   # 0: the runtime's defaults (30s, 30s, 3)


def test_disabled_or_none() -> None:
    assert container_healthcheck({"healthcheck": {"disable": True}}) == {"Test": ["NONE"]}
    assert effective({"healthcheck": {"disable": True}}) is None
    assert effective({"healthcheck": {"test": ["NONE"]}}) is None
    assert effective({}, None) is None


# -- on real containers ------------------------------------------------------------------------------

UNHEALTHY = """\
name: hc
services:
  bad:
    image: busybox:latest
    network_mode: none
    command: ["sleep", "60"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD-SHELL", "echo no; exit 1"]
      interval: 200ms
      retries: 2
  app:
    image: busybox:latest
    network_mode: none
    command: ["sleep", "60"]
    stop_signal: SIGKILL
    depends_on:
      bad: {condition: service_healthy}
  ok:
    image: checked:1
    network_mode: none
    command: ["sleep", "60"]
    stop_signal: SIGKILL
    healthcheck:
      test: "test -e /etc/passwd"
      interval: 200ms
  nocheck:
    image: checked:1
    network_mode: none
    command: ["sleep", "60"]
    stop_signal: SIGKILL
    healthcheck:
      disable: true
"""


def test_service_healthy_reads_the_containers_health(tmp_path: Path) -> None:
    need_root_and_busybox()
    hoist = Hoist(tmp_path)
    busybox_image(hoist.layout())
    busybox_image(hoist.layout(), "checked:1", config={"Healthcheck": {"Test": ["CMD-SHELL", "exit 1"],
                                                                        "Interval": 3600 * S}})
    (tmp_path / "compose.yaml").write_text(UNHEALTHY)

    def compose(*args: str, ok: bool = True) -> Result:
        return hoist("compose", "-f", str(tmp_path / "compose.yaml"), *args, ok=ok, subprocess=True, timeout=120)

    try:
        up = compose("up", "-d", "app", ok=False)
        assert up.code != 0 and "dependency failed to start: container hc-bad-1 is unhealthy" in up.err, up.err
        assert "Container hc-app-1" not in up.err   # app never started (and up rolled back what it made)
        up = compose("up", "-d", "--wait", "ok", "nocheck")
        assert "Container hc-ok-1  Healthy" in up.err, up.err
        info = json.loads(hoist("inspect", "hc-ok-1", "hc-nocheck-1").out)
        assert info[0]["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "test -e /etc/passwd"],
                                                    "Interval": S // 5}
        assert info[1]["Config"]["Healthcheck"] == {"Test": ["NONE"], "Interval": 3600 * S}
        assert "Health" not in info[1]["State"]
    finally:
        compose("down", ok=False)
