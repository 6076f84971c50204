"""``include`` (the Compose Specification's "Include", as docker compose v2 loads it) through
``hoist compose config``.

Each ``fixtures/include_*`` directory with an ``expected-config.yaml`` is copied to a directory
named after it (the project name comes from there) and its ``compose.yaml`` printed by the
config verb; ``$DIR`` in the expected output is that directory, a literal ``$`` is printed
``$$`` (as compose prints it), and ``include`` itself is not printed. ``env.json`` is the
caller's environment. ``fixtures/include_errors`` holds the projects that must be refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.cli.helpers import Hoist, Result

FIXTURES = Path(__file__).parent / "fixtures"
CASES = sorted(p.name for p in FIXTURES.glob("include_*") if (p / "expected-config.yaml").is_file())


def _copy(case: str, tmp_path: Path) -> Path:
    target = tmp_path / case
    shutil.copytree(FIXTURES / case, target)
    return target


def _hoist(tmp_path: Path, environ: dict[str, str] | None = None) -> Hoist:
    """The CLI with only the environment given (the fixtures' variables must not come from ours)."""
    hoist = Hoist(tmp_path)
    hoist.env = {k: hoist.env[k] for k in ("HOIST_ROOT", "DOCKER_CONFIG", "PYTHONPATH")}
    hoist.env["PATH"] = "/usr/bin:/bin"
    hoist.env.update(environ or {})
    return hoist


def _config(hoist: Hoist, compose_file: Path, *args: str, ok: bool = True) -> Result:
    return hoist("compose", "-f", str(compose_file), "config", *args, ok=ok)


def _one_error_line(result: Result) -> str:
    assert result.code == 1, result
    lines = [ln for ln in result.err.splitlines() if not ln.startswith("hoist compose: warning:")]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("hoist compose: "), lines
    return lines[0]


@pytest.mark.parametrize("case", CASES)
def test_included_applications_are_part_of_the_model(case: str, tmp_path: Path) -> None:
    directory = _copy(case, tmp_path)
    environ = json.loads((directory / "env.json").read_text()) if (directory / "env.json").is_file() else {}
    hoist = _hoist(tmp_path, environ)
    expected = yaml.safe_load((directory / "expected-config.yaml").read_text().replace("$DIR", str(directory)))
    result = _config(hoist, directory / "compose.yaml")
    assert "include" not in yaml.safe_load(result.out)
    assert yaml.safe_load(result.out) == expected
    assert json.loads(_config(hoist, directory / "compose.yaml", "--format", "json").out) == expected


def test_the_cases_are_there() -> None:
    assert CASES == ["include_long", "include_nested", "include_short"]


def test_the_including_environment_wins_over_the_included_env_file(tmp_path: Path) -> None:
    directory = _copy("include_short", tmp_path)
    hoist = _hoist(tmp_path, {"API_TAG": "from-shell", "BARE": "bare-from-shell"})
    services = yaml.safe_load(_config(hoist, directory / "compose.yaml").out)["services"]
    assert services["api"]["image"] == "api:from-shell"
    assert services["api"]["environment"]["BARE"] == "bare-from-shell"
    assert services["api"]["environment"]["FROM_SHELL"] == "from-backend-env"   # none in the shell now


def test_include_paths_are_relative_to_the_project_directory(tmp_path: Path) -> None:
    directory = _copy("include_short", tmp_path)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(directory / "compose.yaml", moved / "compose.yaml")
    hoist = _hoist(tmp_path, {"WEB_TAG": "x", "SHARED": "y"})
    result = hoist("compose", "-f", str(moved / "compose.yaml"), "--project-directory", str(directory),
                   "config", "--format", "json")
    services = json.loads(result.out)["services"]
    assert services["api"]["build"]["context"] == str(directory / "backend")


def test_cycle_is_an_error_naming_the_chain(tmp_path: Path) -> None:
    directory = _copy("include_errors", tmp_path) / "cycle"
    line = _one_error_line(_config(_hoist(tmp_path), directory / "compose.yaml", ok=False))
    chain = " -> ".join(str(directory / f) for f in ("compose.yaml", "one/compose.yaml", "two/compose.yaml",
                                                      "one/compose.yaml"))
    assert line == f"hoist compose: {directory}/two/compose.yaml: include.0: include cycle detected: {chain}"


def test_a_file_including_itself_is_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("include: [./compose.yaml]\nservices:\n  a:\n    image: a\n")
    line = _one_error_line(_config(_hoist(tmp_path), tmp_path / "compose.yaml", ok=False))
    assert f"include cycle detected: {tmp_path}/compose.yaml -> {tmp_path}/compose.yaml" in line


def test_a_name_defined_here_and_in_an_included_file_is_a_conflict(tmp_path: Path) -> None:
    directory = _copy("include_errors", tmp_path) / "conflict"
    line = _one_error_line(_config(_hoist(tmp_path), directory / "compose.yaml", ok=False))
    assert line == (f"hoist compose: {directory}/compose.yaml: include.0: services.db conflicts with imported "
                    f"resource (from {directory}/db/compose.yaml)")


def test_a_name_defined_by_two_included_files_is_a_conflict(tmp_path: Path) -> None:
    directory = _copy("include_errors", tmp_path) / "conflict"
    line = _one_error_line(_config(_hoist(tmp_path), directory / "two-includes.yaml", ok=False))
    assert line == (f"hoist compose: {directory}/two-includes.yaml: include.1: volumes.data conflicts with "
                    f"imported resource (from {directory}/right/compose.yaml)")


def test_the_same_definition_twice_is_no_conflict(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "compose.yaml").write_text("services:\n  db:\n    image: postgres\n")
    (tmp_path / "compose.yaml").write_text("include: [sub/compose.yaml]\nservices:\n  db:\n    image: postgres\n")
    doc = yaml.safe_load(_config(_hoist(tmp_path), tmp_path / "compose.yaml").out)
    assert doc["services"] == {"db": {"image": "postgres", "networks": {"default": None}}}


BAD = [
    ("missing_file", "include: [nope/compose.yaml]",
     "compose.yaml: include.0: included file {dir}/nope/compose.yaml not found"),
    ("missing_in_long_syntax", "include:\n  - path: [sub/compose.yaml, sub/nope.yaml]",
     "compose.yaml: include.0: included file {dir}/sub/nope.yaml not found"),
    ("a_directory", "include: [sub]", "compose.yaml: include.0: included file {dir}/sub not found"),
    ("not_a_list", "include: sub/compose.yaml", "compose.yaml: include: must be a array"),
    ("entry_not_a_path_or_mapping", "include: [42]", "compose.yaml: include.0: 42 is not a valid value here"),
    ("unknown_key", "include:\n  - path: sub/compose.yaml\n    paths: x",
     "compose.yaml: include.0: additional property 'paths' not allowed"),
    ("no_path", "include:\n  - env_file: sub/.env", "compose.yaml: include.0: path is required"),
    ("missing_env_file", "include:\n  - path: sub/compose.yaml\n    env_file: [sub/.env, nope.env]",
     "compose.yaml: include.0.env_file: env file {dir}/nope.env not found"),
]


@pytest.mark.parametrize(("name", "include", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_include_is_one_clear_line(name: str, include: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "compose.yaml").write_text("services:\n  s:\n    image: s\n")
    (tmp_path / "sub" / ".env").write_text("X=1\n")
    (tmp_path / "compose.yaml").write_text(f"{include}\nservices:\n  t:\n    image: t\n")
    line = _one_error_line(_config(_hoist(tmp_path), tmp_path / "compose.yaml", ok=False))
    assert line == f"hoist compose: {tmp_path}/" + message.format(dir=tmp_path)


def test_an_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "compose.yaml").write_text("services:\n  s:\n    imag: s\n")
    (tmp_path / "compose.yaml").write_text("include: [sub/compose.yaml]\nservices:\n  t:\n    image: t\n")
    line = _one_error_line(_config(_hoist(tmp_path), tmp_path / "compose.yaml", ok=False))
    assert line.startswith(f'hoist compose: {tmp_path}/sub/compose.yaml: service "s"'), line
