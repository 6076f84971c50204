"""Bad compose files: one line from ``hoist compose config`` (exit 1, no traceback) naming the
file, the service and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import Hoist

CASES = [
    ("schema_unknown_key", "services:\n  web:\n    imag: nginx\n",
     ['compose.yaml: service "web"', "additional property 'imag' not allowed"]),
    ("schema_wrong_type", "services:\n  web:\n    image: nginx\n    ports: {a: 1}\n",
     ['compose.yaml: service "web": ports', "must be a array"]),
    ("schema_bad_condition", "services:\n  web:\n    image: x\n    depends_on:\n      db: {condition: started}\n"
     "  db:\n    image: y\n", ['service "web": depends_on.db.condition', "must be one of service_started"]),
    ("schema_top_level", "servics:\n  web:\n    image: x\n", ["compose.yaml: top level", "'servics'"]),
    ("unknown_dependency", "services:\n  web:\n    image: x\n    depends_on: [db]\n",
     ['compose.yaml: service "web": depends_on', 'undefined service "db"']),
    ("dependency_cycle", "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [c]\n"
     "  c:\n    image: x\n    depends_on: [a]\n", ["depends_on", "dependency cycle: a -> b -> c -> a"]),
    ("self_dependency", "services:\n  a:\n    image: x\n    depends_on: [a]\n", ["dependency cycle: a -> a"]),
    ("required_variable", "services:\n  web:\n    image: ${IMAGE:?set IMAGE to the web image}\n",
     ["services.web.image", "required variable IMAGE is missing a value: set IMAGE to the web image"]),
    ("required_variable_no_colon", "services:\n  web:\n    image: ${IMAGE?}\n",
     ["services.web.image", "required variable IMAGE is missing a value"]),
    ("bad_interpolation", "services:\n  web:\n    image: x\n    command: echo ${oops\n",
     ["invalid interpolation format for services.web.command"]),
    ("lone_dollar", "services:\n  web:\n    image: x\n    command: echo $\n",
     ["invalid interpolation format", "escape any $ with another $"]),
    ("duplicate_key", "services:\n  web:\n    image: x\n    image: y\n", ["compose.yaml:4", "already defined"]),
    ("yaml_syntax", "services:\n  web:\n   image: [x\n", ["compose.yaml:"]),
    ("not_a_mapping", "- a\n- b\n", ["the top level must be a mapping"]),
    ("empty", "", ["empty compose file"]),
    ("no_image", "services:\n  web:\n    command: [x]\n", ['service "web"', "neither an image nor a build context"]),
    ("undefined_volume", "services:\n  web:\n    image: x\n    volumes: [data:/d]\n",
     ['service "web": volumes.0', "undefined volume data"]),
    ("undefined_network", "services:\n  web:\n    image: x\n    networks: [back]\n",
     ['service "web": networks', "undefined network back"]),
    ("bad_port", "services:\n  web:\n    image: x\n    ports: [\"80:99999\"]\n", ['service "web": ports.0', "invalid port"]),
    ("bad_volume_mode", "services:\n  web:\n    image: x\n    volumes: [\"./a:/b:rx\"]\n",
     ['service "web": volumes.0', "invalid mode 'rx'"]),
    ("relative_target", "services:\n  web:\n    image: x\n    volumes: [\"./a:b\"]\n",
     ['service "web": volumes.0', "must be an absolute path"]),
    ("bad_duration", "services:\n  web:\n    image: x\n    stop_grace_period: soon\n",
     ['service "web": stop_grace_period', "not a duration"]),
    ("bad_bool", "services:\n  web:\n    image: x\n    init: maybe\n", ['service "web": init', "not a boolean"]),
    ("extends_cycle", "services:\n  a:\n    image: x\n    extends: b\n  b:\n    image: y\n    extends: a\n",
     ["circular extends"]),
    ("extends_missing", "services:\n  a:\n    extends: nope\n", ['service "a": extends', "no such service"]),
    ("invalid_project_name", "name: Bad Name\nservices:\n  a:\n    image: x\n", ["invalid project name 'Bad Name'"]),
    ("billion_laughs", "x-a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" +
     "".join(f"x-{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
             f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
             for i in range(8)) + "services:\n  a:\n    image: x\n", ["values once YAML aliases are expanded"]),
    ("long_string_aliased", "x-a: &a " + "y" * (1 << 20) + "\nx-b: &b [" + ", ".join(["*a"] * 100) + "]\n"
     "services:\n  a:\n    image: x\n", ["MiB of text once YAML aliases are expanded"]),
]


@pytest.mark.parametrize(("name", "text", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_compose_file_is_one_clear_line(name: str, text: str, needles: list[str], tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(text)
    hoist = Hoist(tmp_path)
    hoist.env.pop("IMAGE", None)
    result = hoist("compose", "-f", str(tmp_path / "compose.yaml"), "config", ok=False)
    assert result.code == 1, result
    lines = [ln for ln in result.err.splitlines() if not ln.startswith("hoist compose: warning:")]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("hoist compose: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_file_and_env_file(tmp_path: Path) -> None:
    hoist = Hoist(tmp_path)
    result = hoist("compose", "-f", str(tmp_path / "nope.yml"), "config", ok=False)
    assert result.code == 1 and "nope.yml not found" in result.err
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: x\n    env_file: missing.env\n")
    result = hoist("compose", "-f", str(tmp_path / "compose.yaml"), "config", ok=False)
    assert 'service "a": env_file' in result.err and "missing.env not found" in result.err
    result = hoist("compose", "-f", str(tmp_path / "compose.yaml"), "--env-file", str(tmp_path / "x.env"),
                   "config", ok=False)
    assert "x.env not found" in result.err
