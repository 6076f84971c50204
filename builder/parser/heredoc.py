"""Finding heredoc markers (``<<EOF``, ``<<-EOF``, ``<<'EOF'``, ``2<<EOF``) on an instruction line.

A marker is a whole shell word matching ``^(\\d*)<<(-?)([^<]*)$``; the delimiter is that word
unquoted. If any part of the delimiter was quoted the body is not expanded. BuildKit always
uses a backslash here, whatever the ``# escape=`` directive says.
"""

from __future__ import annotations

import re

from builder.errors import DockerfileError, ExpansionError
from builder.shell_lex import ShellLex

_MARKER = re.compile(r"^([0-9]*)<<(-?)([^<]*)$")
_RAW_LINE = ShellLex("\\", raw_quotes=True, raw_escapes=True, skip_unset=True)
_COOKED = ShellLex("\\", skip_unset=True)
_RAW = ShellLex("\\", raw_quotes=True, skip_unset=True)
_NO_ENV: dict[str, str] = {}


class Marker:
    """A heredoc marker found on a line (its body is read later)."""

    __slots__ = ("chomp", "expand", "fd", "name")

    def __init__(self, name: str, expand: bool, chomp: bool, fd: int) -> None:
        self.name, self.expand, self.chomp, self.fd = name, expand, chomp, fd


def parse_marker(word: str) -> Marker | None:
    """The heredoc a single word introduces, or None if it is not a heredoc marker."""
    match = _MARKER.match(word)
    if not match or not match.group(3):
        return None
    fd_text, dash, rest = match.groups()
    try:
        cooked = _COOKED.process_words(rest, _NO_ENV)
        if len(cooked) != 1:
            return None
        raw = _RAW.process_words(rest, _NO_ENV)
    except ExpansionError as e:
        raise DockerfileError(f"invalid heredoc delimiter {rest!r}: {e.reason}") from None
    if len(raw) != 1:
        raise DockerfileError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    quotes = lambda s: s.count("'") + s.count('"')  # noqa: E731 - a two-use helper
    fd = int(fd_text) if fd_text and len(fd_text) < 20 else 0
    return Marker(cooked[0], quotes(cooked[0]) == quotes(raw[0]), dash == "-", fd)


def markers_on_line(line: str) -> list[Marker]:
    """Every heredoc marker on an instruction line, in order."""
    if "<<" not in line:
        return []
    try:
        words = _RAW_LINE.process_words(line, _NO_ENV)
    except ExpansionError:
        # BuildKit ignores lexing errors here: such a line simply has no heredocs.
        return []
    return [m for m in map(parse_marker, words) if m is not None]
