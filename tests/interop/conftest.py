"""Registries the client interop tests push to and pull from: CNCF Distribution and hoist's
own server (``hoist registry serve``)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.peers import Distribution, remove_scratch
from tests.registry.http import ServerProcess


class RegistryUnderTest(Protocol):
    addr: str

    def stop(self) -> None: ...


def start_registry(kind: str, base: Path) -> RegistryUnderTest:
    if kind == "distribution":
        return Distribution(base / "root", base).start()
    (base / "root").mkdir(parents=True, exist_ok=True)
    return ServerProcess(base / "root")


@pytest.fixture(scope="module", params=["distribution", "hoist"])
def registry_server(request: pytest.FixtureRequest) -> Iterator[RegistryUnderTest]:
    """One registry per test module and kind; tests use their own repository names."""
    base = Path(tempfile.mkdtemp(prefix=f"hoist-client-{request.param}-", dir="/tmp"))
    server = start_registry(request.param, base)
    try:
        yield server
    finally:
        server.stop()
        remove_scratch(base)


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """CNCF Distribution alone (for tests that are about docker, not about our server)."""
    base = tmp_path_factory.mktemp("distribution")
    server = Distribution(base / "root", base).start()
    try:
        yield server
    finally:
        server.stop()
