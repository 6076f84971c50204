"""Dockerfile text to nodes: lines, continuations, comments, directives, heredocs.

The reading rules are BuildKit's: a line ending in the escape character (not itself
escaped) continues on the next; comment lines and blank lines inside a continuation are
skipped (the latter with a warning); heredoc bodies follow the line that opens them.
Per-instruction argument shaping lives in ``line_parsers``; nothing is expanded.
"""

from __future__ import annotations

import dataclasses
import re

from builder import keywords
from builder.errors import DockerfileError, raise_collected
from builder.parser import heredoc as heredocs
from builder.parser import line_parsers
from builder.parser.directives import DirectiveScanner
from builder.parser.nodes import Heredoc, Node, ParseResult
from builder.textutil import go_lstrip

# BuildKit reads lines with a bufio.Scanner, whose token limit is 64 KiB.
MAX_LINE_BYTES = 64 * 1024 - 1
_BOM = "\ufeff"


def decode(data: str | bytes) -> str:
    """Text of a Dockerfile; undecodable bytes become U+FFFD rather than failing."""
    if isinstance(data, str):
        return data
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"a Dockerfile is str or bytes, not {type(data).__name__}")
    return bytes(data).decode("utf-8", errors="replace")


class _Lines:
    """The physical lines of the file, read one at a time with their 1-based numbers."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        # A final newline does not start another line.
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
            self.last_has_newline = True
        else:
            self.last_has_newline = False
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.lines)

    def next(self) -> tuple[str, int]:
        """The next line without its newline (and trailing carriage returns), and its number."""
        raw = self.lines[self.pos]
        self.pos += 1
        if len(raw) > MAX_LINE_BYTES // 4 and len(raw.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
            raise DockerfileError(f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES}", self.pos)
        return raw.rstrip("\r\n"), self.pos

    def next_with_newline(self) -> tuple[str, int]:
        """The next line exactly as written, with its newline when it had one."""
        raw = self.lines[self.pos]
        self.pos += 1
        ends = self.pos < len(self.lines) or self.last_has_newline
        return (raw + "\n" if ends else raw), self.pos


def _is_comment(line: str) -> bool:
    return go_lstrip(line).startswith("#")


class _Continuation:
    """Detects and removes a trailing escape character that continues the line."""

    def __init__(self, escape: str) -> None:
        e = re.escape(escape)
        self.regex = re.compile(f"([^{e}]){e}[ \t]*$|^{e}[ \t]*$")

    def split(self, line: str) -> tuple[str, bool]:
        """``(line without the continuation mark, continues)``."""
        if not line.endswith(("\\", "`", " ", "\t")):
            return line, False
        match = self.regex.search(line)
        if not match:
            return line, False
        return line[:match.start()] + (match.group(1) or ""), True


class Parser:
    """One parse of one Dockerfile. Use ``parse()``."""

    def __init__(self, text: str) -> None:
        if text.startswith(_BOM):
            text = text[1:]
        self.lines = _Lines(text)
        self.directives = DirectiveScanner()
        self.continuation = _Continuation(keywords.DEFAULT_ESCAPE)
        self.nodes: list[Node] = []
        self.errors: list[DockerfileError] = []
        self.warnings: list[str] = []

    def run(self) -> tuple[ParseResult, list[DockerfileError]]:
        """Every node that parsed, and the errors met (reading stops at a fatal one)."""
        try:
            self._read()
        except DockerfileError as e:
            self.errors.append(e)
        if not self.nodes and not self.errors:
            self.errors.append(DockerfileError("file with no instructions", max(1, self.lines.pos)))
        result = ParseResult(tuple(self.nodes), tuple(self.directives.directives),
                             self.directives.escape, tuple(self.warnings))
        return result, self.errors

    def _read(self) -> None:
        comments: list[str] = []
        while self.lines.more():
            line, lineno = self.lines.next()
            line = go_lstrip(line)
            self._directive(line, lineno)
            if _is_comment(line):
                comment = line[1:].strip()
                comments = comments + [comment] if comment else []
                continue
            if not line:
                continue
            self._instruction(line, lineno, tuple(comments))
            comments = []

    def _directive(self, line: str, lineno: int) -> None:
        if self.directives.done:
            return
        self.directives.feed(line, lineno)
        if self.directives.escape != keywords.DEFAULT_ESCAPE:
            self.continuation = _Continuation(self.directives.escape)

    def _instruction(self, first: str, start: int, comments: tuple[str, ...]) -> None:
        # Directives end at the first instruction (feeding it marks them done).
        self.directives.done = True
        text, end = self._join_continuations(first, start)
        try:
            node = self._node(text, start, end, comments)
        except DockerfileError as e:
            self.errors.append(e.at(start, end))
            self._skip_heredoc_bodies(text)
            return
        self.nodes.append(node)

    def _join_continuations(self, first: str, start: int) -> tuple[str, int]:
        piece, continues = self.continuation.split(first)
        parts = [piece]
        end = start
        empty_lines = False
        while continues and self.lines.more():
            line, end = self.lines.next()
            if _is_comment(line):
                continue
            if not go_lstrip(line):
                empty_lines = True
                continue
            piece, continues = self.continuation.split(line)
            parts.append(piece)
        text = "".join(parts)
        if empty_lines:
            self.warnings.append(f"line {start}: empty continuation line found in: {text[:80]}")
        return text, end

    def _node(self, text: str, start: int, end: int, comments: tuple[str, ...]) -> Node:
        node = self._shape(text, start, end, comments)
        target = node.sub if node.name in _WRAPPERS and node.sub is not None else node
        if target.name not in _HEREDOC_HOSTS or target.json:
            return node
        markers = heredocs.markers_on_line(text)
        if not markers:
            return node
        docs = tuple(self._read_heredoc(m, start) for m in markers)
        end = self.lines.pos
        if node is target:
            return dataclasses.replace(node, heredocs=docs, end_line=end)
        # ONBUILD carries the bodies too, as BuildKit attaches them to the outer node.
        sub = dataclasses.replace(target, heredocs=docs, end_line=end)
        return dataclasses.replace(node, sub=sub, heredocs=docs, end_line=end)

    def _shape(self, text: str, start: int, end: int, comments: tuple[str, ...]) -> Node:
        keyword, flags, rest = line_parsers.split_command(text)
        name = keyword.lower()
        if name == keywords.ONBUILD.lower():
            sub = self._shape(rest, start, end, ()) if rest else None
            args = ((sub.keyword,) + sub.args) if sub else ()
            return Node(keyword, args, flags, text, start, end, False, (), sub, comments)
        shaped = line_parsers.SHAPERS.get(name, line_parsers.ignore)(rest, self.directives.escape)
        return Node(keyword, shaped.args, flags, text, start, end, shaped.json, (), None, comments)

    def _read_heredoc(self, marker: heredocs.Marker, start: int) -> Heredoc:
        body: list[str] = []
        while self.lines.more():
            line, _ = self.lines.next_with_newline()
            candidate = line.rstrip("\r\n")
            if marker.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == marker.name:
                return Heredoc(marker.name, "".join(body), marker.expand, marker.chomp, marker.fd)
            body.append(line)
        raise DockerfileError(f"unterminated heredoc {marker.name!r} (no line reading {marker.name!r} "
                              "before the end of the file)", start, self.lines.pos)

    def _skip_heredoc_bodies(self, text: str) -> None:
        """After a bad instruction, still consume its heredoc bodies so they are not parsed."""
        keyword = line_parsers.split_command(text)[0].lower()
        if keyword not in _HEREDOC_HOSTS and keyword not in _WRAPPERS:
            return
        try:
            for marker in heredocs.markers_on_line(text):
                self._read_heredoc(marker, self.lines.pos)
        except DockerfileError:
            return


_HEREDOC_HOSTS = frozenset(k.lower() for k in keywords.HEREDOC_INSTRUCTIONS)
_WRAPPERS = frozenset(k.lower() for k in keywords.HEREDOC_WRAPPERS)



def parse_collecting(data: str | bytes) -> tuple[ParseResult, list[DockerfileError]]:
    """The nodes that parsed and every error met, without raising (for ``--check``)."""
    return Parser(decode(data)).run()


def parse(data: str | bytes) -> ParseResult:
    """Parse a Dockerfile into nodes; raises DockerfileError (or DockerfileErrors) only."""
    result, errors = parse_collecting(data)
    raise_collected(errors)
    return result
