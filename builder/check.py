"""``hoist build --check``: every error a build would hit before running anything.

Parse and type the Dockerfile, resolve the stage graph for the target, then walk the
stages the target needs, expanding each instruction's words in the stage's scope and
checking what BuildKit checks at dispatch (ports, signals, mounts, checksums, volumes).
The base images' own ENV is unknown here, so a ``${VAR?}`` check that could be satisfied by
the image is not reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from collections.abc import Mapping

from builder import keywords as kw
from builder.dockerfile import Dockerfile, parse_dockerfile_collecting
from builder.errors import DockerfileError, UnsetVariableError
from builder.expansion import expand_instruction
from builder.lint import apply_checks
from builder.instructions import Add, Arg, Env, Expose, Instruction, StopSignal, Volume
from builder.scope import Scope
from builder.shell_lex import ShellLex
from builder.stages import BuildGraph, build_graph_collecting


@dataclass
class CheckReport:
    """The outcome of a check: errors (sorted by line), warnings, and what was understood."""

    errors: list[DockerfileError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dockerfile: Dockerfile | None = None
    graph: BuildGraph | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def check_dockerfile(text: str | bytes, *, target: str | None = None, build_args: Mapping[str, str] | None = None,
                     platform: str | None = None) -> CheckReport:
    """Check a Dockerfile as a build of ``target`` would; never raises DockerfileError."""
    dockerfile, errors = parse_dockerfile_collecting(text)
    report = CheckReport(errors=errors, dockerfile=dockerfile)
    if dockerfile is None or errors:
        return report
    report.warnings = list(dockerfile.warnings)
    graph, graph_errors = build_graph_collecting(dockerfile, target=target, build_args=build_args, platform=platform)
    report.graph = graph
    report.errors += graph_errors
    if graph is not None and not graph_errors:
        report.errors += _dispatch_errors(graph)
    apply_checks(report)  # BuildKit's build checks (builder/lint.py): warnings, or errors under check=error=true
    report.errors.sort(key=lambda e: e.line or 0)
    return report


def _dispatch_errors(graph: BuildGraph) -> list[DockerfileError]:
    lex = ShellLex(graph.dockerfile.escape)
    final_env: dict[int, dict[str, str]] = {}
    errors: list[DockerfileError] = []
    for index in graph.order:
        node = graph.nodes[index]
        inherited = final_env.get(node.base_stage, {}) if node.base_stage is not None else {}
        scope = Scope(graph.global_args, graph.build_args, inherited)
        for instr in node.stage.instructions:
            try:
                _dispatch(instr, lex, scope)
            except UnsetVariableError:
                continue  # the base image may define it
            except DockerfileError as e:
                errors.append(e.at(instr.line, instr.end_line))
        final_env[index] = dict(scope.env)
    return errors


def _unknown_vars(lex: ShellLex, words: tuple[str, ...], scope: Scope) -> bool:
    """Whether the words use a variable the Dockerfile does not set (the image might)."""
    return any(lex.process_word_with_matches(w, scope)[2] for w in words if "$" in w)


def _dispatch(instr: Instruction, lex: ShellLex, scope: Scope) -> None:
    expanded = expand_instruction(instr, lex, scope)
    if isinstance(instr, (Expose, StopSignal, Volume)):
        raw = instr.ports if isinstance(instr, Expose) else \
            (instr.signal,) if isinstance(instr, StopSignal) else instr.paths
        if _unknown_vars(lex, raw, scope):
            return  # its value depends on the base image's ENV, unknown here
    match expanded:
        case Arg():
            for decl in expanded.args:
                scope.declare(decl.name, decl.default)
        case Env():
            for pair in expanded.pairs:
                scope.set_env(pair.key, pair.value)
        case Expose():
            for port in expanded.ports:
                check_port_spec(port)
        case StopSignal():
            check_signal(expanded.signal)
        case Volume():
            if any(not p for p in expanded.paths):
                raise DockerfileError("VOLUME specified can not be an empty string")
        case Add() if expanded.checksum:
            check_digest(expanded.checksum)


def check_port_spec(spec: str) -> None:
    """An EXPOSE port: ``port``, ``port/proto``, ``start-end[/proto]`` (nat.ParsePortSpec)."""
    port, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto.lower() not in kw.PORT_PROTOCOLS:
        raise DockerfileError(f"invalid proto: {proto}")
    container = port.rsplit(":", 1)[-1]
    host = port.rsplit(":", 2)[-2] if port.count(":") >= 1 else ""
    if not container:
        raise DockerfileError(f"no port specified: {spec}<empty>")
    _port_range(container, "containerPort", spec)
    if host:
        _port_range(host, "hostPort", spec)


def _port_range(text: str, what: str, spec: str) -> None:
    start, dash, end = text.partition("-")
    numbers = [start, end] if dash else [start]
    if not all(n.isascii() and n.isdigit() and int(n) <= 65535 for n in numbers):
        raise DockerfileError(f"invalid {what}: {text} (in EXPOSE {spec})")
    if dash and int(end) < int(start):
        raise DockerfileError(f"invalid range specified for {what}: {text}")


_SIGNALS = frozenset(
    "ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT STOP "
    "SYS TERM TRAP TSTP TTIN TTOU UNUSED URG USR1 USR2 VTALRM WINCH XCPU XFSZ RTMIN RTMAX".split()
    + [f"RTMIN+{i}" for i in range(1, 16)] + [f"RTMAX-{i}" for i in range(1, 15)]
)


def check_signal(signal: str) -> None:
    """A STOPSIGNAL value: a positive number or a name with or without SIG (signal.ParseSignal)."""
    if re.fullmatch(r"[+-]?[0-9]+", signal):
        if int(signal) == 0:
            raise DockerfileError(f"Invalid signal: {signal}")
        return
    name = signal.upper()
    name = name[3:] if name.startswith("SIG") else name
    if name not in _SIGNALS:
        raise DockerfileError(f"Invalid signal: {signal}")


_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


def check_digest(value: str) -> None:
    algorithm, sep, encoded = value.partition(":")
    expected = _DIGEST_LENGTHS.get(algorithm)
    if not sep or expected is None:
        raise DockerfileError(f"invalid checksum digest format: {value!r} (expected sha256:<hex>)")
    if len(encoded) != expected or not re.fullmatch(r"[a-f0-9]+", encoded):
        raise DockerfileError(f"invalid checksum digest length or characters: {value!r}")


