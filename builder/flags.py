"""Instruction flags (``--name=value``), checked the way BuildKit's BFlags checks them.

Each instruction declares the flags it accepts and their kind: a boolean (``--link``,
``--link=false``), a single string (``--from=build``) or a repeatable string
(``--mount=...``). Anything else is an error naming the flag and the instruction.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Mapping
from dataclasses import dataclass

from builder.errors import DockerfileError


class Kind(enum.Enum):
    BOOL = "bool"
    STRING = "string"
    STRINGS = "strings"


@dataclass(frozen=True, slots=True)
class ParsedFlags:
    """Flag values by name; absent flags are missing from ``values``."""

    values: Mapping[str, bool | str | tuple[str, ...]]

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name, default)
        assert isinstance(value, bool)
        return value

    def string(self, name: str) -> str | None:
        value = self.values.get(name)
        assert value is None or isinstance(value, str)
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.values.get(name, ())
        assert isinstance(value, tuple)
        return value

    def used(self, name: str) -> builtins.bool:
        return name in self.values


def parse_flags(keyword: str, flags: tuple[str, ...], spec: Mapping[str, Kind]) -> ParsedFlags:
    """Check ``flags`` (each ``--name[=value]``) against ``spec``; raises DockerfileError."""
    values: dict[str, bool | str | tuple[str, ...]] = {}
    for flag in flags:
        if not flag.startswith("--"):
            raise DockerfileError(f"arg should start with -- : {flag}")
        if flag == "--":
            break
        name, has_value, value = flag[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            raise DockerfileError(_unknown(keyword, name, spec))
        if name in values and kind is not Kind.STRINGS:
            raise DockerfileError(f"duplicate flag specified: --{name}")
        values[name] = _value(name, kind, has_value == "=", value, values.get(name))
    return ParsedFlags(values)


def _unknown(keyword: str, name: str, spec: Mapping[str, Kind]) -> str:
    if not spec:
        return f"unknown flag: --{name} ({keyword} takes no flags)"
    accepted = ", ".join(f"--{n}" for n in sorted(spec))
    return f"unknown flag: --{name} ({keyword} accepts {accepted})"


def _value(name: str, kind: Kind, has_value: bool, value: str,
           previous: bool | str | tuple[str, ...] | None) -> bool | str | tuple[str, ...]:
    if kind is Kind.BOOL:
        if has_value and value == "":
            raise DockerfileError(f"missing a value on flag: --{name}")
        lowered = value.lower()
        if not has_value:
            return True
        if lowered not in ("true", "false"):
            raise DockerfileError(f"expecting boolean value for flag --{name}, not: {value}")
        return lowered == "true"
    if not has_value:
        raise DockerfileError(f"missing a value on flag: --{name}")
    if kind is Kind.STRING:
        return value
    assert previous is None or isinstance(previous, tuple)
    return (previous or ()) + (value,)
