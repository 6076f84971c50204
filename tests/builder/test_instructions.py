"""Typed instructions: fields, flags, public API shape."""

from __future__ import annotations

import dataclasses

import pytest

from builder import Dockerfile, DockerfileError, DockerfileErrors, parse_dockerfile
from builder import keywords as kw
from builder.instructions import Copy, From, Healthcheck, Run, parse_go_duration
from builder.mounts import parse_mount, split_csv


def test_public_api_shape() -> None:
    df = parse_dockerfile(b"# syntax=docker/dockerfile:1\nARG A=1\nFROM --platform=linux/amd64 alpine AS Base\nRUN true\n")
    assert isinstance(df, Dockerfile)
    assert df.directives == {"syntax": "docker/dockerfile:1"}
    assert [(a.keyword, a.line) for a in df.meta_args] == [("ARG", 2)]
    stage = df.stages[0]
    assert (stage.name, stage.base, stage.platform, stage.line) == ("base", "alpine", "linux/amd64", 3)
    assert [(i.keyword, i.line) for i in stage.instructions] == [("RUN", 4)]
    assert stage.name is not None and df.stages[0].header.keyword == kw.FROM


def test_instructions_are_frozen() -> None:
    instr = parse_dockerfile("FROM alpine\nRUN true\n").stages[0].instructions[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        instr.loc = instr.loc  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        instr.loc.line = 3  # type: ignore[misc]
    assert (instr.line, instr.end_line, instr.original) == (2, 2, "RUN true")


def test_unnamed_stage_name_is_none() -> None:
    assert parse_dockerfile("FROM alpine\n").stages[0].name is None


def test_keywords_are_case_insensitive() -> None:
    df = parse_dockerfile("from alpine As B\ncOpY a b\nrun true\n")
    assert [i.keyword for i in df.stages[0].instructions] == ["COPY", "RUN"]
    assert df.stages[0].name == "b"


def test_errors_collect_and_the_first_is_the_exception() -> None:
    with pytest.raises(DockerfileErrors) as info:
        parse_dockerfile("FROM alpine\nNOPE\nCOPY x\n")
    err = info.value
    assert isinstance(err, DockerfileError) and err.line == 2 and len(err.errors) == 2
    assert "and 1 more error" in str(err)


def test_heredoc_copy_source_and_chomp() -> None:
    df = parse_dockerfile("FROM alpine\nCOPY <<-EOF /x\n\t\tindented\n\tEOF\n")
    copy = df.stages[0].instructions[0]
    assert isinstance(copy, Copy) and copy.contents[0].data == "indented\n" and copy.sources == ()


def test_run_without_arguments_is_accepted() -> None:
    # BuildKit's parseRun has no argument count check: a bare RUN is an empty shell command.
    df = parse_dockerfile("FROM alpine\nRUN\nRUN []\nRUN --network=none\n")
    runs = df.stages[0].instructions
    assert [(i.keyword, i.line) for i in runs] == [("RUN", 2), ("RUN", 3), ("RUN", 4)]
    assert all(isinstance(r, Run) and r.command == () for r in runs)
    assert [r.prepend_shell for r in runs if isinstance(r, Run)] == [True, False, True]


def test_run_json_has_no_heredocs() -> None:
    run = parse_dockerfile('FROM alpine\nRUN ["cat", "<<EOF"]\n').stages[0].instructions[0]
    assert isinstance(run, Run) and run.heredocs == () and not run.prepend_shell


def test_healthcheck_none_ignores_flags_like_buildkit() -> None:
    hc = parse_dockerfile("FROM alpine\nHEALTHCHECK --bogus=1 NONE\n").stages[0].instructions[0]
    assert isinstance(hc, Healthcheck) and hc.test == ("NONE",)


@pytest.mark.parametrize(("text", "ns"), [
    ("0", 0), ("1s", 10**9), ("1m30s", 90 * 10**9), ("1.5h", 5400 * 10**9), ("300ms", 3 * 10**8), ("2us", 2000),
    (".5s", 5 * 10**8),
])
def test_go_durations(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1.2.3s", "--1s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(DockerfileError):
        parse_go_duration(text)


@pytest.mark.parametrize(("text", "fields"), [
    ("a,b", ["a", "b"]), ('"a,b",c', ["a,b", "c"]), ('"say ""hi"""', ['say "hi"']), ("a,,b", ["a", "", "b"]),
    ("a,", ["a", ""]),
])
def test_csv(text: str, fields: list[str]) -> None:
    assert split_csv(text) == fields


@pytest.mark.parametrize("text", ['"open', '"a"b', "", 'x"y'])
def test_bad_csv(text: str) -> None:
    with pytest.raises(DockerfileError):
        split_csv(text)


def test_mount_defaults_and_aliases() -> None:
    m = parse_mount("type=cache,dst=/c,id=x,sharing=SHARED,uid=1000,mode=0700")
    assert (m.type, m.target, m.cache_id, m.sharing, m.uid, m.mode, m.readonly) == \
        ("cache", "/c", "x", "shared", "1000", "0700", False)
    assert parse_mount("target=/src").readonly is True
    assert parse_mount("type=bind,target=/x,rw").readonly is False
    assert parse_mount("type=ssh,required=false").required is False


def test_from_parse() -> None:
    f = parse_dockerfile("FROM --platform=$P img:1 AS x\n").stages[0].header
    assert isinstance(f, From) and (f.base, f.name, f.platform) == ("img:1", "x", "$P")
