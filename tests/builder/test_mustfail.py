"""Must-fail files: mustfail/<name>.Dockerfile fails with the line and message in <name>.expect.

An ``.expect`` file holds ``LINE: message fragment``; the first error reported must be on that
line and contain the fragment.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import DockerfileError, parse_dockerfile

MUSTFAIL = Path(__file__).parent / "mustfail"
CASES = sorted(MUSTFAIL.glob("*.Dockerfile"))


def expectation(path: Path) -> tuple[int, str]:
    line, _, fragment = path.with_suffix(".expect").read_text(encoding="utf-8").rstrip("\n").partition(": ")
    return int(line), fragment


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_must_fail(path: Path) -> None:
    line, fragment = expectation(path)
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(path.read_bytes())
    first = info.value.errors[0]
    assert (first.line, fragment in first.message) == (line, True), f"got line {first.line}: {first.message}"


def test_every_case_has_an_expectation() -> None:
    assert len(CASES) >= 50
    assert {p.stem for p in MUSTFAIL.glob("*.expect")} == {p.stem for p in CASES}


def test_several_errors_are_all_reported() -> None:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile((MUSTFAIL / "several_errors_first_reported.Dockerfile").read_bytes())
    assert [e.line for e in info.value.errors] == [2, 3, 4]
