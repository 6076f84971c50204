"""Prometheus metrics (``GET /metrics``) and a health check (``GET /healthz``).

Each application has its own CollectorRegistry (no module globals), so several apps in one
process (tests) do not share counters.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from registry.server.state import METRICS, STORE
from storage import paths
from storage.errors import PathNotFound, StorageError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls) -> Metrics:
        reg = CollectorRegistry()
        return cls(
            reg,
            Counter("hoist_http_requests", "HTTP requests by route, method and status",
                    ["route", "method", "status"], registry=reg),
            Histogram("hoist_http_request_duration_seconds", "Time to the response headers, by route",
                      ["route"], registry=reg,
                      buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
        )


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        route = request.match_info.route.name or "unmatched"
        m = request.app[METRICS]
        m.requests.labels(route, request.method, str(status)).inc()
        m.latency.labels(route).observe(time.perf_counter() - start)


async def get_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def get_health(request: web.Request) -> web.Response:
    """200 when the storage backend answers, 503 otherwise."""
    try:
        await request.app[STORE].driver.stat(paths.ROOT)
    except PathNotFound:
        pass  # an empty store is healthy
    except StorageError as e:
        return web.json_response({"status": "unhealthy", "storage": str(e)}, status=503)
    return web.json_response({"status": "ok"})
