"""Fixtures for the client and CLI tests: a misbehaving in-process registry and a hoist with
its own state directories."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator

import pytest

from storage import mediatypes as mt
from tests.cli.fakeregistry import FakeRegistry
from tests.cli.helpers import REPO_ROOT, Hoist, Result, run_in_process


@pytest.fixture
def hoist(tmp_path: Path) -> Hoist:
    return Hoist(tmp_path)


@pytest.fixture
async def fake(aiohttp_server: Any) -> AsyncIterator[tuple[FakeRegistry, str]]:
    """(the registry, its "127.0.0.1:PORT")."""
    registry = FakeRegistry()
    server = await aiohttp_server(registry.app(), host="127.0.0.1")
    yield registry, f"127.0.0.1:{server.port}"


async def run_hoist(h: Hoist, *args: str, ok: bool = True, stdin: bytes | None = None,
                    subprocess: bool = False) -> Result:
    """Run the CLI without blocking the event loop the fake registry runs on: in a worker thread
    through ``hoist.cli.main`` (its own event loop there), or as a subprocess when asked or when
    the verb needs one."""
    if not (subprocess or h.needs_process(args)):
        result = await asyncio.wait_for(asyncio.to_thread(run_in_process, args, h.env, stdin), 120)
        return h.check(args, result, ok)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hoist.cli", *args, env=h.env, cwd=REPO_ROOT,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    return h.check(args, Result(proc.returncode or 0, out.decode(), err.decode()), ok)


def publish(registry: FakeRegistry, name: str, tag: str, layers: list[bytes],
            arch: str = "amd64") -> tuple[str, list[str]]:
    """Put an image (layers as given) into the fake; return (manifest digest, layer digests)."""
    digests = [registry.add_blob(data) for data in layers]
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": digests},
                         "config": {}}).encode()
    config_digest = registry.add_blob(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config)},
                           "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": d, "size": len(data)}
                                      for d, data in zip(digests, layers, strict=True)]}).encode()
    return registry.add_manifest(name, [tag], manifest, mt.OCI_MANIFEST), digests


def incompressible(size: int) -> bytes:
    return os.urandom(size)
