"""``hoist compose config``: the normalised model of each fixture under ``fixtures/`` matches the
expected output written from the Compose Specification (and docker compose's ``config``:
long syntax, absolute paths, Go durations, byte sizes, project-scoped resource names).

Each fixture is copied to a directory named after it (the project name comes from there);
``$DIR`` in ``expected.yaml`` is that directory. ``args.txt`` holds options (``--profile P``,
``-p NAME``), ``env.json`` the caller's environment.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from hoist.compose.loader import LoadOptions, load_project
from hoist.compose.yamlio import dump_yaml
from tests.cli.helpers import Hoist

FIXTURES = Path(__file__).parent / "fixtures"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.yaml").is_file())


def _options(case: Path) -> dict[str, object]:
    opts: dict[str, object] = {"profiles": []}
    args = (case / "args.txt").read_text().split() if (case / "args.txt").is_file() else []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag == "--profile":
            opts["profiles"].append(value)  # type: ignore[attr-defined]
        elif flag == "-p":
            opts["project_name"] = value
        else:
            raise AssertionError(f"unknown fixture option {flag}")
    return opts


def _copy(case: str, tmp_path: Path) -> Path:
    target = tmp_path / case
    shutil.copytree(FIXTURES / case, target)
    return target


def _expected(directory: Path) -> object:
    return yaml.safe_load((directory / "expected.yaml").read_text().replace("$DIR", str(directory)))


def _environ(directory: Path) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin"}
    if (directory / "env.json").is_file():
        env.update(json.loads((directory / "env.json").read_text()))
    return env


@pytest.mark.parametrize("case", CASES)
def test_normalised_model_matches_the_specification(case: str, tmp_path: Path) -> None:
    directory = _copy(case, tmp_path)
    warnings: list[str] = []
    project = load_project(LoadOptions(cwd=str(directory), environ=_environ(directory), **_options(directory)),
                           warn=warnings.append)
    doc = yaml.safe_load(dump_yaml(project.to_doc()))
    assert doc == _expected(directory)


def test_config_verb_prints_the_model(tmp_path: Path) -> None:
    directory = _copy("short_syntax", tmp_path)
    hoist = Hoist(tmp_path)
    hoist.env.pop("EMPTY_FROM_SHELL", None)
    result = hoist("compose", "-f", str(directory / "compose.yaml"), "config")
    assert yaml.safe_load(result.out) == _expected(directory)
    as_json = hoist("compose", "-f", str(directory / "compose.yaml"), "config", "--format", "json")
    assert json.loads(as_json.out) == _expected(directory)
    services = hoist("compose", "-f", str(directory / "compose.yaml"), "config", "--services")
    assert services.out.split() == ["db", "web"]        # dependency order


def test_unset_variable_is_blank_with_one_warning(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: x${NOPE}\n    command: [\"$NOPE\"]\n")
    warnings: list[str] = []
    project = load_project(LoadOptions(cwd=str(tmp_path), environ={}), warn=warnings.append)
    assert project.services["a"]["image"] == "x"
    assert project.services["a"]["command"] == [""]
    assert warnings == ['the "NOPE" variable is not set; defaulting to a blank string']


def test_project_names(tmp_path: Path) -> None:
    directory = tmp_path / "My Dir.Name_1"
    directory.mkdir()
    (directory / "docker-compose.yml").write_text("services:\n  a:\n    image: x\n")
    assert load_project(LoadOptions(cwd=str(directory), environ={})).name == "mydirname_1"
    env = {"COMPOSE_PROJECT_NAME": "fromenv"}
    assert load_project(LoadOptions(cwd=str(directory), environ=env)).name == "fromenv"
    assert load_project(LoadOptions(cwd=str(directory), environ=env, project_name="flag")).name == "flag"
    (directory / ".env").write_text("COMPOSE_PROJECT_NAME=dotenv\n")
    assert load_project(LoadOptions(cwd=str(directory), environ={})).name == "dotenv"


def test_discovery_walks_up_and_prefers_compose_yaml(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: first\n")
    (tmp_path / "docker-compose.yml").write_text("services:\n  a:\n    image: second\n")
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    project = load_project(LoadOptions(cwd=str(sub), environ={}))
    assert project.services["a"]["image"] == "first"
    assert project.working_dir == tmp_path


def test_several_files_and_env_file_flag(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("services:\n  s:\n    image: ${IMG}\n    environment: [X=1]\n")
    (tmp_path / "b.yml").write_text("services:\n  s:\n    environment: {Y: '2'}\n")
    (tmp_path / "vars").write_text("IMG=from-flag\n")
    (tmp_path / ".env").write_text("IMG=from-dotenv\n")
    project = load_project(LoadOptions(files=["a.yml", "b.yml"], env_files=["vars"], cwd=str(tmp_path), environ={}))
    assert project.services["s"]["image"] == "from-flag"
    assert project.services["s"]["environment"] == {"X": "1", "Y": "2"}


def test_profile_of_a_named_service_is_enabled(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "profiles", tmp_path / "p")
    project = load_project(LoadOptions(cwd=str(tmp_path / "p"), environ={}, services=["admin"]))
    assert sorted(project.services) == ["admin", "app"]
    project = load_project(LoadOptions(cwd=str(tmp_path / "p"), environ={"COMPOSE_PROFILES": "*"}))
    assert sorted(project.services) == ["admin", "app", "debug"]


def test_config_output_reads_back_as_the_same_model(tmp_path: Path) -> None:
    """``$`` is printed as ``$$`` (docker compose does the same), so the printed model is a
    compose file that loads as itself."""
    directory = _copy("interpolation", tmp_path)
    hoist = Hoist(tmp_path)
    hoist.env.update(json.loads((directory / "env.json").read_text()))
    first = hoist("compose", "-f", str(directory / "compose.yaml"), "config").out
    assert "DOLLAR: $$HOME and $${TAG}" in first
    (tmp_path / "again.yaml").write_text(first)
    again = hoist("compose", "-f", str(tmp_path / "again.yaml"), "--project-directory", str(directory), "config").out
    assert again == first
