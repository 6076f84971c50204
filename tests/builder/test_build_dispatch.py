"""The one dispatcher: config and history as BuildKit writes them, and its conversion-time checks
(the same for ``--check`` and a build, so they are tested here through ``check_dockerfile`` and
the dispatcher with the backend that runs nothing)."""

from __future__ import annotations

import pytest

from builder.check import check_dockerfile
from builder.dispatch import (
    CheckBackend,
    StageState,
    copy_dest,
    dispatch_stage,
    go_quote_list,
    start_stage,
)
from builder.dockerfile import parse_dockerfile
from builder.stages import build_graph
from storage.duration import format_duration


def _dispatch(text: str, build_args: dict[str, str] | None = None) -> StageState:
    graph = build_graph(parse_dockerfile(text), build_args=build_args)
    platform = {"architecture": "amd64", "os": "linux", "variant": ""}
    states: dict[int, StageState] = {}
    for index in graph.order:
        node = graph.nodes[index]
        parent = states.get(node.base_stage) if node.base_stage is not None else None
        states[index] = dispatch_stage(start_stage(graph, index, parent, CheckBackend(), platform), graph,
                                       CheckBackend())
    return states[graph.target]


def test_history_and_config_as_buildkit_writes_them() -> None:
    state = _dispatch("""\
FROM scratch
ARG V=1
ENV A=b C="d e"
LABEL k=v
RUN echo $V
COPY --chown=1:2 a b /dst/
WORKDIR rel
USER app
EXPOSE 80 53/udp
VOLUME /data
CMD echo hi
ENTRYPOINT ["/bin/app"]
STOPSIGNAL SIGTERM
SHELL ["/bin/bash", "-c"]
""", {"V": "2"})
    history = [(h["created_by"], h.get("empty_layer", False)) for h in state.history]
    assert history == [
        ("ARG V=2", True),
        ("ENV A=b C=d e", True),
        ("LABEL k=v", True),
        ("RUN |1 V=2 /bin/sh -c echo $V # buildkit", False),
        ("COPY --chown=1:2 a b /dst/ # buildkit", False),
        ("WORKDIR /rel", False),
        ("USER app", True),
        ("EXPOSE map[53/udp:{} 80/tcp:{}]", True),
        ("VOLUME [/data]", True),
        ('CMD ["/bin/sh" "-c" "echo hi"]', True),
        ('ENTRYPOINT ["/bin/app"]', True),
        ("STOPSIGNAL SIGTERM", True),
        ("SHELL [/bin/bash -c]", True),
    ]
    config = state.config
    assert config["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=b", "C=d e"]
    assert config["Cmd"] == ["/bin/sh", "-c", "echo hi"]      # set in this stage: ENTRYPOINT keeps it
    assert config["WorkingDir"] == "/rel" and config["User"] == "app"
    assert state.run_env()[-1] == "V=2"                        # declared ARGs reach RUN's env


def test_entrypoint_resets_inherited_cmd_and_stages_inherit() -> None:
    state = _dispatch('FROM scratch AS base\nCMD ["x"]\nENV E=1\nFROM base\nENTRYPOINT ["/e"]\n')
    assert state.config["Cmd"] is None and "E=1" in state.config["Env"]


@pytest.mark.parametrize("line, message", [
    ("COPY --chmod=abc a /b", "invalid chmod parameter"),
    ("COPY --chmod=u+q a /b", "invalid chmod parameter"),
    ("RUN --mount=type=bind true", 'invalid mount target "/"'),
    ("EXPOSE 80/xyz", "invalid proto"),
    ("STOPSIGNAL SIGNOPE", "Invalid signal"),
    ("ADD --checksum=sha256:abc https://x/y /y", "invalid checksum digest"),
])
def test_conversion_time_errors_with_their_line(line: str, message: str) -> None:
    report = check_dockerfile(f"FROM scratch\n{line}\n")
    assert [(e.line, message in e.message) for e in report.errors] == [(2, True)]


def test_relative_mount_target_is_against_workdir() -> None:
    assert check_dockerfile("FROM scratch\nWORKDIR /app\nRUN --mount=type=bind true\n").ok


def test_onbuild_triggers_run_first_and_are_not_inherited() -> None:
    state = _dispatch("FROM scratch AS base\nONBUILD ENV T=1\nFROM base\nENV U=2\n")
    assert [h["created_by"] for h in state.history][-2:] == ["ENV T=1", "ENV U=2"]
    assert not state.config.get("OnBuild")


def test_copy_dest_and_go_quoting() -> None:
    assert copy_dest("/app", ".") == "/app/" and copy_dest("/app", "x") == "/app/x"
    assert copy_dest("/", "/a/b/") == "/a/b/" and copy_dest("/w", "../up") == "/up"
    assert go_quote_list(["a b", 'q"']) == '["a b" "q\\""]'


def test_build_checks_warn_and_fail_under_check_error() -> None:
    text = "FROM scratch\nMAINTAINER me\nWORKDIR rel\nCMD echo hi\nSHELL [\"/bin/sh\", \"-c\"]\nENTRYPOINT run\n"
    report = check_dockerfile(text)
    assert report.ok
    assert report.warnings == [
        "WARN: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 2)",
        'WARN: WorkdirRelativePath: Relative workdir "rel" can have unexpected results if the base image changes '
        "(line 3)",
        "WARN: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior "
        "related to OS signals (line 4)",
    ]                                                          # ENTRYPOINT after SHELL is not flagged
    strict = check_dockerfile("# check=error=true\n" + text)
    assert [e.line for e in strict.errors] == [3, 4, 5]
    skipped = check_dockerfile("# check=skip=JSONArgsRecommended,WorkdirRelativePath;error=true\n" + text)
    assert [e.message.split(":")[0] for e in skipped.errors] == ["MaintainerDeprecated"]


def test_healthcheck_history_is_current_buildkits_struct_formatting() -> None:
    """Go's %+v of the HealthcheckConfig value (BuildKit's TestDispatchHealthcheckHistory shape)."""
    state = _dispatch("""\
FROM scratch
HEALTHCHECK --interval=1s --timeout=10s --start-period=3s --start-interval=100ms --retries=5 CMD exit 0
HEALTHCHECK NONE
HEALTHCHECK --interval=1m30s --timeout=1500us CMD ["/bin/check", "a b"]
""")
    assert [h["created_by"] for h in state.history] == [
        "HEALTHCHECK {Test:[CMD-SHELL exit 0] Interval:1s Timeout:10s StartPeriod:3s StartInterval:100ms Retries:5}",
        "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}",
        "HEALTHCHECK {Test:[CMD /bin/check a b] Interval:1m30s Timeout:1.5ms StartPeriod:0s StartInterval:0s "
        "Retries:0}",
    ]
    assert all(h["empty_layer"] for h in state.history)


@pytest.mark.parametrize("ns, text", [(0, "0s"), (999, "999ns"), (1_500, "1.5µs"), (2_000_000, "2ms"),
                                      (1_000_000_000, "1s"), (90_500_000_000, "1m30.5s"),
                                      (3_600_000_000_000, "1h0m0s")])
def test_go_duration_strings(ns: int, text: str) -> None:
    assert format_duration(ns) == text


def test_scratch_config_has_working_dir_root_and_image_bases_keep_theirs() -> None:
    assert _dispatch("FROM scratch\n").config["WorkingDir"] == "/"
    assert _dispatch("FROM scratch\nWORKDIR /app\n").config["WorkingDir"] == "/app"


def test_arg_history_is_the_resolved_value() -> None:
    """Current BuildKit's dispatchArg writes what the ARG resolves to: the --build-arg, else the
    expanded default, else the global ARG's value; without any, the bare name."""
    state = _dispatch("""\
ARG G=global
FROM scratch
ARG G
ARG D=default
ARG O=declared
ARG N
ENV E=x
ARG X=$E-y
""", {"O": "cli"})
    assert [h["created_by"] for h in state.history] == [
        "ARG G=global", "ARG D=default", "ARG O=cli", "ARG N", "ENV E=x", "ARG X=x-y"]


def test_copy_link_with_chown_by_name_is_rejected_at_conversion() -> None:
    """As current BuildKit: --link copies onto scratch, where names cannot be looked up (ids and
    root can); with --chmod, --link is an ordinary copy and names are fine."""
    bad = check_dockerfile("FROM scratch\nCOPY --link --chown=app a /x/\nADD --link --chown=1:staff a /y/\n")
    assert [e.line for e in bad.errors] == [2, 3]
    assert all("--link" in e.message for e in bad.errors)
    ok = check_dockerfile("FROM scratch\nCOPY --link --chown=1000:root a /x/\nCOPY --link --chmod=600 --chown=app a /y/\n"
                          "COPY --chown=app a /z/\n")
    assert ok.errors == []
