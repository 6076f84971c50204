"""Registries the client interop tests push to and pull from: CNCF Distribution, and hoist's
own server (``hoist registry serve``) once it exists."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Protocol

import pytest

from tests.peers import Distribution, free_port, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[2]
HOIST_SERVER = REPO_ROOT / "hoist" / "commands" / "registry.py"


class RegistryUnderTest(Protocol):
    addr: str

    def stop(self) -> None: ...


class HoistServer:
    """``hoist registry serve`` on a free loopback port over its own root."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.log = open(root.parent / f"hoist-registry-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hoist.cli", "registry", "serve", "--addr", self.addr, "--root", str(root)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        wait_for_port(self.port, 30, self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def start_registry(kind: str, base: Path) -> RegistryUnderTest:
    if kind == "distribution":
        return Distribution(base / "root", base).start()
    if not HOIST_SERVER.exists():
        pytest.skip("hoist's registry server (hoist/commands/registry.py) does not exist yet")
    (base / "root").mkdir(parents=True, exist_ok=True)
    return HoistServer(base / "root")


@pytest.fixture(scope="module", params=["distribution", "hoist"])
def registry_server(request: pytest.FixtureRequest) -> Iterator[RegistryUnderTest]:
    """One registry per test module and kind; tests use their own repository names."""
    base = Path(tempfile.mkdtemp(prefix=f"hoist-client-{request.param}-", dir="/tmp"))
    server = start_registry(request.param, base)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """CNCF Distribution alone (for tests that are about docker, not about our server)."""
    base = tmp_path_factory.mktemp("distribution")
    server = Distribution(base / "root", base).start()
    try:
        yield server
    finally:
        server.stop()
