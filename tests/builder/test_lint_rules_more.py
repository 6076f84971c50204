"""UndefinedVar, CopyIgnoredFile and InvalidDefinitionDescription, BuildKit's words and gating
(the last two are experimental: only ``# check=experimental=`` turns them on, whatever
``skip`` says)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.check import check_dockerfile
from builder.dockerignore import load_patterns
from builder.lint import _levenshtein, _suggest
from tests.cli.helpers import Hoist

EXPERIMENTAL = "# check=experimental=all\n"


def _found(text: str, rule: str, **kwargs: object) -> list[tuple[str, int | None]]:
    report = check_dockerfile(text, **kwargs)  # type: ignore[arg-type]
    assert not report.errors, report.errors
    return [(c.message, c.line) for c in report.checks if c.rule == rule]


# -- UndefinedVar -----------------------------------------------------------------------------------

def test_undefined_var_where_the_stage_env_is_known() -> None:
    text = """\
FROM scratch
ARG DECLARED
ENV HOME_DIR=/home
WORKDIR $HOME_DIR/$DECLARED
COPY $HOME_DIRR/a ${MISSING:-x}/ /dst/
ENV PATH=$PATH:/x OTHER=$UNSET_HERE
LABEL a=$TARGETARCH
RUN --mount=type=cache,target=$CACHE_DIR true
"""
    assert _found(text, "UndefinedVar") == [
        ("Usage of undefined variable '$HOME_DIRR' (did you mean $HOME_DIR?)", 5),
        ("Usage of undefined variable '$MISSING'", 5),
        ("Usage of undefined variable '$UNSET_HERE'", 6),      # (scratch has PATH, as BuildKit's)
        ("Usage of undefined variable '$TARGETARCH'", 7),
        ("Usage of undefined variable '$CACHE_DIR'", 8),
    ]


def test_undefined_var_not_said_when_the_base_env_is_unknown() -> None:
    # --check does not read a base image's config: $PATH may well be set there.
    assert _found("FROM busybox\nENV PATH=$PATH:/x\n", "UndefinedVar") == []
    assert _found("FROM scratch\nRUN echo $NOT_EXPANDED_BY_THE_BUILDER\n", "UndefinedVar") == []
    assert _found("# check=skip=UndefinedVar\nFROM scratch\nENV A=$B\n", "UndefinedVar") == []


def test_suggestion_is_buildkits() -> None:
    assert _levenshtein("kitten", "sitting") == 3 and _levenshtein("", "ab") == 2
    assert _suggest("HOMR", ["PATH", "HOME"]) == "HOME"
    assert _suggest("ABCDEF", ["ABCXYZ"]) == ""              # distance 3: too far
    assert _suggest("HOME", ["HOME"]) == ""                  # an exact name is no suggestion


# -- InvalidDefinitionDescription -------------------------------------------------------------------

DESCRIBED = """\
# VERSION the version to build
ARG VERSION=1
# the base of everything
ARG BASE=busybox
# build compiles it
FROM ${BASE} AS build
# Compiles the thing
FROM build AS compile
# one of two
ARG A B
# not a description

FROM build
"""


def test_invalid_definition_description_is_experimental() -> None:
    assert _found(DESCRIBED, "InvalidDefinitionDescription") == []
    assert _found(EXPERIMENTAL + DESCRIBED, "InvalidDefinitionDescription") == [
        ("Comment for ARG should follow the format: `# BASE <description>`", 5),
        ("Comment for FROM should follow the format: `# compile <description>`", 9),
        ("Comment for ARG should follow the format: `# <arg_key> <description>`", 11),
    ]
    named = "# check=experimental=InvalidDefinitionDescription;skip=all\n" + DESCRIBED
    assert len(_found(named, "InvalidDefinitionDescription")) == 3      # skip does not reach it
    errors = check_dockerfile("# check=experimental=all;error=true\n# nope\nARG X\nFROM scratch\n").errors
    assert [e.message for e in errors] == ["InvalidDefinitionDescription: Comment for ARG should follow the "
                                           "format: `# X <description>`"]


# -- CopyIgnoredFile --------------------------------------------------------------------------------

IGNORING = EXPERIMENTAL + """\
FROM scratch AS other
COPY keep.txt /
FROM scratch
COPY ./secret.env keep.txt logs/today.log /dst/
ADD build/out.bin /
COPY --from=other secret.env /x
COPY ${VAR}/secret.env /y
"""


def test_copy_ignored_file() -> None:
    ignore = load_patterns(b"secret.env\nlogs\nbuild/*.bin\n")
    assert _found(IGNORING, "CopyIgnoredFile", ignore=ignore) == [
        ('Attempting to Copy file "secret.env" that is excluded by .dockerignore', 5),
        ('Attempting to Copy file "logs/today.log" that is excluded by .dockerignore', 5),
        ('Attempting to Add file "build/out.bin" that is excluded by .dockerignore', 6),
    ]
    # Not without experimental, not without a .dockerignore, not when it re-includes with "!".
    assert _found(IGNORING.removeprefix(EXPERIMENTAL), "CopyIgnoredFile", ignore=ignore) == []
    assert _found(IGNORING, "CopyIgnoredFile") == []
    assert _found(IGNORING, "CopyIgnoredFile", ignore=load_patterns(b"logs\n!logs/keep\n")) == []


@pytest.mark.parametrize("flag", ["--check", None])
def test_copy_ignored_file_from_the_cli(tmp_path: Path, flag: str | None) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(EXPERIMENTAL + "FROM scratch\nCOPY .env /\n")
    (ctx / ".dockerignore").write_text(".env\n")
    (ctx / ".env").write_text("x")
    h = Hoist(tmp_path)
    r = h("build", *([flag] if flag else []), str(ctx), ok=False)
    assert 'WARN: CopyIgnoredFile: Attempting to Copy file ".env" that is excluded by .dockerignore (line 3)' in r.err \
        or (flag is None and "CopyIgnoredFile: Attempting to Copy file \".env\"" in r.err)


def test_undefined_var_in_a_build_knows_the_base_images_env(tmp_path: Path) -> None:
    from tests.images import busybox_image

    h = Hoist(tmp_path)
    busybox_image(h.images)
    ctx = tmp_path / "b"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nENV P=$PATH X=$NOT_IN_BUSYBOX\n")
    r = h("build", "-t", "uv:1", str(ctx))
    assert r.err.count("UndefinedVar") == 1
    assert "WARN: UndefinedVar: Usage of undefined variable '$NOT_IN_BUSYBOX' (line 2)" in r.err
    assert "UndefinedVar" not in h("build", "--check", str(ctx)).err     # --check cannot know busybox's ENV
    (ctx / "Dockerfile").write_text("# check=error=true\nFROM busybox\nENV X=$NOT_IN_BUSYBOX\n")
    r = h("build", "-t", "uv:2", str(ctx), ok=False)
    assert r.code == 1 and "Dockerfile:3: UndefinedVar: Usage of undefined variable '$NOT_IN_BUSYBOX'" in r.err
    tags = [line.split()[:2] for line in h("images").out.splitlines()[1:]]
    assert ["uv", "1"] in tags and ["uv", "2"] not in tags  # familiar names, as docker images shows them
    assert "writing image" not in r.err
