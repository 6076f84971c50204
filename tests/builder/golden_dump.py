"""A stable JSON form of a parsed Dockerfile, for golden files and their review."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from builder import Dockerfile
from builder.instructions import Instruction
from builder.mounts import Mount

_MOUNT_DEFAULTS = Mount()


def dump(dockerfile: Dockerfile) -> dict[str, Any]:
    return {
        "directives": dict(dockerfile.directives),
        "escape": dockerfile.escape,
        "meta_args": [instruction(a) for a in dockerfile.meta_args],
        "stages": [
            {
                "index": s.index,
                "name": s.name,
                "base": s.base,
                "platform": s.platform,
                "line": s.line,
                "instructions": [instruction(i) for i in s.instructions],
            }
            for s in dockerfile.stages
        ],
        "warnings": list(dockerfile.warnings),
    }


def instruction(instr: Instruction) -> dict[str, Any]:
    out: dict[str, Any] = {"keyword": instr.keyword, "line": instr.line, "end_line": instr.end_line}
    for f in dataclasses.fields(instr):
        if f.name == "loc":
            continue
        out[f.name] = _value(getattr(instr, f.name))
    return out


def _value(value: Any) -> Any:
    if isinstance(value, Mount):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                if (f.name != "spec" and getattr(value, f.name) != getattr(_MOUNT_DEFAULTS, f.name))
                or f.name == "type"}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    return value


def to_json(dockerfile: Dockerfile) -> str:
    return json.dumps(dump(dockerfile), indent=2, ensure_ascii=False) + "\n"
