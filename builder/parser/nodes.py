"""The parser's output: one node per instruction, with its line range; nothing expanded."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Heredoc:
    """A here-document attached to a RUN/COPY/ADD line.

    ``content`` is the body as written (each line with its newline); ``expand`` is False
    when the delimiter was quoted; ``chomp`` is the ``<<-`` form (leading tabs stripped).
    """

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int = 0

    @property
    def body(self) -> str:
        """The content as the instruction sees it: leading tabs removed for ``<<-``."""
        return strip_leading_tabs(self.content) if self.chomp else self.content


def strip_leading_tabs(text: str) -> str:
    return "".join(line.lstrip("\t") for line in text.splitlines(keepends=True))


@dataclass(frozen=True, slots=True)
class Directive:
    """A parser directive such as ``# syntax=docker/dockerfile:1`` (name in lower case)."""

    name: str
    value: str
    line: int


@dataclass(frozen=True, slots=True)
class Node:
    """One instruction as parsed.

    ``keyword`` is as written (case preserved); ``args`` are shaped per instruction as
    BuildKit shapes them (JSON elements, whitespace-split words, key/value pairs, or the
    whole rest of the line); ``json`` marks the exec (JSON array) form. ``sub`` is the
    wrapped instruction of an ONBUILD.
    """

    keyword: str
    args: tuple[str, ...]
    flags: tuple[str, ...]
    original: str
    start_line: int
    end_line: int
    json: bool = False
    heredocs: tuple[Heredoc, ...] = ()
    sub: Node | None = None
    comments: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The keyword in lower case, the form dispatch tables are keyed by."""
        return self.keyword.lower()


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Every node of a Dockerfile, its directives, escape character and warnings."""

    nodes: tuple[Node, ...]
    directives: tuple[Directive, ...]
    escape: str
    warnings: tuple[str, ...] = field(default=())
