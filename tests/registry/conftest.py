from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.registry.http import Client, ServerProcess


@pytest.fixture(scope="session")
def registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("registry-root"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(registry_server: ServerProcess) -> Client:
    return registry_server.client()


@pytest.fixture
def repo() -> str:
    """A fresh repository name per test (tests share one server)."""
    return f"conformance/{uuid.uuid4().hex[:12]}"
