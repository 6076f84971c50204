"""``hoist compose config`` against Debian's ``docker-compose`` 1.29 on the fixtures both read.

docker-compose 1.29 normalises less than docker compose v2 (short volume strings, ports partly
short, durations as written, no default network, every service whatever its profile), so the two
models are compared through a projection that reads either form: the meaning of each key must be
the same (images, commands split into words, resolved environments, dependency conditions,
absolute paths, expanded port ranges, healthchecks, durations and sizes by value).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hoist.compose.loader import LoadOptions, load_project
from runtime.spec import parse_size
from storage.duration import parse_duration
from tests.peers import need_tool

FIXTURES = Path(__file__).parent / "fixtures"
CASES = [("short_syntax", []), ("extends", []), ("profiles", ["--profile", "debug"]),
         ("interpolation_basic", [])]


def _volume(v: Any) -> tuple[str, str | None, str, bool]:
    if isinstance(v, dict):
        return v["type"], v.get("source"), v["target"], bool(v.get("read_only"))
    parts = v.split(":")
    if len(parts) == 1:
        return "volume", None, parts[0], False
    source, target = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) > 2 else []
    return ("bind" if source.startswith("/") else "volume"), source, target, "ro" in modes


def _port(p: Any) -> tuple[str, str, int, str]:
    if isinstance(p, dict):
        published = p.get("published")
        return p.get("host_ip", ""), "" if published in (None, "") else str(published), int(p["target"]), \
            p.get("protocol", "tcp")
    body, _, proto = str(p).partition("/")
    parts = body.rsplit(":", 2)
    parts = [""] * (3 - len(parts)) + parts
    return parts[0].strip("[]"), parts[1], int(parts[2]), proto or "tcp"


def _words(value: Any) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _duration(value: Any) -> int | None:
    return None if value is None else parse_duration(str(value))


def _unescape(node: Any) -> Any:
    """1.29 prints ``$`` as ``$$`` (so its output reads back); the model holds ``$``."""
    if isinstance(node, str):
        return node.replace("$$", "$")
    if isinstance(node, dict):
        return {k: _unescape(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unescape(v) for v in node]
    return node


def project(svc: dict[str, Any]) -> dict[str, Any]:
    hc = svc.get("healthcheck")
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    build = svc.get("build")
    return {
        "image": svc.get("image"),
        "build": (build if isinstance(build, str) else build["context"]) if build else None,
        "command": _words(svc.get("command")),
        "entrypoint": _words(svc.get("entrypoint")),
        "environment": svc.get("environment") or {},
        "depends_on": {k: v["condition"] for k, v in (svc.get("depends_on") or {}).items()},
        "volumes": sorted(map(_volume, svc.get("volumes") or []), key=str),
        "ports": sorted(map(_port, svc.get("ports") or [])),
        "healthcheck": None if hc is None else (
            ["CMD-SHELL", hc["test"]] if isinstance(hc.get("test"), str) else hc.get("test"),
            _duration(hc.get("interval")), _duration(hc.get("timeout")), hc.get("retries")),
        "labels": svc.get("labels") or {},
        "dns": svc.get("dns"), "tmpfs": svc.get("tmpfs"),
        "expose": [str(e) for e in svc.get("expose") or []],
        "extra_hosts": [h.replace(":", "=", 1) if "=" not in h else h for h in svc.get("extra_hosts") or []],
        "init": svc.get("init"), "working_dir": svc.get("working_dir"),
        "stop_grace_period": _duration(svc.get("stop_grace_period")),
        "mem_limit": parse_size(str(svc["mem_limit"])) if "mem_limit" in svc else None,
        "limits": ({"memory": parse_size(str(limits["memory"])) if "memory" in limits else None,
                    "cpus": float(limits["cpus"]) if "cpus" in limits else None} if limits else None),
        "networks": sorted(set(svc.get("networks") or {}) - {"default"}),
    }


@pytest.mark.parametrize(("case", "args"), CASES, ids=[c for c, _ in CASES])
def test_same_model_as_docker_compose_1_29(case: str, args: list[str], tmp_path: Path) -> None:
    tool = need_tool("docker-compose")
    directory = tmp_path / case
    shutil.copytree(FIXTURES / case, directory)
    compose = directory / "compose.yaml"
    compose.write_text(compose.read_text().replace('init: "true"', "init: true"))   # 1.29: booleans only
    (directory / "web").mkdir(exist_ok=True)                                       # 1.29 checks build paths
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if (directory / "env.json").is_file():
        env.update(json.loads((directory / "env.json").read_text()))
    res = subprocess.run([tool, *args, "config"], cwd=directory, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    theirs = _unescape(yaml.safe_load(res.stdout)["services"])
    profiles = [a for flag, a in zip(args[::2], args[1::2], strict=True) if flag == "--profile"]
    ours = load_project(LoadOptions(cwd=str(directory), environ=env, profiles=profiles)).services
    assert set(ours) <= set(theirs)          # 1.29 also lists services whose profiles are off
    for name, svc in ours.items():
        assert project(svc) == project(theirs[name]), name
