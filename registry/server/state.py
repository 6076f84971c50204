"""Typed application state (aiohttp AppKeys): no module globals."""

from __future__ import annotations

from aiohttp import web

from registry.server.config import Config
from storage.registry import RegistryStore

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", RegistryStore)
