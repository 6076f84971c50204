"""Health checks for ``depends_on: {condition: service_healthy}`` and ``up --wait``.

hoist has no daemon to run checks in the background, so the engine runs a service's check while
it waits on it: docker's rules (``interval``, ``timeout``, ``retries``, ``start_period``,
``start_interval``; failures during the start period do not count), each probe a ``hoist exec``
of the test in the container (``CMD`` exec'd as given, ``CMD-SHELL`` through ``/bin/sh -c``),
killed at its timeout. The check is the service's ``healthcheck`` or else the image's HEALTHCHECK.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hoist.compose.errors import ComposeError

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
NS = 1_000_000_000


@dataclass(frozen=True)
class Check:
    argv: list[str]
    interval: float
    timeout: float
    retries: int
    start_period: float
    start_interval: float


def _seconds(value: Any, default: float) -> float:
    from storage.duration import parse_duration

    if value in (None, "", 0):
        return default
    if isinstance(value, (int, float)):     # an image config's HEALTHCHECK: nanoseconds
        return value / NS if value else default
    return parse_duration(str(value)) / NS or default


def check_for(service: str, svc: dict[str, Any], image_config: dict[str, Any]) -> Check | None:
    """The check the service runs, or None when it has none (or ``disable: true`` / ``NONE``)."""
    hc = svc.get("healthcheck") or {}
    if hc.get("disable"):
        return None
    image_hc = image_config.get("Healthcheck") or {}
    # The service's keys over the image's HEALTHCHECK, key by key (as docker merges them).
    source: dict[str, Any] = {"interval": image_hc.get("Interval"), "timeout": image_hc.get("Timeout"),
                              "retries": image_hc.get("Retries"), "start_period": image_hc.get("StartPeriod"),
                              "start_interval": image_hc.get("StartInterval")}
    source.update({k: v for k, v in hc.items() if k in source})
    test = hc.get("test") or image_hc.get("Test")
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        argv = list(test[1:])
    elif test[0] == "CMD-SHELL":
        argv = ["/bin/sh", "-c", " ".join(test[1:])]
    else:
        raise ComposeError(f'service "{service}": healthcheck test must start with CMD, CMD-SHELL or NONE')
    if not argv:
        return None
    interval = _seconds(source.get("interval"), DEFAULT_INTERVAL)
    return Check(argv=argv, interval=interval, timeout=_seconds(source.get("timeout"), DEFAULT_TIMEOUT),
                 retries=int(source.get("retries") or DEFAULT_RETRIES),
                 start_period=_seconds(source.get("start_period"), 0.0),
                 start_interval=_seconds(source.get("start_interval"), 5.0))


def probe(run_exec: Callable[[list[str]], int], argv: list[str], timeout: float) -> bool:
    """One probe: ``run_exec(argv)`` in a forked child (its output discarded), killed at ``timeout``."""
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.setpgid(0, 0)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            code = run_exec(argv)
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if time.monotonic() >= deadline:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(child, sig)
                except ProcessLookupError:
                    pass
                time.sleep(0.2)
            os.waitpid(child, 0)
            return False
        time.sleep(0.05)


def wait_healthy(name: str, check: Check, run_exec: Callable[[list[str]], int],
                 running: Callable[[], bool], started_at: float) -> None:
    """Probe until healthy; raise ComposeError once ``retries`` probes after the start period
    failed in a row, or the container stopped."""
    failures = 0
    while True:
        # As docker: the first probe comes one interval (start_interval in the start period) after
        # the start, not at once.
        in_start = time.time() - started_at < check.start_period
        time.sleep(check.start_interval if in_start else check.interval)
        if not running():
            raise ComposeError(f"container {name} exited before it became healthy")
        if probe(run_exec, check.argv, check.timeout):
            return
        if not in_start:
            failures += 1
            if failures >= check.retries:
                raise ComposeError(f"container {name} is unhealthy ({failures} failed checks of "
                                   f"{' '.join(check.argv)!r})")
