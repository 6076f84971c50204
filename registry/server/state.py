"""Typed application state (aiohttp AppKeys): no module globals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from registry.auth.tokens import Claims
from registry.server.config import Config
from storage.registry import RegistryStore

if TYPE_CHECKING:
    from registry.server.metrics import Metrics  # metrics.py reads these keys: no import at run time

CONFIG = web.AppKey("config", Config)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
STORE = web.AppKey("store", RegistryStore)
# aiohttp route name -> what it needs (auth.Needs), built from the route table in app.py.
ROUTE_NEEDS = web.AppKey("route_needs", dict)
# Per request: who the caller is and what their token grants (set by the auth middleware).
CLAIMS = web.RequestKey("claims", Claims)
