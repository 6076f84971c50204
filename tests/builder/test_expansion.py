"""Which instructions expand which words (BuildKit's rules), and dispatch-time checks."""

from __future__ import annotations

import pytest

from builder import keywords as kw
from builder import parse_dockerfile
from builder.check import check_dockerfile, check_port_spec, check_signal
from builder.errors import DockerfileError
from builder.expansion import EXPANDS, expand_instruction
from builder.instructions import Instruction
from builder.shell_lex import ShellLex

ENV = {"PS": "80 443", "V": "val", "P": "8080", "U": "app", "D": "/data", "E": "", "S": "SIGTERM"}


def _expand(line: str, escape: str = "\\") -> Instruction:
    prefix = f"# escape={escape}\n" if escape != "\\" else ""
    df = parse_dockerfile(f"{prefix}FROM scratch\n{line}\n")
    return expand_instruction(df.stages[0].instructions[0], ShellLex(escape), ENV)


# (instruction line, attribute, expected value after expansion)
RULES: list[tuple[str, str, object]] = [
    ("COPY $V/a ${D} ", "sources", ("val/a",)),
    ("COPY $V/a ${D}", "dest", "/data"),
    ("COPY --chown=$U:$U a b", "chown", "app:app"),
    ("COPY --chmod=${E:-0644} a b", "chmod", "0644"),
    ("COPY --from=$V a b", "from_stage", "$V"),
    ("ADD --checksum=sha256:${V} a b", "checksum", "sha256:val"),
    ("ADD https://x/$V.tgz /opt/", "sources", ("https://x/val.tgz",)),
    ('ENV A=$V B="${V} x" C=\'$V\'', "pairs", None),
    ("ENV legacy $V and \"quoted\"", "pairs", None),
    ("LABEL $V=$V", "pairs", None),
    ("ARG X=$V Y", "args", None),
    ("EXPOSE $P ${P}/udp", "ports", ("8080", "8080/udp")),
    ("EXPOSE $PS", "ports", ("80", "443")),
    ("VOLUME $D /logs", "paths", ("/data", "/logs")),
    ('VOLUME ["$D"]', "paths", ("/data",)),
    ("USER $U:${U}", "user", "app:app"),
    ("WORKDIR $D/app", "path", "/data/app"),
    ("WORKDIR 'literal $D'", "path", "literal $D"),
    ("STOPSIGNAL $S", "signal", "SIGTERM"),
    ("RUN echo $V", "command", ("echo $V",)),
    ('RUN ["echo", "$V"]', "command", ("echo", "$V")),
    ("CMD echo $V", "command", ("echo $V",)),
    ("ENTRYPOINT $V", "command", ("$V",)),
    ('SHELL ["$V"]', "shell", ("$V",)),
    ("HEALTHCHECK CMD $V", "test", ("CMD-SHELL", "$V")),
    ("MAINTAINER $V", "maintainer", "$V"),
    ("ONBUILD RUN $V", "expression", "RUN $V"),
    ("RUN --mount=type=cache,target=$D,id=${V} true", "mounts", None),
]


@pytest.mark.parametrize(("line", "attr", "expected"), RULES, ids=[r[0] for r in RULES])
def test_expansion_rules(line: str, attr: str, expected: object) -> None:
    instr = _expand(line)
    value = getattr(instr, attr)
    if attr == "pairs":
        value = tuple((p.key, p.value) for p in value)
        expected = {
            'ENV A=$V B="${V} x" C=\'$V\'': (("A", "val"), ("B", "val x"), ("C", "$V")),
            'ENV legacy $V and "quoted"': (("legacy", 'val and quoted'),),
            "LABEL $V=$V": (("val", "val"),),
        }[line]
    elif attr == "args":
        value = tuple((a.name, a.default) for a in value)
        expected = (("X", "val"), ("Y", None))
    elif attr == "mounts":
        value = (value[0].target, value[0].cache_id)
        expected = ("/data", "val")
    assert value == expected


def test_every_instruction_has_an_expansion_rule() -> None:
    assert set(EXPANDS) == set(kw.INSTRUCTIONS)


def test_heredoc_bodies_expand_unless_delimiter_quoted() -> None:
    df = parse_dockerfile("FROM scratch\nCOPY <<A <<'B' /d/\n$V\nA\n$V\nB\nRUN <<EOF\necho $V\nEOF\n")
    copy, run = df.stages[0].instructions
    expanded = expand_instruction(copy, ShellLex(), ENV)
    assert [c.data for c in expanded.contents] == ["val\n", "$V\n"]
    assert expand_instruction(run, ShellLex(), ENV).heredocs[0].content == "echo $V\n"


def test_backtick_escape_in_expansion() -> None:
    assert _expand("WORKDIR C:\\app`$V", escape="`").path == "C:\\app$V"


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("FROM alpine\nWORKDIR ${D\n", 2, "missing '}'"),
    ("FROM alpine\nENV A=${B:x}\n", 2, "unsupported modifier"),
    ("FROM alpine\nEXPOSE 80/tcpx\n", 2, "invalid proto"),
    ("FROM alpine\nEXPOSE 99999\n", 2, "invalid containerPort"),
    ("FROM alpine\nEXPOSE 90-80\n", 2, "invalid range"),
    ("FROM alpine\nSTOPSIGNAL SIGNOPE\n", 2, "Invalid signal"),
    ("FROM alpine\nSTOPSIGNAL 0\n", 2, "Invalid signal"),
    ("FROM alpine\nENV EMPTY=\nVOLUME $EMPTY\n", 3, "can not be an empty string"),
    ("FROM alpine\nADD --checksum=md5:abc http://x/y /z\n", 2, "invalid checksum"),
    ("FROM alpine\nARG T=volume\nRUN --mount=type=$T,target=/x true\n", 3, "unsupported mount type"),
    ("FROM alpine\nCOPY \\\n  ${X /a /b\n", 2, "missing '}'"),
])
def test_dispatch_errors_carry_the_instruction_line(text: str, line: int, fragment: str) -> None:
    report = check_dockerfile(text)
    assert report.errors, "expected an error"
    assert (report.errors[0].line, fragment in report.errors[0].message) == (line, True), report.errors


def test_arg_used_before_declared_expands_to_empty() -> None:
    assert check_dockerfile("FROM alpine\nEXPOSE 80${LATER}\nARG LATER=1\n").ok


def test_required_variable_the_image_may_set_is_not_reported() -> None:
    assert check_dockerfile("FROM alpine\nWORKDIR ${HOME:?needs HOME}\n").ok


def test_unreachable_stage_is_not_dispatched() -> None:
    text = "FROM alpine AS broken\nWORKDIR ${oops\nFROM alpine\n"
    assert check_dockerfile(text).ok
    assert not check_dockerfile(text, target="broken").ok


@pytest.mark.parametrize("spec", ["80", "80/tcp", "53/UDP", "132/sctp", "8000-8010", "8000-8010/udp", "0.0.0.0:80:80"])
def test_port_specs(spec: str) -> None:
    check_port_spec(spec)


@pytest.mark.parametrize("signal", ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-1", "sigwinch"])
def test_signals(signal: str) -> None:
    check_signal(signal)


def test_bad_signal() -> None:
    with pytest.raises(DockerfileError):
        check_signal("SIGBOGUS")


@pytest.mark.parametrize("line", ["STOPSIGNAL $SIG", "EXPOSE ${PORT}/tcp", "VOLUME $DATA"])
def test_values_from_the_image_env_are_not_judged(line: str) -> None:
    assert check_dockerfile(f"FROM alpine\n{line}\n").ok


def test_values_the_dockerfile_sets_are_judged() -> None:
    assert not check_dockerfile("FROM alpine\nENV SIG=\nSTOPSIGNAL $SIG\n").ok
