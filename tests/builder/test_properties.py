"""Property tests: the parser raises nothing but DockerfileError, whatever the input."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder import DockerfileError, parse_dockerfile
from builder.check import check_dockerfile
from builder.dockerignore import load_patterns
from builder.errors import BuilderError
from builder.shell_lex import ShellLex

_PIECES = st.sampled_from([
    "FROM ", "RUN ", "COPY ", "ADD ", "ENV ", "ARG ", "ONBUILD ", "HEALTHCHECK ", "SHELL ", "CMD ", "EXPOSE ",
    "alpine", " AS ", "x", "--mount=type=cache,target=/x ", "--from=0 ", "--", "=", "\\\n", "`\n", "\n", "\r\n",
    "<<EOF", "<<-'E'", "EOF\n", "\tE\n", "[", "]", '"', "'", "${", "}", "$a", ":-", "#", "# escape=`\n",
    "# syntax=x\n", " ", "\t", "\x00", "\ufeff", "é", "[\"a\"]", "[1]", "NONE", "CMD", "\\", "/", "*",
])
DOCKERFILES = st.lists(_PIECES, max_size=40).map("".join)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text_only_raises_dockerfile_error(text: str) -> None:
    try:
        parse_dockerfile(text)
    except DockerfileError:
        pass


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_dockerfile_error(data: bytes) -> None:
    try:
        parse_dockerfile(data)
    except DockerfileError:
        pass


@SETTINGS
@given(DOCKERFILES)
def test_dockerfile_shaped_text_only_raises_dockerfile_error(text: str) -> None:
    try:
        parse_dockerfile(text)
    except DockerfileError:
        pass


@SETTINGS
@given(DOCKERFILES, st.sampled_from([None, "x", "0"]))
def test_check_never_raises(text: str, target: str | None) -> None:
    report = check_dockerfile(text, target=target)
    assert all(isinstance(e, DockerfileError) for e in report.errors)


@SETTINGS
@given(st.text(max_size=80), st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=3))
def test_lexer_only_raises_its_own_errors(word: str, env: dict[str, str]) -> None:
    for lex in (ShellLex("\\"), ShellLex("`"), ShellLex(raw_quotes=True, raw_escapes=True, skip_unset=True)):
        try:
            lex.process_word(word, env)
            lex.process_words(word, env)
        except DockerfileError:
            pass


@SETTINGS
@given(st.text(max_size=120), st.text(max_size=40))
def test_dockerignore_only_raises_its_own_errors(patterns: str, path: str) -> None:
    try:
        load_patterns(patterns).matches(path)
    except BuilderError:
        pass


def test_megabytes_of_continuations_parse_fast() -> None:
    text = "FROM alpine\nRUN true \\\n" + "  && echo some words here \\\n" * 100_000 + "  && true\n"
    assert len(text) > 2_000_000
    start = time.perf_counter()
    df = parse_dockerfile(text)
    assert time.perf_counter() - start < 3.0
    assert df.stages[0].instructions[0].end_line == 100_003


def test_long_heredoc_and_many_instructions_parse_fast() -> None:
    text = "FROM alpine\n" + "RUN <<EOF\n" + "echo x\n" * 100_000 + "EOF\n" + "ENV A=1\n" * 20_000
    start = time.perf_counter()
    parse_dockerfile(text)
    assert time.perf_counter() - start < 3.0


def test_overlong_physical_line_is_an_error_like_buildkit() -> None:
    try:
        parse_dockerfile("FROM alpine\nRUN echo " + "x" * 70_000 + "\n")
    except DockerfileError as e:
        assert e.line == 2 and "greater than max allowed size" in e.message
    else:
        raise AssertionError("expected an error")


def test_deeply_nested_input_does_not_crash() -> None:
    for text in ("FROM a\nCMD " + "[" * 100_000, "FROM a\nRUN ${a:-" * 2000, "FROM a\nWORKDIR " + "${a:-" * 3000):
        try:
            check_dockerfile(text)
        except DockerfileError:
            pass
