"""Parser directives: ``# syntax=``, ``# escape=``, ``# check=`` at the very top of the file.

The rules are BuildKit's: directives are comment lines of the form ``# key=value``; the
first line that is not one (an instruction, an ordinary comment, a blank line, or a
directive-looking comment with an unknown key) ends the directive block for good; each
directive may appear once.
"""

from __future__ import annotations

import re

from builder import keywords
from builder.errors import DockerfileError
from builder.parser.nodes import Directive

# Go's \s is [\t\n\f\r ]; the value is trimmed on the right.
_DIRECTIVE = re.compile(r"^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$")
_CHECK_KEYS = ("skip", "error", "experimental")
_GO_BOOLS = frozenset({"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"})


class DirectiveScanner:
    """Fed every line until it reports done; collects directives and the escape token."""

    def __init__(self) -> None:
        self.done = False
        self.escape = keywords.DEFAULT_ESCAPE
        self.directives: list[Directive] = []
        self._seen: set[str] = set()

    def feed(self, line: str, lineno: int) -> None:
        """Look at one line (left-trimmed, no newline); raises on a duplicate or bad value."""
        if self.done:
            return
        match = _DIRECTIVE.match(line)
        if not match:
            self.done = True
            return
        name = match.group(1).lower()
        if name not in keywords.DIRECTIVES:
            self.done = True
            return
        if name in self._seen:
            raise DockerfileError(f"only one {name} parser directive can be used", lineno)
        self._seen.add(name)
        value = match.group(2)
        self._validate(name, value, lineno)
        self.directives.append(Directive(name, value, lineno))

    def _validate(self, name: str, value: str, lineno: int) -> None:
        if name == keywords.DIRECTIVE_ESCAPE:
            if value not in keywords.ESCAPE_TOKENS:
                raise DockerfileError(f"invalid escape token '{value}' does not match ` or \\", lineno)
            self.escape = value
        elif name == keywords.DIRECTIVE_CHECK:
            _validate_check(value, lineno)


def _validate_check(value: str, lineno: int) -> None:
    """``# check=skip=<rules|all>;error=<bool>``, as BuildKit's linter parses it."""
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, arg = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _CHECK_KEYS:
            raise DockerfileError(f"failed to parse check options: invalid check option {part!r}", lineno)
        if key == "error" and arg.strip() not in _GO_BOOLS:
            raise DockerfileError(f"failed to parse check options: invalid boolean value {arg.strip()!r}", lineno)
