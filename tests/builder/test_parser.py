"""Parser details: line endings, BOM, directives, continuations, heredoc bodies, node shapes."""

from __future__ import annotations

import pytest

from builder import DockerfileError
from builder.parser import parse
from builder.parser.line_parsers import extract_flags, parse_json_array, parse_words


def test_crlf_line_endings() -> None:
    result = parse(b"FROM alpine\r\nRUN echo a \\\r\n    b\r\nCOPY <<EOF /x\r\nline\r\nEOF\r\n")
    run, copy = result.nodes[1], result.nodes[2]
    assert run.args == ("echo a     b",) and (run.start_line, run.end_line) == (2, 3)
    assert copy.heredocs[0].content == "line\r\n"


def test_bom_is_ignored_and_directives_still_work() -> None:
    result = parse("\ufeff# escape=`\nFROM alpine\n".encode())
    assert result.escape == "`"


def test_directive_after_instruction_is_a_comment() -> None:
    result = parse("FROM alpine\n# escape=`\nRUN a \\\n b\n")
    assert result.escape == "\\" and result.nodes[1].args == ("a  b",)


def test_continuation_at_end_of_file() -> None:
    result = parse("FROM alpine\nRUN echo \\")
    assert result.nodes[1].args == ("echo",)


def test_heredoc_body_at_end_of_file_without_newline() -> None:
    result = parse("FROM alpine\nRUN <<EOF\nx\nEOF")
    assert result.nodes[1].heredocs[0].content == "x\n"


def test_terminator_must_match_exactly() -> None:
    with pytest.raises(DockerfileError, match="unterminated heredoc"):
        parse("FROM alpine\nRUN <<EOF\nEOF \n")


def test_heredoc_detection_uses_backslash_even_with_backtick_escape() -> None:
    result = parse("# escape=`\nFROM alpine\nRUN <<EOF\necho\nEOF\n")
    assert result.nodes[1].heredocs[0].name == "EOF"


def test_comments_before_instruction_are_kept() -> None:
    result = parse("# first\n# second\nFROM alpine\n")
    assert result.nodes[0].comments == ("first", "second")


def test_nodes_keep_keyword_case_and_flags() -> None:
    node = parse("FROM a\ncopy --from=x --chown=1 a b\n").nodes[1]
    assert (node.keyword, node.name, node.flags, node.args) == ("copy", "copy", ("--from=x", "--chown=1"), ("a", "b"))


@pytest.mark.parametrize(("text", "rest", "flags"), [
    ("--a=1 --b x y", "x y", ("--a=1", "--b")),
    ("--a='quoted value' rest", "rest", ("--a=quoted value",)),
    ("-- --not-a-flag", " --not-a-flag", ()),
    ("plain", "plain", ()),
    ("--only", "", ("--only",)),
    ("-x", "-x", ()),
])
def test_extract_flags(text: str, rest: str, flags: tuple[str, ...]) -> None:
    assert extract_flags(text) == (rest, flags)


@pytest.mark.parametrize(("text", "words"), [
    ('a="b c" d', ['a="b c"', "d"]),
    ("a=b\\ c", ["a=b\\ c"]),
    ("'a b' c", ["'a b'", "c"]),
    ('x="\\"q\\""', ['x="\\"q\\""']),
    ("trailing\\", ["trailing"]),
    ('a=""', ['a=""']),
])
def test_parse_words(text: str, words: list[str]) -> None:
    assert parse_words(text, "\\") == words


@pytest.mark.parametrize(("text", "expected"), [
    ('["a", "b"]', ("a", "b")),
    ('  ["a"] trailing', ("a",)),
    ("[]", ()),
    ("['a']", None),
    ('["a",]', None),
    ("[NaN]", None),
    ("not json", None),
    ('["\\ud800"]', ("\ufffd",)),
])
def test_json_arrays(text: str, expected: tuple[str, ...] | None) -> None:
    assert parse_json_array(text) == expected


def test_json_with_non_strings_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="comprised of strings only"):
        parse_json_array('["a", {"b": 1}]')
