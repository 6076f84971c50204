"""The registry application: ``create_app(config) -> web.Application``.

Routes come from ``registry.routes`` (one table for server, client and tests); handlers live
one module per resource in ``registry.server.handlers``; domain errors become the spec's JSON
errors in one middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web

from registry.routes import PATTERNS
from registry.server.config import Config, server_tls_context
from registry.server.errors import RegistryError, from_domain
from registry.server.auth import auth_middleware
from registry.server.metrics import Metrics, get_health, get_metrics, metrics_middleware
from registry.server.handlers import base, blobs, catalog, manifests, referrers, tags, token, uploads
from registry.server.handlers.common import API_VERSION, API_VERSION_HEADER
from registry.server.state import CONFIG, METRICS, STORE
from storage.drivers import StorageDriver, create_driver
from storage.errors import DomainError, DriverError, InvalidPath
from storage.maintenance import purge_abandoned
from storage.registry import RegistryStore

log = logging.getLogger("hoist.registry")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (method, route name, handler), registered in this order: upload routes before the blob route.
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "base", base.get_base),
    ("GET", "catalog", catalog.get_catalog),
    ("GET", "tags", tags.list_tags),
    ("GET", "referrers", referrers.get_referrers),
    ("POST", "upload_start", uploads.start_upload),
    ("GET", "upload", uploads.get_upload),
    ("PATCH", "upload", uploads.patch_upload),
    ("PUT", "upload", uploads.put_upload),
    ("DELETE", "upload", uploads.delete_upload),
    ("GET", "blob", blobs.get_blob),
    ("HEAD", "blob", blobs.get_blob),
    ("DELETE", "blob", blobs.delete_blob),
    ("GET", "manifest", manifests.get_manifest),
    ("HEAD", "manifest", manifests.get_manifest),
    ("PUT", "manifest", manifests.put_manifest),
    ("DELETE", "manifest", manifests.delete_manifest),
    ("GET", "token", token.get_token),
    ("POST", "token", token.post_token),
    ("GET", "metrics", get_metrics),
    ("GET", "health", get_health),
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
        resp = RegistryError("NAME_INVALID", str(e)).response()
    except web.HTTPException as e:
        e.headers[API_VERSION_HEADER] = API_VERSION
        raise
    except DriverError as e:
        log.error("storage error on %s %s: %s", request.method, request.path, e)
        resp = RegistryError("UNKNOWN", "storage backend error").response()
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
    app = web.Application(middlewares=[metrics_middleware, errors_middleware, auth_middleware], client_max_size=config.max_manifest_bytes + 1)
    app[CONFIG] = config
    app[METRICS] = Metrics.create()
    app[STORE] = RegistryStore(driver, config.max_manifest_bytes, config.automatic_crossmount)
    for method, route, handler in ROUTES:
        app.router.add_route(method, PATTERNS[route], handler, name=f"{method.lower()}_{route}")

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
    runner = web.AppRunner(app, access_log=log if config.access_log else None,
                           access_log_format='%a "%r" %s %b %Tf')
    await runner.setup()
    host, port = config.host_port
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True, ssl_context=tls)
    await site.start()
    if ready:
        ready(f"{'https' if tls else 'http'}://{host}:{port}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
