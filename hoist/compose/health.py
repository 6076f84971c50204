"""A service's ``healthcheck`` as its containers' healthcheck, and waiting on their health.

compose hands the service's ``healthcheck:`` to the engine as the container's
``Config.Healthcheck`` (docker compose's ``ToMobyHealthCheck``: ``test``, ``interval``,
``timeout``, ``retries``, ``start_period``, ``start_interval``; ``disable: true`` is ``["NONE"]``);
the runtime merges it over the image's HEALTHCHECK field by field and each container's monitor
runs it (``runtime/health.py``). ``depends_on: {condition: service_healthy}`` and ``up --wait``
only read the container's ``State.Health`` (as compose's ``isServiceHealthy`` inspects it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hoist.compose.errors import ComposeError

if TYPE_CHECKING:
    from runtime.containers import Container

POLL = 0.05   # seconds between two looks at a container's state


def container_healthcheck(svc: dict[str, Any]) -> dict[str, Any] | None:
    """The service's ``healthcheck`` (canonical: ``test`` a list, durations Go text) as docker's
    HealthConfig, or None when the service has none (the image's applies as it is)."""
    from runtime import health
    from storage.duration import parse_duration

    hc = svc.get("healthcheck")
    if hc is None:
        return None
    def ns(key: str) -> int:
        value = hc.get(key)
        return parse_duration(str(value)) if value not in (None, "") else 0

    test = ["NONE"] if hc.get("disable") else [str(t) for t in hc.get("test") or []]
    return health.to_docker(test or None, ns("interval"), ns("timeout"), ns("start_period"),
                            ns("start_interval"), int(hc.get("retries") or 0))


def has_healthcheck(container: Container) -> bool:
    """Whether the container's monitor probes it (its Healthcheck has a test to run)."""
    from runtime.health import HealthConfig, HealthConfigError

    try:
        return HealthConfig.from_docker((container.spec.config or {}).get("Healthcheck")) is not None
    except HealthConfigError:
        return False


def wait_healthy(container: Container) -> None:
    """Until the container's Health says healthy; ComposeError once it says unhealthy, or the
    container exited, or it has no healthcheck (compose's messages)."""
    from runtime import health

    if not has_healthcheck(container):
        raise ComposeError(f"container {container.name} has no healthcheck configured")
    while True:
        status, state = container.status()
        if status == "exited":
            raise ComposeError(f"container {container.name} exited ({state.get('exit_code', 255)})")
        check = health.status_of(state)
        if status == "running" and check == health.HEALTHY:
            return
        if status == "running" and check == health.UNHEALTHY:
            raise ComposeError(f"container {container.name} is unhealthy")
        time.sleep(POLL)
