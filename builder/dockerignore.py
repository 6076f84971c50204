"""``.dockerignore``: which context paths a build leaves out.

The reading rules are moby/patternmatcher's (used by BuildKit): one pattern a line; a line
starting with ``#`` is a comment; surrounding whitespace is trimmed; ``!`` makes an
exception; each pattern is cleaned like Go's ``filepath.Clean`` and a leading ``/`` is
dropped. Patterns use Go's ``filepath.Match`` syntax (``*``, ``?``, ``[...]`` with ``^``
negation and ranges, ``\\`` escapes) plus ``**`` for any number of directories. The last
matching pattern wins, and a path is excluded when it or one of its parent directories is.

A Dockerfile-specific ignore file (``<Dockerfile>.dockerignore`` beside the Dockerfile)
takes precedence over ``.dockerignore`` at the context root.
"""

from __future__ import annotations

import enum
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import DockerignoreError

IGNORE_FILE = ".dockerignore"
_BOM = "\ufeff"


def go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` for slash-separated paths."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_patterns(data: str | bytes) -> list[str]:
    """The patterns of an ignore file, normalised as ``ignorefile.ReadAll`` does."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, (bytes, bytearray)) else data
    patterns: list[str] = []
    for number, line in enumerate(text.split("\n")):
        if number == 0 and line.startswith(_BOM):
            line = line[1:]
        line = line.rstrip("\r")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


class _Kind(enum.Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEX = "regex"


@dataclass(frozen=True, slots=True)
class Pattern:
    """One cleaned pattern; patternmatcher's fast paths (exact, prefix, suffix) are kept
    because they differ from the regex in corner cases such as ``**foo``."""

    text: str
    exclusion: bool
    kind: _Kind
    regex: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None


class PatternMatcher:
    """Patterns in order; ``matches(path)`` tells whether a context path is excluded."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[Pattern] = []
        for number, raw in enumerate(patterns, start=1):
            text = raw.strip()
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise DockerignoreError('illegal exclusion pattern: "!"', number)
                text = text[1:]
            try:
                check_go_pattern(text)
            except DockerignoreError as e:
                raise DockerignoreError(f"{e.message}: {text!r}", number) from None
            kind, regex = _compile(text)
            self.patterns.append(Pattern(text, exclusion, kind, regex))

    @property
    def has_exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """Whether ``path`` (slash-separated, relative to the context) is ignored."""
        path = go_clean(path)
        if path == ".":
            return False
        parent = path.rsplit("/", 1)[0] if "/" in path else "."
        parents = _prefixes(parent) if parent != "." else []
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            if pattern.match(path) or any(pattern.match(p) for p in parents):
                matched = not pattern.exclusion
        return matched


def _prefixes(parent: str) -> list[str]:
    parts = parent.split("/")
    return ["/".join(parts[:i + 1]) for i in range(len(parts))]


# Regex characters that mean nothing in filepath.Match and so are escaped.
_REGEX_ONLY = frozenset(".+()|{}$")


def _compile(pattern: str) -> tuple[_Kind, re.Pattern[str] | None]:
    """The pattern's match kind and, for REGEX, its anchored regex (patternmatcher's translation)."""
    out: list[str] = ["^"]
    kind = _Kind.EXACT
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        first = i == 0
        i += 1
        if ch == "*" and i < n and pattern[i] == "*":
            i += 1
            if i < n and pattern[i] == "/":
                i += 1
            if i >= n:
                if kind is _Kind.EXACT:
                    kind = _Kind.PREFIX
                else:
                    out.append(".*")
                    kind = _Kind.REGEX
            else:
                out.append("(?:.*/)?")
                kind = _Kind.REGEX
            if first:
                kind = _Kind.SUFFIX
        elif ch == "*":
            out.append("[^/]*")
            kind = _Kind.REGEX
        elif ch == "?":
            out.append("[^/]")
            kind = _Kind.REGEX
        elif ch in _REGEX_ONLY:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
                kind = _Kind.REGEX
            else:
                out.append("\\\\")
        elif ch in "[]":
            out.append(ch)
            kind = _Kind.REGEX
        else:
            out.append(ch)
    if kind is not _Kind.REGEX:
        return kind, None
    with warnings.catch_warnings():
        # Go's RE2 has no nested sets; Python only warns about "[[" and the like.
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return kind, re.compile("".join(out) + r"\Z", re.DOTALL)
        except re.error as e:
            raise DockerignoreError(f"syntax error in pattern ({e.msg}): {pattern!r}") from None


def check_go_pattern(pattern: str) -> None:
    """Raise DockerignoreError where Go's ``filepath.Match`` reports ErrBadPattern."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise DockerignoreError("syntax error in pattern")
            i += 2
        elif ch == "[":
            i = _check_class(pattern, i + 1)
        else:
            i += 1


def _check_class(pattern: str, i: int) -> int:
    """Check a character class starting after ``[``; returns the index after ``]``."""
    n = len(pattern)
    if i < n and pattern[i] == "^":
        i += 1
    ranges = 0
    while True:
        if i < n and pattern[i] == "]" and ranges > 0:
            return i + 1
        lo, i = _class_char(pattern, i)
        if i < n and pattern[i] == "-":
            _, i = _class_char(pattern, i + 1)
        ranges += 1
        if i >= n:
            raise DockerignoreError("syntax error in pattern")
        del lo


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise DockerignoreError("syntax error in pattern")
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise DockerignoreError("syntax error in pattern")
    return pattern[i], i + 1


def load_patterns(data: str | bytes) -> PatternMatcher:
    """A matcher for the contents of an ignore file; raises DockerignoreError."""
    return PatternMatcher(read_patterns(data))


def find_ignore_file(context: Path, dockerfile: Path | None = None) -> Path | None:
    """The ignore file that applies: ``<Dockerfile>.dockerignore`` beside it, else the context's."""
    if dockerfile is not None:
        specific = dockerfile.with_name(dockerfile.name + IGNORE_FILE)
        if specific.is_file():
            return specific
    default = context / IGNORE_FILE
    return default if default.is_file() else None


def load_dockerignore(context: Path, dockerfile: Path | None = None) -> PatternMatcher:
    """The matcher that applies to a build of ``context`` (empty when there is no ignore file)."""
    path = find_ignore_file(context, dockerfile)
    return load_patterns(path.read_bytes()) if path is not None else PatternMatcher([])
