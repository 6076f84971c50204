"""Which healthcheck a service runs: its own ``healthcheck`` over the image's HEALTHCHECK, key by
key; ``disable`` and ``NONE`` mean none."""

from __future__ import annotations

from hoist.compose.health import check_for

IMAGE = {"Healthcheck": {"Test": ["CMD-SHELL", "pg_isready"], "Interval": 5_000_000_000,
                         "Timeout": 2_000_000_000, "Retries": 7, "StartPeriod": 10_000_000_000}}


def test_image_healthcheck_is_used_when_the_service_has_none() -> None:
    check = check_for("db", {}, IMAGE)
    assert check is not None
    assert check.argv == ["/bin/sh", "-c", "pg_isready"]
    assert (check.interval, check.timeout, check.retries, check.start_period) == (5.0, 2.0, 7, 10.0)


def test_service_keys_override_the_image_key_by_key() -> None:
    check = check_for("db", {"healthcheck": {"interval": "1s", "retries": 2}}, IMAGE)
    assert check is not None
    assert check.argv == ["/bin/sh", "-c", "pg_isready"]
    assert (check.interval, check.timeout, check.retries) == (1.0, 2.0, 2)
    check = check_for("db", {"healthcheck": {"test": ["CMD", "true"]}}, {})
    assert check is not None and check.argv == ["true"]
    assert (check.interval, check.timeout, check.retries, check.start_period) == (30.0, 30.0, 3, 0.0)


def test_disabled_or_none() -> None:
    assert check_for("db", {"healthcheck": {"disable": True}}, IMAGE) is None
    assert check_for("db", {"healthcheck": {"test": ["NONE"]}}, IMAGE) is None
    assert check_for("db", {}, {}) is None
