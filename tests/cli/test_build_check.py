"""``hoist build --check``: in process through hoist.cli.main, and as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hoist.cli import main

GOOD = """\
# syntax=docker/dockerfile:1
ARG GO=1.22
FROM golang:${GO} AS build
RUN --mount=type=cache,target=/root/.cache go build -o /out/app
FROM alpine:3.20 AS unused
WORKDIR ${broken
FROM scratch
COPY --from=build /out/app /app
ENTRYPOINT ["/app"]
"""

BAD = """\
FROM alpine
RUNN echo typo
COPY onlyone
RUN --mount=type=cache,tagret=/x true
"""


def _context(tmp_path: Path, text: str, name: str = "Dockerfile") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def test_good_dockerfile_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, GOOD)
    assert main(["build", "--check", str(ctx)]) == 0
    out = capsys.readouterr().out
    assert "ok (3 stages, target stage-2 needs 2)" in out


def test_every_error_is_printed_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, BAD)
    assert main(["build", "--check", str(ctx)]) == 1
    lines = capsys.readouterr().err.splitlines()
    name = str(ctx / "Dockerfile")
    assert lines == [
        f"{name}:2: unknown instruction: RUNN (did you mean RUN?)",
        f"{name}:3: COPY requires at least two arguments, but only one was provided. "
        "Destination could not be determined",
        f"{name}:4: unexpected key 'tagret' in 'tagret=/x'",
    ]


def test_target_reaches_a_broken_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, GOOD)
    assert main(["build", "--check", "--target", "unused", str(ctx)]) == 1
    err = capsys.readouterr().err
    assert f"{ctx / 'Dockerfile'}:6: failed to process '${{broken': syntax error: missing '}}'" in err


def test_unknown_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, GOOD)
    assert main(["build", "--check", "--target", "nope", str(ctx)]) == 1
    assert "target stage 'nope' could not be found" in capsys.readouterr().err


def test_build_args_and_named_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, "ARG IMG\nFROM ${IMG}\n", name="app.Dockerfile")
    dockerfile = str(ctx / "app.Dockerfile")
    assert main(["build", "--check", "-f", dockerfile, str(ctx)]) == 1
    assert "should not be blank" in capsys.readouterr().err
    assert main(["build", "--check", "-f", dockerfile, "--build-arg", "IMG=alpine:3.20", str(ctx)]) == 0


def test_build_arg_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _context(tmp_path, "ARG IMG\nFROM ${IMG}\n")
    monkeypatch.setenv("IMG", "busybox")
    assert main(["build", "--check", "--build-arg", "IMG", str(ctx)]) == 0


def test_bad_dockerignore_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, "FROM alpine\n")
    (ctx / ".dockerignore").write_text("*.md\n[oops\n")
    assert main(["build", "--check", str(ctx)]) == 1
    assert f"{ctx / '.dockerignore'}:2: syntax error in pattern" in capsys.readouterr().err


def test_missing_dockerfile_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hoist build: Dockerfile") and "not found" in err and err.count("\n") == 1


def test_missing_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--check", str(tmp_path / "nope")]) == 1
    assert "is not a directory" in capsys.readouterr().err


def test_build_without_check_stops_at_an_unreachable_base(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOIST_ROOT", str(tmp_path / "root"))
    ctx = _context(tmp_path, GOOD.replace("golang:${GO}", "registry.invalid/golang:${GO}"))
    assert main(["build", "-t", "x:1", str(ctx)]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"{ctx / 'Dockerfile'}:3: ") and "registry.invalid" in last

def test_binary_garbage_is_an_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    assert main(["build", "--check", str(tmp_path)]) == 1
    assert "unknown instruction" in capsys.readouterr().err


def _hoist(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", "hoist.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_subprocess_good_and_bad(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    _context(good, GOOD)
    res = _hoist("build", "--check", "good", cwd=tmp_path)
    assert (res.returncode, res.stderr) == (0, "")
    assert "good/Dockerfile: ok" in res.stdout

    bad = tmp_path / "bad"
    bad.mkdir()
    _context(bad, BAD)
    res = _hoist("build", "--check", "-f", "bad/Dockerfile", "bad", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.splitlines()[0] == "bad/Dockerfile:2: unknown instruction: RUNN (did you mean RUN?)"
    assert "Traceback" not in res.stderr


def test_subprocess_build_rejects_before_running_anything(tmp_path: Path) -> None:
    _context(tmp_path, BAD)
    res = _hoist("build", "-t", "x:1", ".", cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr and "#1" not in res.stderr
    assert "Dockerfile:2: unknown instruction: RUNN" in res.stderr
