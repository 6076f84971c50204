"""Driving the hoist CLI in tests (images to drive it with: ``tests.images``)."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess as _subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from storage.layout import ImageLayout

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


# Verbs that fork, unshare namespaces, install signal handlers or serve forever: always a process.
SUBPROCESS_VERBS = frozenset({"run", "exec", "registry", "start", "restart", "attach", "wait"})

# os.environ, sys.std* and the working directory are process-wide: one in-process call at a time.
_IN_PROCESS = threading.Lock()


def needs_process(args: Sequence[str]) -> bool:
    """Whether ``hoist ARGS`` must run as its own process (or may block without a bound)."""
    if not args:
        return False
    if args[0] == "build":  # a build forks RUN steps and catches Ctrl-C; only --check stays in process
        return "--check" not in args
    return args[0] in SUBPROCESS_VERBS or (args[0] == "logs" and any(a in ("-f", "--follow") for a in args))


def main_in_process(args: Sequence[str], env: dict[str, str], stdin: bytes | None = None
                    ) -> tuple[int, bytes, bytes]:
    """``hoist.cli.main(args)`` in this process, as if it were ``python -m hoist.cli ARGS`` run with
    ``env`` in REPO_ROOT: (exit code, stdout, stderr). stdin comes from ``stdin`` (empty and not a
    tty if None); the exit code from the return value or a SystemExit (argparse's). Exceptions
    propagate: in a subprocess they would be a traceback, which the callers refuse anyway."""
    from hoist.cli import main

    out, err = io.BytesIO(), io.BytesIO()
    with _IN_PROCESS:
        saved_env = dict(os.environ)
        saved_cwd = os.getcwd()
        saved_std = sys.stdin, sys.stdout, sys.stderr
        streams = (io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8"),
                   io.TextIOWrapper(out, encoding="utf-8", write_through=True),
                   io.TextIOWrapper(err, encoding="utf-8", write_through=True))
        sys.stdin, sys.stdout, sys.stderr = streams
        try:
            os.environ.clear()
            os.environ.update(env)
            os.chdir(REPO_ROOT)
            try:
                code = main(list(args))
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:                                  # sys.exit("message"): printed, status 1
                    print(e.code, file=sys.stderr)
                    code = 1
        finally:
            for stream in streams[1:]:
                stream.flush()
            sys.stdin, sys.stdout, sys.stderr = saved_std
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
        for stream in streams:
            stream.detach()                        # leave the buffers to the garbage collector
    return code, out.getvalue(), err.getvalue()


def run_in_process(args: Sequence[str], env: dict[str, str], stdin: bytes | None = None) -> Result:
    code, out, err = main_in_process(args, env, stdin)
    return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Hoist:
    """Runs the hoist CLI with its own HOIST_ROOT and DOCKER_CONFIG (and whatever else is put in
    ``env``): in this process through ``hoist.cli.main`` (fast), or as ``python -m hoist.cli`` for
    the verbs in SUBPROCESS_VERBS or when asked with ``subprocess=True``."""

    def __init__(self, base: Path) -> None:
        self.root = base / "hoist-root"
        self.docker_config = base / "docker-config"
        self.env = dict(os.environ, HOIST_ROOT=str(self.root), DOCKER_CONFIG=str(self.docker_config),
                        PYTHONPATH=str(REPO_ROOT))

    @property
    def images(self) -> Path:
        return self.root / "images"

    def layout(self) -> ImageLayout:
        return ImageLayout(self.images).init()

    def needs_process(self, args: Sequence[str]) -> bool:
        return needs_process(args)

    def __call__(self, *args: str, ok: bool = True, stdin: str | None = None, timeout: float = 120,
                 subprocess: bool = False) -> Result:
        if subprocess or self.needs_process(args):
            proc = _subprocess.run([sys.executable, "-m", "hoist.cli", *args], capture_output=True, text=True,
                                   env=self.env, input=stdin, timeout=timeout, cwd=REPO_ROOT)
            result = Result(proc.returncode, proc.stdout, proc.stderr)
        else:
            data = stdin.encode() if stdin is not None else None
            if _loop_running():                # asyncio.run needs a thread without a running loop
                with ThreadPoolExecutor(1) as pool:
                    result = pool.submit(run_in_process, args, self.env, data).result(timeout)
            else:
                result = run_in_process(args, self.env, data)
        return self.check(args, result, ok)

    @staticmethod
    def check(args: Sequence[str], result: Result, ok: bool) -> Result:
        assert "Traceback" not in result.err, result.err
        if ok:
            assert result.code == 0, f"hoist {' '.join(args)} failed:\n{result.out}\n{result.err}"
        return result


def one_line(res: Result, *words: str) -> None:
    """A failure as the CLI must fail: a non-zero exit and one line on stderr (never a traceback)
    holding each of ``words``."""
    assert res.code != 0 and "Traceback" not in res.err, res
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    for w in words:
        assert w in lines[0], lines[0]
