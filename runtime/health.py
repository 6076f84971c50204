"""Docker's container health checks (moby daemon/health.go semantics), daemonless.

A :class:`Prober` runs the configured test every interval and folds each result into docker's
``State.Health`` document ``{Status, FailingStreak, Log}``: ``starting`` until the first pass,
``healthy`` after a pass, ``unhealthy`` once ``Retries`` consecutive failures counted; failures
while still ``starting`` inside ``StartPeriod`` do not count; a probe running past ``Timeout`` is
killed and recorded as exit code -1; the last 5 results are kept, output cut to 4096 bytes.

The probe itself (``run_probe``) and the persistence (``write``) are passed in, so the monitor can
supply an in-container exec and ``Container.update_state``.
"""
from __future__ import annotations

import datetime as _dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT_LEN = 4096
EXIT_HEALTHY = 0

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"

# (exit code, output bytes); exit code -1 and output text on a timeout
ProbeResult = tuple[int, bytes]
RunProbe = Callable[[list[str], float], ProbeResult]


class HealthConfigError(ValueError):
    pass


@dataclass
class HealthConfig:
    """docker's container Config.Healthcheck, durations in nanoseconds (0 = docker's default)."""
    test: list[str]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    @classmethod
    def from_docker(cls, doc: dict[str, Any] | None) -> HealthConfig | None:
        """From an image's or container's ``Healthcheck``; None when absent or ``["NONE"]``."""
        if not doc:
            return None
        test = list(doc.get("Test") or [])
        if not test or test[0] == "NONE":
            return None
        if test[0] not in ("CMD", "CMD-SHELL"):
            raise HealthConfigError(f"unknown healthcheck type {test[0]!r}")
        values = {}
        for key, name in (("Interval", "interval"), ("Timeout", "timeout"),
                          ("StartPeriod", "start_period"), ("StartInterval", "start_interval"),
                          ("Retries", "retries")):
            value = doc.get(key) or 0
            if not isinstance(value, int) or value < 0:
                raise HealthConfigError(f"healthcheck {key} must be a non-negative integer")
            values[name] = value
        return cls(test=test, **values)

    def to_docker(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"Test": list(self.test)}
        for key, value in (("Interval", self.interval), ("Timeout", self.timeout),
                           ("StartPeriod", self.start_period),
                           ("StartInterval", self.start_interval), ("Retries", self.retries)):
            if value:
                doc[key] = value
        return doc

    def argv(self) -> list[str]:
        if self.test[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", " ".join(self.test[1:])]
        return list(self.test[1:])


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat().replace("+00:00", "Z")


def new_state() -> dict[str, Any]:
    return {"Status": STARTING, "FailingStreak": 0, "Log": []}


def fold(health: dict[str, Any], config: HealthConfig, started_at: float, probe_start: float,
         start: str, end: str, exit_code: int, output: bytes) -> dict[str, Any]:
    """One probe result folded into ``health`` (docker's handleProbeResult); returns it."""
    text = output[:MAX_OUTPUT_LEN].decode("utf-8", "replace")
    log = list(health.get("Log") or [])
    log.append({"Start": start, "End": end, "ExitCode": exit_code, "Output": text})
    health["Log"] = log[-MAX_LOG_ENTRIES:]
    if exit_code == EXIT_HEALTHY:
        health["FailingStreak"] = 0
        health["Status"] = HEALTHY
        return health
    counts = True
    if health.get("Status") == STARTING:
        if probe_start - started_at < config.start_period / SECOND:
            counts = False
    if counts:
        health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
        if health["FailingStreak"] >= (config.retries or DEFAULT_RETRIES):
            health["Status"] = UNHEALTHY
    return health


class Prober:
    """Runs ``config``'s probe on a thread until :meth:`stop`; each new Health doc goes to ``write``."""

    def __init__(self, config: HealthConfig, run_probe: RunProbe,
                 write: Callable[[dict[str, Any]], None], started_at: float | None = None) -> None:
        self.config = config
        self.run_probe = run_probe
        self.write = write
        self.started_at = time.time() if started_at is None else started_at
        self.health = new_state()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hoist-health", daemon=True)

    def start(self) -> None:
        self.write(dict(self.health))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _interval(self) -> float:
        cfg = self.config
        in_start = (self.health["Status"] == STARTING
                    and time.time() - self.started_at < cfg.start_period / SECOND)
        if in_start and cfg.start_interval:
            return cfg.start_interval / SECOND
        if in_start and cfg.start_period:
            return min(DEFAULT_START_INTERVAL, (cfg.interval or DEFAULT_INTERVAL)) / SECOND
        return (cfg.interval or DEFAULT_INTERVAL) / SECOND

    def _loop(self) -> None:
        timeout = (self.config.timeout or DEFAULT_TIMEOUT) / SECOND
        argv = self.config.argv()
        while not self._stop.wait(self._interval()):
            probe_start = time.time()
            start = _now()
            try:
                code, output = self.run_probe(argv, timeout)
            except Exception as e:   # the probe could not even start: docker records -1
                code, output = -1, str(e).encode()
            if self._stop.is_set():
                return
            self.health = fold(self.health, self.config, self.started_at, probe_start, start,
                               _now(), code, output)
            self.write(dict(self.health))


def timeout_output(timeout: float) -> bytes:
    return f"Health check exceeded timeout ({timeout:g}s)".encode()
