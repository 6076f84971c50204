"""Which variables a word sees while a stage is dispatched.

BuildKit's rules: global ARGs (before the first FROM) are visible only to FROM lines, and to
a stage's instructions only after the stage re-declares them with ``ARG name``; a build arg
(``--build-arg``) overrides an ARG's default; ENV values win over ARG values of the same
name; an ARG used before it is declared expands to the empty string; ``ARG name`` with no
default and no build arg leaves ``name`` unset. Stages inherit ENV (not ARGs) from a parent
stage.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping


class Scope(Mapping[str, str]):
    """The variables visible at one point of a stage (a Mapping for the lexer)."""

    def __init__(self, global_args: Mapping[str, str], build_args: Mapping[str, str],
                 env: Mapping[str, str] | None = None) -> None:
        self.global_args = global_args
        self.build_args = build_args
        self.env: dict[str, str] = dict(env or {})
        self.args: dict[str, str | None] = {}

    def declare(self, name: str, default: str | None) -> None:
        """``ARG name[=default]`` inside the stage (default already expanded)."""
        if name in self.build_args:
            self.args[name] = self.build_args[name]
        elif default is not None:
            self.args[name] = default
        else:
            self.args[name] = self.global_args.get(name)

    def set_env(self, key: str, value: str) -> None:
        self.env[key] = value

    def __getitem__(self, key: str) -> str:
        if key in self.env:
            return self.env[key]
        value = self.args.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self.env or (isinstance(key, str) and self.args.get(key) is not None)

    def __iter__(self) -> Iterator[str]:
        yield from self.env
        yield from (k for k, v in self.args.items() if v is not None and k not in self.env)

    def __len__(self) -> int:
        return sum(1 for _ in self)
