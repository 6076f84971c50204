"""A RUN right after a COPY starts while the COPY's layer is still being made (its tar hashed,
or compressed into a blob), on the COPY's upper dir, and is looked up in the cache once the
layer is made (builder.execute: ``_defer_commit``, ``_run_ahead``); a hit kills it.

``HOIST_BUILD_RUN_AHEAD=wait`` makes the layer wait for the RUN's first output (or the end of
the RUN), so the tests take that way for sure, and what a RUN does before it prints happens
before the lookup (the default takes it whenever the layer is not made by then); ``=0`` is
the way without it, which must make the same image.

What shows a RUN ran ahead: it calls a listener on loopback, which looks at the store while
the RUN waits for its answer. The COPY's snapshot is adopted only once the RUN is done, so a
RUN that ran ahead finds one snapshot fewer than one that did not. A proxy build arg
(``http_proxy``: in the step's env, never in its key, as BuildKit's) tells the RUN what to do
without changing its key."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.layout import ImageLayout
from tests.cli.helpers import Hoist
from tests.images import busybox_image

EPOCH = "1700000000"


class Listener:
    """A loopback server: each connection's first line, with the names of the store's
    snapshots at that moment (the caller's ``root``), kept in ``calls``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.root: Path | None = None
        self.calls: list[tuple[str, list[str]]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                assert self.root is not None
                snapshots = sorted(p.name for p in (self.root / "snapshots").iterdir() if not p.name.startswith("."))
                data = b""
                while b"\n" not in data and (chunk := conn.recv(4096)):
                    data += chunk
                self.calls.append((data.decode().strip(), snapshots))

    def call(self, text: str) -> str:
        """A shell command that sends ``text`` and waits for the listener to hang up."""
        return f'echo "{text}" | busybox nc 127.0.0.1 {self.port}'


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.sock.close()


def _runner(tmp_path: Path, name: str, mode: str) -> Hoist:
    hoist = Hoist(tmp_path / name)
    busybox_image(hoist.images)
    hoist.env["SOURCE_DATE_EPOCH"] = EPOCH
    hoist.env["HOIST_BUILD_RUN_AHEAD"] = mode
    return hoist


def _context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "src" / "d").mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for i in range(40):
        (ctx / "src" / "d" / f"f{i}.txt").write_text(f"{i}\n" * 50)
    (ctx / "src" / "a.txt").write_text("a\n")
    os.symlink("a.txt", ctx / "src" / "ln")
    return ctx


def _digest(hoist: Hoist, ref: str) -> str:
    return str(ImageLayout(hoist.images).find(ref).descriptor.digest)


def _layers(hoist: Hoist, ref: str) -> list[str]:
    _, manifest = ImageLayout(hoist.images).resolve_image(ref)
    return [str(layer.digest) for layer in manifest.layers]


def _steps_left(hoist: Hoist) -> list[str]:
    steps = hoist.root / "build" / "steps"
    return sorted(p.name for p in steps.iterdir() if not p.name.startswith(".")) if steps.is_dir() else []


def test_a_run_ahead_sees_the_copy_and_makes_the_image_the_waiting_way_makes(
        tmp_path: Path, listener: Listener) -> None:
    ctx = _context(tmp_path, f"""\
FROM busybox AS build
COPY src/ /src/
RUN {listener.call("build")} && cat /src/a.txt /src/ln /src/d/f7.txt | wc -l > /lines && ls /src/d | wc -l > /count
COPY src/a.txt /again.txt
RUN cat /again.txt /lines /count > /all

FROM busybox
COPY --from=build /all /
COPY src/ /app/
RUN {listener.call("final")} && ls /app/d | wc -l > /app-count
""")
    digests, seen = {}, {}
    for mode in ("wait", "0"):
        hoist = _runner(tmp_path, f"runner-{mode}", mode)
        listener.root, listener.calls = hoist.root, []
        hoist("build", "-t", "ahead:1", str(ctx))
        digests[mode] = _digest(hoist, "ahead:1")
        assert hoist("run", "--rm", "ahead:1", "cat", "/all", "/app-count").out.split() == ["a", "52", "40", "40"]
        assert _steps_left(hoist) == []
        seen[mode] = dict(listener.calls)
    # Each RUN after a COPY ran while that COPY's snapshot was not there yet (it was adopted
    # after the RUN), in the build stage (lazy layers) and in the final one (blobs).
    for name in ("build", "final"):
        assert set(seen["wait"][name]) < set(seen["0"][name])
        assert len(seen["0"][name]) - len(seen["wait"][name]) == 1
    assert digests["wait"] == digests["0"]


def test_a_hit_found_while_the_run_runs_kills_it_and_shows_cached(tmp_path: Path, listener: Listener) -> None:
    """The COPY misses (its sources are named another way) but makes the layer the cache
    knows, so the RUN after it is a hit after all: the RUN started ahead (it calls) is killed
    (it would sleep for ever), none of its output is shown, and the layers are the cached ones."""
    dockerfile = f"""\
FROM busybox
COPY {{src}} /src/
RUN {listener.call("$http_proxy")}; if [ "$http_proxy" = slow ]; then echo "started-$http_proxy"; sleep 1000; fi; \
    cat /src/a.txt > /out
"""
    ctx = _context(tmp_path, dockerfile.format(src="src/"))
    hoist = _runner(tmp_path, "runner", "0")
    listener.root = hoist.root
    hoist("build", "-t", "hit:1", str(ctx))
    first = _layers(hoist, "hit:1")
    (ctx / "Dockerfile").write_text(dockerfile.format(src="./src"))
    hoist.env["HOIST_BUILD_RUN_AHEAD"] = "wait"
    second = hoist("build", "--progress", "plain", "--build-arg", "http_proxy=slow", "-t", "hit:2", str(ctx),
                   timeout=100)
    assert [text for text, _ in listener.calls] == ["", "slow"]     # it ran (ahead) in both builds
    assert "started-slow" not in second.err
    steps = second.err.split("\n\n")
    assert [step for step in steps if "] RUN " in step and "CACHED" in step], second.err
    assert not [step for step in steps if "] COPY " in step and "CACHED" in step], second.err
    assert _layers(hoist, "hit:2") == first        # the cached RUN's layer (the history names the COPY)
    assert _steps_left(hoist) == []


def test_a_failing_run_ahead_keeps_the_copy_and_a_fixed_one_reuses_it(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nCOPY src/ /src/\nRUN echo broken-step; exit 3\n")
    hoist = _runner(tmp_path, "runner", "wait")
    failed = hoist("build", "-t", "f:1", str(ctx), ok=False)
    assert failed.code == 1 and "exit code: 3" in failed.err and "Traceback" not in failed.err
    assert "broken-step" in failed.err         # a step that ran (a miss) shows its output
    assert _steps_left(hoist) == []
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY src/ /src/\nRUN cat /src/a.txt > /out\n")
    fixed = hoist("build", "--progress", "plain", "-t", "f:1", str(ctx))
    assert [step for step in fixed.err.split("\n\n") if "] COPY src/ /src/" in step and "CACHED" in step]
    assert hoist("run", "--rm", "f:1", "cat", "/out").out == "a\n"


def test_a_layer_that_cannot_be_made_fails_the_build_in_one_line(tmp_path: Path) -> None:
    """A context file with a whiteout's name cannot be in a layer: the COPY's layer, made
    beside the RUN, fails; the build says so, shows nothing of the RUN, and leaves nothing."""
    ctx = _context(tmp_path, "FROM busybox\nCOPY src/ /src/\nRUN echo never-$((6 * 7))\n")
    (ctx / "src" / ".wh.evil").write_text("x")
    for mode in ("wait", "0"):
        hoist = _runner(tmp_path, f"runner-{mode}", mode)
        failed = hoist("build", "-t", "w:1", str(ctx), ok=False)
        assert failed.code == 1 and "Traceback" not in failed.err, failed.err
        assert "Dockerfile:2: cannot write the layer: 'src/.wh.evil': names starting with '.wh.' are reserved" \
            in failed.err, failed.err
        assert "never-42" not in failed.err
        assert _steps_left(hoist) == []
