"""Variable interpolation in compose files (the Compose Specification's "Interpolation").

``$VAR`` and ``${VAR}``; ``${VAR:-default}`` / ``${VAR-default}`` (unset or empty / unset);
``${VAR:?error}`` / ``${VAR?error}`` (an error when unset or empty / unset);
``${VAR:+replacement}`` / ``${VAR+replacement}`` (the replacement when set and non-empty / set);
``$$`` is a literal ``$``. Defaults, errors and replacements are interpolated themselves (only when
used), so ``${A:-${B}}`` works. Only values are interpolated, never mapping keys. An unset
variable without a default is a blank string and a warning, as docker compose does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hoist.compose.errors import ComposeError

_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
MAX_DEPTH = 32   # nesting of ${...} inside defaults: a bound for hostile files


class InterpolationError(ComposeError):
    pass


def _is_name_start(c: str) -> bool:
    return c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_name_char(c: str) -> bool:
    return _is_name_start(c) or ("0" <= c <= "9")


class Interpolator:
    def __init__(self, env: Mapping[str, str], warn: Callable[[str], None]) -> None:
        self.env = env
        self.warn = warn
        self._warned: set[str] = set()

    def text(self, s: str, path: str) -> str:
        out, _ = self._scan(s, 0, path, closing=False, depth=0)
        return out

    def tree(self, node: Any, path: str = "") -> Any:
        """A copy of ``node`` with every string value interpolated."""
        if isinstance(node, str):
            return self.text(node, path)
        if isinstance(node, dict):
            return {k: self.tree(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.tree(v, f"{path}.{i}") for i, v in enumerate(node)]
        if hasattr(node, "with_value"):        # !reset / !override wrappers (hoist.compose.yamlio)
            return node.with_value(self.tree(node.value, path))
        return node

    def _invalid(self, s: str, path: str) -> InterpolationError:
        return InterpolationError(f'invalid interpolation format for {path}: "{s}"; '
                                  f"you may need to escape any $ with another $")

    def _scan(self, s: str, i: int, path: str, closing: bool, depth: int) -> tuple[str, int]:
        """Interpolate ``s`` from ``i``; with ``closing``, stop at the ``}`` that ends the enclosing
        ``${...}`` and return the index after it."""
        if depth > MAX_DEPTH:
            raise InterpolationError(f"interpolation nested deeper than {MAX_DEPTH} levels in {path}")
        out: list[str] = []
        n = len(s)
        while i < n:
            c = s[i]
            if closing and c == "}":
                return "".join(out), i + 1
            if c != "$":
                out.append(c)
                i += 1
                continue
            nxt = s[i + 1] if i + 1 < n else ""
            if nxt == "$":
                out.append("$")
                i += 2
            elif nxt == "{":
                value, i = self._braced(s, i + 2, path, depth)
                out.append(value)
            elif nxt and _is_name_start(nxt):
                j = i + 1
                while j < n and _is_name_char(s[j]):
                    j += 1
                out.append(self._get(s[i + 1:j]))
                i = j
            else:
                raise self._invalid(s, path)
        if closing:
            raise self._invalid(s, path)
        return "".join(out), i

    def _skip(self, s: str, i: int, path: str) -> int:
        """The index after the ``}`` closing a ``${`` whose operand starts at ``i`` (not evaluated)."""
        level = 1
        n = len(s)
        while i < n:
            if s[i] == "$" and i + 1 < n and s[i + 1] == "$":
                i += 2
                continue
            if s[i] == "$" and i + 1 < n and s[i + 1] == "{":
                level += 1
                i += 2
                continue
            if s[i] == "}":
                level -= 1
                if level == 0:
                    return i + 1
            i += 1
        raise self._invalid(s, path)

    def _braced(self, s: str, i: int, path: str, depth: int) -> tuple[str, int]:
        start = i
        n = len(s)
        if i >= n or not _is_name_start(s[i]):
            raise self._invalid(s, path)
        while i < n and _is_name_char(s[i]):
            i += 1
        name = s[start:i]
        if i < n and s[i] == "}":
            return self._get(name), i + 1
        op = next((o for o in _OPERATORS if s.startswith(o, i)), None)
        if op is None:
            raise self._invalid(s, path)
        i += len(op)
        value = self.env.get(name)
        is_set = value is not None
        non_empty = bool(value)
        use_operand = {":-": not non_empty, "-": not is_set, ":?": not non_empty, "?": not is_set,
                       ":+": non_empty, "+": is_set}[op]
        if not use_operand:
            end = self._skip(s, i, path)
            return ("" if op in (":+", "+") else (value or "")), end
        operand, end = self._scan(s, i, path, closing=True, depth=depth + 1)
        if op in (":?", "?"):
            raise InterpolationError(f"required variable {name} is missing a value"
                                     + (f": {operand}" if operand else ""), where=path or None)
        return operand, end

    def _get(self, name: str) -> str:
        value = self.env.get(name)
        if value is None:
            if name not in self._warned:
                self._warned.add(name)
                self.warn(f'the "{name}" variable is not set; defaulting to a blank string')
            return ""
        return value
