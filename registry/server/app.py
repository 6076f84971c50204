"""The registry application: ``create_app(config) -> web.Application``.

Routes come from ``registry.routes`` (one table for server, client and tests); handlers live
one module per resource in ``registry.server.handlers``; domain errors become the spec's JSON
errors in one middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from registry.routes import PATTERNS
from registry.server.auth import (
    CATALOG_SCOPE,
    IDENTITY,
    OPEN,
    Needs,
    auth_middleware,
    repository,
    route_key,
)
from registry.server.config import Config, server_tls_context
from registry.server.connections import handler_factory
from registry.server.errors import Code, RegistryError, from_domain
from registry.server.handlers import base, blobs, catalog, manifests, referrers, tags, token, uploads
from registry.server.handlers.common import API_VERSION, API_VERSION_HEADER
from registry.server.metrics import Metrics, get_health, get_metrics, metrics_middleware
from registry.server.state import CONFIG, METRICS, ROUTE_NEEDS, STORE
from storage.drivers import StorageDriver, create_driver
from storage.errors import DomainError, DriverError, InvalidPath
from storage.maintenance import purge_abandoned
from storage.registry import RegistryStore

log = logging.getLogger("hoist.registry")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PULL = repository("pull")
PUSH = repository("pull", "push")
DELETE = repository("delete")


@dataclass(frozen=True)
class Route:
    """One entry of the route table: what it serves and what the caller needs (no default: every
    route states its rule, and the auth middleware refuses a matched route without one)."""

    method: str
    name: str            # a key of registry.routes.PATTERNS
    handler: Handler
    needs: Needs


# Registered in this order: upload routes before the blob route.
ROUTES: list[Route] = [
    Route("GET", "base", base.get_base, IDENTITY),
    Route("HEAD", "base", base.get_base, IDENTITY),
    Route("GET", "catalog", catalog.get_catalog, CATALOG_SCOPE),
    Route("GET", "tags", tags.list_tags, PULL),
    Route("GET", "referrers", referrers.get_referrers, PULL),
    Route("POST", "upload_start", uploads.start_upload, PUSH),
    Route("GET", "upload", uploads.get_upload, PUSH),
    Route("PATCH", "upload", uploads.patch_upload, PUSH),
    Route("PUT", "upload", uploads.put_upload, PUSH),
    Route("DELETE", "upload", uploads.delete_upload, PUSH),
    Route("GET", "blob", blobs.get_blob, PULL),
    Route("HEAD", "blob", blobs.get_blob, PULL),
    Route("DELETE", "blob", blobs.delete_blob, DELETE),
    Route("GET", "manifest", manifests.get_manifest, PULL),
    Route("HEAD", "manifest", manifests.get_manifest, PULL),
    Route("PUT", "manifest", manifests.put_manifest, PUSH),
    Route("DELETE", "manifest", manifests.delete_manifest, DELETE),
    Route("GET", "token", token.get_token, OPEN),
    Route("POST", "token", token.post_token, OPEN),
    Route("GET", "metrics", get_metrics, OPEN),
    Route("GET", "health", get_health, OPEN),
]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except RegistryError as e:
        resp = e.response()
    except DomainError as e:
        resp = from_domain(e).response()
    except InvalidPath as e:
        resp = RegistryError(Code.NAME_INVALID, str(e)).response()
    except web.HTTPException as e:
        e.headers[API_VERSION_HEADER] = API_VERSION
        raise
    except DriverError as e:
        log.error("storage error on %s %s: %s", request.method, request.path, e)
        resp = RegistryError(Code.UNKNOWN, "storage backend error").response()
    resp.headers[API_VERSION_HEADER] = API_VERSION
    return resp


def _purger(config: Config) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(config.upload_purge_interval)
                try:
                    await purge_abandoned(app[STORE], config.upload_purge_age, config.upload_purge_dryrun, log)
                except Exception:
                    log.exception("upload purge failed")
        task = asyncio.create_task(loop()) if config.upload_purging else None
        yield
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return ctx


def create_app(config: Config, driver: StorageDriver | None = None) -> web.Application:
    """Build the application; ``driver`` overrides the configured one (tests pass the in-memory one)."""
    if driver is None:
        driver = create_driver(config.driver, config.driver_params)
    app = web.Application(middlewares=[metrics_middleware, errors_middleware, auth_middleware],
                          client_max_size=config.max_manifest_bytes + 1)
    app[CONFIG] = config
    app[METRICS] = Metrics.create()
    app[STORE] = RegistryStore(driver, config.max_manifest_bytes, config.automatic_crossmount)
    needs: dict[str, Needs] = {}
    for route in ROUTES:
        if not isinstance(route.needs, Needs):
            raise TypeError(f"route {route.method} {route.name} has no access rule")
        key = route_key(route.method, route.name)
        app.router.add_route(route.method, PATTERNS[route.name], route.handler, name=key)
        needs[key] = route.needs
    app[ROUTE_NEEDS] = needs

    async def close_driver(app: web.Application) -> AsyncIterator[None]:
        yield
        await driver.close()

    app.cleanup_ctx.append(close_driver)
    app.cleanup_ctx.append(_purger(config))
    return app


async def serve(config: Config, ready: Callable[[str], None] | None = None) -> None:
    """Run until cancelled."""
    tls = server_tls_context(config)
    app = create_app(config)
    # aiohttp's keep-alive timeout is the idle timeout; 0 means none (as Distribution's idletimeout).
    handler_args: dict[str, object] = {
        "keepalive_timeout": config.idle_timeout or 10.0 ** 9,
        "access_log": log if config.access_log else None,
        "access_log_format": '%a "%r" %s %b %Tf',
    }
    runner = web.AppRunner(app, **handler_args)  # type: ignore[arg-type]
    await runner.setup()
    host, port = config.host_port
    loop = asyncio.get_running_loop()
    assert runner.server is not None
    listener = await loop.create_server(
        handler_factory(runner.server, loop, config.read_header_timeout, **handler_args),
        host, port, backlog=1024, reuse_address=True, ssl=tls)
    if ready:
        ready(f"{'https' if tls else 'http'}://{host}:{port}")
    try:
        await asyncio.Event().wait()
    finally:
        listener.close()
        await runner.cleanup()
