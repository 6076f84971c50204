"""builder/lint.py: BuildKit's build checks, rule by rule, and the ``# check=`` directive."""

from __future__ import annotations

import pytest

from builder.check import check_dockerfile
from builder.lint import BuildCheck


def _checks(text: str) -> list[tuple[str, int | None]]:
    """Both passes: the static one (lint) and the rules the dispatcher checks with the stage's state."""
    return [(c.rule, c.line) for c in check_dockerfile(text).checks]


CLEAN = """\
ARG BASE=busybox:1.36
FROM ${BASE} AS build
ENV A=1 B=2
WORKDIR /src
EXPOSE 80/tcp 53/udp
CMD ["sh"]
FROM build
"""


def test_a_clean_dockerfile_has_no_findings() -> None:
    assert _checks(CLEAN) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("FROM busybox\nCMD echo hi\n", [("JSONArgsRecommended", 2)]),
    ("FROM busybox\nENTRYPOINT run.sh\n", [("JSONArgsRecommended", 2)]),
    ("FROM busybox AS scratch\n", [("ReservedStageName", 1)]),
    ("FROM busybox AS context\n", [("ReservedStageName", 1)]),
    ("FROM busybox AS Build\n", [("StageNameCasing", 1)]),
    ("FROM busybox as build\n", [("FromAsCasing", 1)]),
    ("from busybox AS build\n", [("FromAsCasing", 1)]),
    ("FROM busybox\nrun true\nRUN true\n", [("ConsistentInstructionCasing", 2)]),
    ("from busybox\nrun true\nRUN true\n", [("ConsistentInstructionCasing", 3)]),
    ("FROM busybox\nRun true\n", [("ConsistentInstructionCasing", 2)]),
    ("FROM busybox\nARG GITHUB_TOKEN\nENV DB_PASSWORD=x\n",
     [("SecretsUsedInArgOrEnv", 2), ("SecretsUsedInArgOrEnv", 3)]),
    ("FROM busybox\nARG PUBLIC_KEY\nARG KEYBOARD\nARG MONKEY\n", []),
    ("FROM busybox\nENV name value\n", [("LegacyKeyValueFormat", 2)]),
    ("FROM busybox\nMAINTAINER me\n", [("MaintainerDeprecated", 2)]),
    ("FROM busybox:${TAG}\n", [("UndefinedArgInFrom", 1)]),
    ("ARG TAG\nFROM busybox:${TAG}\n", [("InvalidDefaultArgInFrom", 2)]),
    ("ARG TAG=1\nFROM busybox:${TAG}\n", []),
    ("FROM --platform=$BUILDPLATFORM busybox\n", []),
    ("FROM busybox\nWORKDIR app\n", [("WorkdirRelativePath", 2)]),
    ("FROM busybox\nWORKDIR $HOME/app\n", []),
    ("FROM busybox\nCMD [\"a\"]\nCMD [\"b\"]\n", [("MultipleInstructionsDisallowed", 2)]),
    ("FROM busybox\nENTRYPOINT [\"a\"]\nENTRYPOINT [\"b\"]\nFROM busybox\nENTRYPOINT [\"c\"]\n",
     [("MultipleInstructionsDisallowed", 2)]),
    ("FROM --platform=linux/amd64 busybox\n", [("FromPlatformFlagConstDisallowed", 1)]),
    ("FROM --platform=$TARGETPLATFORM busybox\n", [("RedundantTargetPlatform", 1)]),
    ("FROM busybox\nEXPOSE 80/TCP\n", [("ExposeProtoCasing", 2)]),
    ("FROM busybox\nEXPOSE 127.0.0.1:80:80\n", [("ExposeInvalidFormat", 2)]),
    ("FROM busybox\nEXPOSE 8080:80\n", [("ExposeInvalidFormat", 2)]),
    ("FROM busybox\nRUN echo a \\\n\n  b\n", [("NoEmptyContinuation", 2)]),
])
def test_rule(text: str, expected: list[tuple[str, int]]) -> None:
    assert _checks(text) == expected


def test_messages_are_buildkits() -> None:
    text = "FROM busybox as Build\nCMD echo hi\nENV PATH /bin\n"
    assert [str(c) for c in check_dockerfile(text).checks] == [
        "WARN: FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
        "WARN: StageNameCasing: Stage name 'Build' should be lowercase (line 1)",
        "WARN: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior "
        "related to OS signals (line 2)",
        "WARN: LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" "
        "format (line 3)",
    ]


def test_url_is_the_rule_page() -> None:
    assert BuildCheck("JSONArgsRecommended", "", 1).url == "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"


def test_skip_directive() -> None:
    body = "FROM busybox as Build\nCMD echo hi\n"
    assert [r for r, _ in _checks("# check=skip=JSONArgsRecommended,FromAsCasing\n" + body)] == ["StageNameCasing"]
    assert _checks("# check=skip=all\n" + body) == []
    assert len(_checks(body)) == 3
