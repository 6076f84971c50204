"""``hoist build --check`` prints BuildKit's build checks; ``# check=error=true`` fails on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from hoist.cli import main

LINTY = """\
FROM busybox as Build
CMD echo hi
"""


def _context(tmp_path: Path, text: str) -> Path:
    (tmp_path / "Dockerfile").write_text(text)
    return tmp_path


def test_warnings_are_printed_as_buildkit_prints_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, LINTY)
    assert main(["build", "--check", str(ctx)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "WARN: FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
        "WARN: StageNameCasing: Stage name 'Build' should be lowercase (line 1)",
        "WARN: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior "
        "related to OS signals (line 2)",
    ]
    assert "ok (1 stage" in captured.out


def test_error_true_makes_them_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, "# check=error=true\n" + LINTY)
    assert main(["build", "--check", str(ctx)]) == 1
    name = ctx / "Dockerfile"
    assert capsys.readouterr().err.splitlines() == [
        f"{name}:2: FromAsCasing: 'as' and 'FROM' keywords' casing do not match",
        f"{name}:2: StageNameCasing: Stage name 'Build' should be lowercase",
        f"{name}:3: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior "
        "related to OS signals",
    ]


def test_skip_and_error_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, "# check=skip=FromAsCasing,StageNameCasing,JSONArgsRecommended;error=true\n" + LINTY)
    assert main(["build", "--check", str(ctx)]) == 0
    assert capsys.readouterr().err == ""


def test_a_bad_check_directive_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, "# check=error=maybe\nFROM busybox\n")
    assert main(["build", "--check", str(ctx)]) == 1
    assert "invalid boolean value 'maybe'" in capsys.readouterr().err
