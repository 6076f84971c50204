"""Fixtures for the client and CLI tests: a hoist with its own state directories (``h``: with
the busybox image in its store), and the CLI run as a subprocess from async tests."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import REPO_ROOT, Hoist, Result, run_in_process
from tests.images import busybox_image


@pytest.fixture
def hoist(tmp_path: Path) -> Hoist:
    return Hoist(tmp_path)


def busybox_hoist(base: Path, epoch: str | None = None) -> Hoist:
    """A hoist over ``base`` with the busybox image in its store; ``epoch``: its builds'
    SOURCE_DATE_EPOCH."""
    hoist = Hoist(base)
    busybox_image(hoist.images)
    if epoch is not None:
        hoist.env["SOURCE_DATE_EPOCH"] = epoch
    return hoist


@pytest.fixture
def h(tmp_path: Path) -> Hoist:
    return busybox_hoist(tmp_path)


async def run_hoist(h: Hoist, *args: str, ok: bool = True, stdin: bytes | None = None,
                    subprocess: bool = False) -> Result:
    """Run the CLI without blocking the event loop an in-process registry runs on: in a worker thread
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


@pytest.fixture
def containers(hoist: Hoist) -> Iterator[Hoist]:
    """``hoist`` for tests that run containers: root and busybox-static required (absent
    otherwise: a failure in CI), every container the test left removed afterwards."""
    import os

    from tests.images import BUSYBOX
    from tests.peers import absent

    if os.geteuid() != 0:
        absent("containers need root")
    if not BUSYBOX.is_file():
        absent("/usr/bin/busybox missing (apt-get install busybox-static)")
    yield hoist
    from runtime.lifecycle import Runtime

    runtime = Runtime(hoist.root)
    for c in runtime.containers.all():
        runtime.remove(c, force=True)
