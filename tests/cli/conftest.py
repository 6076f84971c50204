"""Fixtures for the client and CLI tests: a hoist with its own state directories, and the CLI
run as a subprocess from async tests."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import REPO_ROOT, Hoist, Result


@pytest.fixture
def hoist(tmp_path: Path) -> Hoist:
    return Hoist(tmp_path)


async def run_hoist(h: Hoist, *args: str, ok: bool = True, stdin: bytes | None = None) -> Result:
    """Run the CLI as a subprocess without blocking the event loop an in-process registry runs on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hoist.cli", *args, env=h.env, cwd=REPO_ROOT,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    result = Result(proc.returncode or 0, out.decode(), err.decode())
    assert "Traceback" not in result.err, result.err
    if ok:
        assert result.code == 0, f"hoist {' '.join(args)}: {result.out}\n{result.err}"
    return result
