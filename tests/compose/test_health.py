"""A service's ``healthcheck`` becomes its container's Config.Healthcheck (docker compose's
ToMobyHealthCheck), which the runtime merges over the image's HEALTHCHECK field by field;
``disable`` and ``NONE`` mean none. (The probes themselves: tests/cli/test_health.py.)"""

from __future__ import annotations

from hoist.compose.health import container_healthcheck
from runtime.health import HealthConfig, merge

S = 1_000_000_000
IMAGE = {"Test": ["CMD-SHELL", "pg_isready"], "Interval": 5 * S, "Timeout": 2 * S, "Retries": 7,
         "StartPeriod": 10 * S}


def effective(svc: dict, image: dict | None = IMAGE) -> HealthConfig | None:
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
