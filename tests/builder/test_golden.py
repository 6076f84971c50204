"""Golden files: each golden/<name>.Dockerfile parses to golden/<name>.json.

Regenerate with ``HOIST_REGEN_GOLDEN=1 pytest tests/builder/test_golden.py`` and review the diff:
the JSON is the statement of how Docker reads each file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from builder import parse_dockerfile
from tests.builder.golden_dump import dump, to_json

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*.Dockerfile"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    dockerfile = parse_dockerfile(path.read_bytes())
    expected_path = path.with_suffix(".json")
    if os.environ.get("HOIST_REGEN_GOLDEN"):
        expected_path.write_text(to_json(dockerfile), encoding="utf-8")
    assert dump(dockerfile) == json.loads(expected_path.read_text(encoding="utf-8"))


def test_every_golden_has_its_json() -> None:
    assert CASES
    assert {p.stem for p in GOLDEN.glob("*.json")} == {p.stem for p in CASES}
