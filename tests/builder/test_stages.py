"""The stage graph: names and indexes, --target, global ARGs, dependencies, skipped stages."""

from __future__ import annotations

import pytest

from builder import DockerfileError, parse_dockerfile
from builder.check import check_dockerfile
from builder.stages import build_graph

MULTI = """\
ARG GO=1.22
ARG BASE_IMAGE=alpine:3.20
FROM golang:${GO} AS build
RUN go build
FROM build AS test
RUN go test
FROM ${BASE_IMAGE} AS tools
RUN apk add curl
FROM scratch
COPY --from=build /out /app
COPY --from=2 /usr/bin/curl /curl
COPY --from=busybox:1.36 /bin/busybox /busybox
"""


def test_stages_by_index_and_name() -> None:
    df = parse_dockerfile(MULTI)
    assert [s.name for s in df.stages] == ["build", "test", "tools", None]
    assert [s.base for s in df.stages] == ["golang:${GO}", "build", "${BASE_IMAGE}", "scratch"]
    assert df.find_stage("BUILD") is df.stages[0]
    assert df.find_stage("2") is df.stages[2]
    assert df.find_stage("busybox:1.36") is None
    assert df.stages[3].display_name == "stage-3"


def test_default_target_is_last_stage_and_skips_unused() -> None:
    graph = build_graph(parse_dockerfile(MULTI))
    assert graph.target == 3
    assert graph.order == (0, 2, 3)  # "test" is not needed
    assert graph.nodes[0].base == "golang:1.22"
    assert graph.nodes[3].deps == (0, 2)
    assert graph.nodes[3].images == (("busybox:1.36", 12),)


def test_target_selects_the_stages_it_needs() -> None:
    graph = build_graph(parse_dockerfile(MULTI), target="Test")
    assert graph.order == (0, 1)
    assert graph.nodes[1].base_stage == 0


def test_unknown_target_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="target stage 'nope' could not be found"):
        build_graph(parse_dockerfile(MULTI), target="nope")


def test_build_args_override_global_defaults() -> None:
    graph = build_graph(parse_dockerfile(MULTI), build_args={"GO": "1.23", "BASE_IMAGE": "debian"})
    assert graph.nodes[0].base == "golang:1.23"
    assert graph.nodes[2].base == "debian"


def test_global_args_see_earlier_globals_and_platform_args() -> None:
    df = parse_dockerfile("ARG A=x\nARG B=${A}y\nFROM img:${B}-${TARGETARCH}\n")
    graph = build_graph(df, platform="linux/arm64")
    assert graph.nodes[0].base == "img:xy-arm64"


def test_from_platform_is_expanded_with_predefined_args() -> None:
    df = parse_dockerfile("FROM --platform=$BUILDPLATFORM golang AS b\nFROM --platform=${TARGETPLATFORM} alpine\n")
    graph = build_graph(df, platform="linux/arm/v7")
    assert graph.nodes[1].platform == "linux/arm/v7"
    assert graph.nodes[0].platform and graph.nodes[0].platform.startswith("linux/")


def test_bad_platform_is_an_error_on_the_from_line() -> None:
    report = check_dockerfile("FROM alpine\nFROM --platform=linux//x alpine\n")
    assert [(e.line, "failed to parse platform" in e.message) for e in report.errors] == [(2, True)]


def test_from_names_only_earlier_stages() -> None:
    # "FROM later" before a stage called "later" is an image, as in BuildKit.
    df = parse_dockerfile("FROM later AS first\nFROM alpine AS later\nFROM first\n")
    graph = build_graph(df)
    assert graph.nodes[0].base_stage is None
    assert graph.nodes[2].base_stage == 0
    assert graph.order == (0, 2)


def test_copy_from_a_later_stage_is_a_dependency() -> None:
    df = parse_dockerfile("FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\n")
    assert build_graph(df, target="a").order == (1, 0)


def test_copy_from_bad_index() -> None:
    report = check_dockerfile("FROM alpine\nFROM alpine\nCOPY --from=7 /a /b\n")
    assert [(e.line, e.message) for e in report.errors] == [(3, "invalid stage index 7")]


def test_blank_base_after_expansion() -> None:
    report = check_dockerfile("ARG IMG\nFROM ${IMG}\n")
    assert [(e.line, "should not be blank" in e.message) for e in report.errors] == [(2, True)]


def test_invalid_reference_only_for_needed_stages() -> None:
    text = "FROM Not_Valid AS unused\nFROM alpine\n"
    assert check_dockerfile(text).ok
    report = check_dockerfile(text, target="unused")
    assert report.errors[0].line == 1 and "must be lowercase" in report.errors[0].message


@pytest.mark.parametrize("ref", [
    "alpine", "alpine:3.20", "library/alpine", "ghcr.io/org/app:1.0", "localhost:5000/x/y:tag",
    "registry.local:5000/team/app:1.4", "mcr.microsoft.com/windows/servercore:ltsc2022",
    "alpine@sha256:" + "a" * 64, "a__b/c-d.e:TAG_1", "MyRegistry/app",
])
def test_valid_references(ref: str) -> None:
    assert check_dockerfile(f"FROM {ref}\n").ok


@pytest.mark.parametrize("ref", ["Alpine", "alpine:", "alpine::1", "-x", "a/B", "f" * 64, "x@sha256:short"])
def test_invalid_references(ref: str) -> None:
    assert not check_dockerfile(f"FROM {ref}\n").ok


def test_global_arg_is_visible_in_stage_only_after_redeclaration() -> None:
    text = "ARG V=1\nFROM alpine\nENV BEFORE=${V:-unset}\nARG V\nENV AFTER=${V}\n"
    report = check_dockerfile(text)
    assert report.ok
    # The check walks the stage with a Scope; replay it to see the values.
    from builder.expansion import expand_instruction
    from builder.instructions import Arg, Env
    from builder.scope import Scope
    from builder.shell_lex import ShellLex
    assert report.graph is not None
    scope = Scope(report.graph.global_args, {})
    seen = {}
    for instr in report.graph.nodes[0].stage.instructions:
        expanded = expand_instruction(instr, ShellLex(), scope)
        if isinstance(expanded, Arg):
            for decl in expanded.args:
                scope.declare(decl.name, decl.default)
        elif isinstance(expanded, Env):
            seen.update({p.key: p.value for p in expanded.pairs})
            for p in expanded.pairs:
                scope.set_env(p.key, p.value)
    assert seen == {"BEFORE": "unset", "AFTER": "1"}


def test_predefined_proxy_and_platform_args_can_be_declared() -> None:
    from builder.scope import Scope
    graph = build_graph(parse_dockerfile("FROM alpine\n"), platform="linux/arm64")
    scope = Scope(graph.global_args, {"HTTP_PROXY": "http://proxy:3128"})
    scope.declare("TARGETARCH", None)
    scope.declare("HTTP_PROXY", None)
    scope.declare("BUILDOS", None)
    assert (scope["TARGETARCH"], scope["HTTP_PROXY"], scope["BUILDOS"]) == ("arm64", "http://proxy:3128", "linux")
    assert "TARGETOS" not in scope  # not declared in the stage


def test_env_wins_over_arg_and_undeclared_arg_is_unset() -> None:
    from builder.scope import Scope
    scope = Scope({}, {"X": "from-build-arg"})
    scope.declare("X", "default")
    assert scope["X"] == "from-build-arg"
    scope.set_env("X", "from-env")
    assert scope["X"] == "from-env"
    scope.declare("NOVALUE", None)
    assert "NOVALUE" not in scope and dict(scope) == {"X": "from-env"}


def test_stage_inherits_env_from_parent_stage_in_check() -> None:
    text = "FROM alpine AS a\nENV P=80\nFROM a\nEXPOSE ${P}\n"
    assert check_dockerfile(text).ok
    assert not check_dockerfile("FROM alpine AS a\nENV P=x\nFROM a\nEXPOSE ${P}\n").ok


def test_duplicate_stage_names_warn_as_buildkit_does() -> None:
    """BuildKit's DuplicateStageName check warns (the build goes on) unless # check=error=true."""
    from builder import parse_dockerfile
    df = parse_dockerfile("FROM alpine AS build\nRUN true\nFROM debian AS build\n")
    assert [s.name for s in df.stages] == ["build", "build"]
    assert any("DuplicateStageName" in w and "line 3" in w for w in df.warnings)
    skipped = parse_dockerfile("# check=skip=DuplicateStageName;error=true\nFROM alpine AS b\nFROM debian AS b\n")
    assert len(skipped.stages) == 2
