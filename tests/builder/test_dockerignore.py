"""The .dockerignore table: patterns, a path, whether the path is left out of the context."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.dockerignore import (
    PatternMatcher,
    find_ignore_file,
    go_clean,
    load_dockerignore,
    load_patterns,
    read_patterns,
)
from builder.errors import DockerignoreError

CASES: list[tuple[str, str, bool]] = [
    # plain names and parents
    ("node_modules", "node_modules", True),
    ("node_modules", "node_modules/x/y.js", True),
    ("node_modules", "src/node_modules", False),
    ("build/", "build/out.o", True),
    ("/build", "build", True),
    ("./build", "build/x", True),
    ("build/../dist", "dist/a", True),
    ("a//b", "a/b", True),
    # * and ?
    ("*.md", "README.md", True),
    ("*.md", "docs/README.md", False),
    ("*/*.md", "docs/README.md", True),
    ("*", "anything", True),
    ("*", "dir/file", True),
    ("?.txt", "a.txt", True),
    ("?.txt", "ab.txt", False),
    ("?", "a/b", True),
    ("a?c", "a/c", False),
    ("dir/*", "dir/x/y", True),
    ("*.go", "main.go", True),
    ("*.go", "pkg/main.go", False),
    # character classes
    ("[abc].txt", "b.txt", True),
    ("[abc].txt", "d.txt", False),
    ("[a-c]x", "bx", True),
    ("[^a-c]x", "dx", True),
    ("[^a-c]x", "ax", False),
    ("file[0-9]", "file7", True),
    ("file[0-9]", "filex", False),
    ("\\*.txt", "*.txt", True),
    ("\\*.txt", "a.txt", False),
    ("a\\?b", "a?b", True),
    ("[\\]]", "]", True),
    # ** anywhere
    ("**/*.pyc", "x.pyc", True),
    ("**/*.pyc", "a/b/c/x.pyc", True),
    ("**/__pycache__", "pkg/sub/__pycache__/m.pyc", True),
    ("docs/**/tmp", "docs/tmp", True),
    ("docs/**/tmp", "docs/a/b/tmp/f", True),
    ("docs/**", "docs/a/b", True),
    ("docs/**", "docsx", False),
    ("docs**", "docsx/y", True),
    ("**", "anything/at/all", True),
    ("**foo", "barfoo", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("*/**/x", "a/b/x", True),
    # regex characters have no meaning
    ("a.b", "axb", False),
    ("a.b", "a.b", True),
    ("a+b", "a+b", True),
    ("(x)", "(x)", True),
    ("a|b", "a", False),
    ("$x", "$x", True),
    ("{a,b}", "a", False),
    ("{a,b}", "{a,b}", True),
    # exceptions and order
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "CHANGES.md", True),
    ("!README.md\n*.md", "README.md", True),
    ("docs\n!docs/keep.md", "docs/keep.md", False),
    ("docs\n!docs/keep.md", "docs/other.md", True),
    ("*\n!src\n!src/**", "src/main.go", False),
    ("*\n!src", "src/main.go", False),
    ("*\n!src", "other", True),
    ("**/*.log\n!important.log\nimportant.log", "important.log", True),
    # comments, blanks and whitespace
    ("# comment\n*.tmp", "a.tmp", True),
    ("#*.tmp", "#x.tmp", False),
    (" # not a comment", "# not a comment", True),
    ("  spaced.txt  ", "spaced.txt", True),
    ("\n\n*.o\n\n", "x.o", True),
    ("! keep.txt\n*", "keep.txt", True),
    ("*\n! keep.txt", "keep.txt", False),
    ("*.o\r\n", "x.o", True),
    ("\ufeff*.bom", "a.bom", True),
    # the context root itself is never excluded
    ("*", ".", False),
    ("**", "", False),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES, ids=[f"{p!r}:{f}" for p, f, _ in CASES])
def test_dockerignore_table(patterns: str, path: str, excluded: bool) -> None:
    assert load_patterns(patterns).matches(path) is excluded


@pytest.mark.parametrize("pattern", ["[", "[a", "a\\", "[]a]", "[a-]", "[-a]", "[^]", "x[a-"])
def test_bad_patterns_are_errors_with_their_line(pattern: str) -> None:
    with pytest.raises(DockerignoreError) as info:
        load_patterns(f"ok\n{pattern}\n")
    assert info.value.line == 2 and "syntax error in pattern" in info.value.message


def test_lone_exclamation_is_illegal() -> None:
    with pytest.raises(DockerignoreError, match="illegal exclusion pattern"):
        PatternMatcher(["!"])


def test_read_patterns_normalises_like_ignorefile() -> None:
    text = "# c\n/abs/path\n./rel/../x\n!/neg\n  \nlast/ \n"
    assert read_patterns(text) == ["abs/path", "x", "!neg", "last"]


@pytest.mark.parametrize(("raw", "clean"), [
    ("", "."), (".", "."), ("a/b/..", "a"), ("../a", "../a"), ("/../a", "/a"), ("a//b/./c/", "a/b/c"),
    ("/", "/"), ("a/../..", ".."),
])
def test_go_clean(raw: str, clean: str) -> None:
    assert go_clean(raw) == clean


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("*.md\n")
    sub = tmp_path / "build"
    sub.mkdir()
    dockerfile = sub / "app.Dockerfile"
    dockerfile.write_text("FROM alpine\n")
    assert find_ignore_file(tmp_path, dockerfile) == tmp_path / ".dockerignore"
    (sub / "app.Dockerfile.dockerignore").write_text("*.txt\n")
    assert find_ignore_file(tmp_path, dockerfile) == sub / "app.Dockerfile.dockerignore"
    matcher = load_dockerignore(tmp_path, dockerfile)
    assert matcher.matches("a.txt") and not matcher.matches("a.md")


def test_no_ignore_file_excludes_nothing(tmp_path: Path) -> None:
    assert find_ignore_file(tmp_path) is None
    assert not load_dockerignore(tmp_path).matches("anything")
