"""Fixtures for the runtime tests: a fresh HOIST_ROOT with a busybox image, a CLI runner, and a
check that no test leaves a container running or a mount behind."""

from __future__ import annotations

import os
import shutil
import subprocess as _subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.helpers import main_in_process, needs_process
from tests.images import BUSYBOX, busybox_image
from tests.peers import absent

REPO = Path(__file__).resolve().parents[2]


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


@pytest.fixture(autouse=True)
def _no_leaked_mounts(tmp_path: Path) -> Iterator[None]:
    """Containers mount only inside their own mount namespace; nothing may show up on the host
    under the test's directory (other processes on the machine may mount elsewhere)."""
    yield
    leaked = [m for m in _mounts() if m.startswith(str(tmp_path))]
    assert not leaked, f"test left mounts behind: {sorted(leaked)}"


def need_root_and_busybox() -> None:
    if os.geteuid() != 0:
        absent("the runtime tests need root (rootless is not supported yet)")
    if not BUSYBOX.is_file():
        absent("/usr/bin/busybox missing (apt-get install busybox-static)")


@dataclass
class Hoist:
    root: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ, HOIST_ROOT=str(self.root))
        env["PYTHONPATH"] = str(REPO)
        return env

    def __call__(self, *args: str, timeout: float = 60, input: bytes | None = None,
                 subprocess: bool = False) -> _subprocess.CompletedProcess:
        """``hoist ARGS``: ``run``, ``exec``, ``logs -f`` (and any call with ``subprocess=True``) in
        their own process; the verbs that only read or signal container state in this one."""
        if subprocess or needs_process(args):
            return _subprocess.run([sys.executable, "-m", "hoist.cli", *args], capture_output=True,
                                   env=self.env(), timeout=timeout, input=input, cwd=REPO)
        code, out, err = main_in_process(args, self.env(), input)
        return _subprocess.CompletedProcess([sys.executable, "-m", "hoist.cli", *args], code, out, err)

    def ok(self, *args: str, timeout: float = 60) -> str:
        res = self(*args, timeout=timeout)
        assert res.returncode == 0, (f"hoist {' '.join(args)} -> {res.returncode}\n"
                                     f"stdout: {res.stdout.decode()}\nstderr: {res.stderr.decode()}")
        return res.stdout.decode()

    def cleanup(self) -> None:
        from runtime.lifecycle import Runtime
        runtime = Runtime(self.root)
        for c in runtime.containers.all():
            runtime.remove(c, force=True)


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image layout holding the busybox image, built once; tests get their own copy."""
    need_root_and_busybox()
    layout = tmp_path_factory.mktemp("busybox-layout") / "images"
    busybox_image(layout)
    return layout


@pytest.fixture
def hoist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busybox_layout: Path) -> Iterator[Hoist]:
    need_root_and_busybox()
    root = tmp_path / "hoist"
    monkeypatch.setenv("HOIST_ROOT", str(root))
    root.mkdir()
    shutil.copytree(busybox_layout, root / "images")   # a real copy: tests may damage their store
    h = Hoist(root)
    try:
        yield h
    finally:
        h.cleanup()
