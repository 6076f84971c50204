"""``hoist build --check``: every error a build would hit before running anything.

Parse and type the Dockerfile, resolve the stage graph for the target, then dispatch the
stages the target needs (``builder.dispatch``) with a backend that runs nothing. The base
images' own ENV is unknown here, so a ``${VAR?}`` check that could be satisfied by the image is
not reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping

from builder import keywords as kw
from builder.dispatch import CheckBackend, StageState, check_digest, check_port_spec, check_signal, \
    dispatch_stage, start_stage
from builder.dockerfile import Dockerfile, parse_dockerfile_collecting
from builder.errors import DockerfileError
from builder.stages import BuildGraph, build_graph_collecting
from storage.platform import Platform

__all__ = ["CheckReport", "check_digest", "check_dockerfile", "check_port_spec", "check_signal"]


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
        errors, lint = _dispatch_errors(graph)
        report.errors += errors
        directive = dockerfile.directives.get(kw.DIRECTIVE_CHECK)
        for rule, message, line in sorted(set(lint), key=lambda item: item[2]):
            action = rule_action(directive, rule)
            if action == "error":
                report.errors.append(DockerfileError(f"{rule}: {message}", line))
            elif action == "warn":
                report.warnings.append(f"line {line}: {rule}: {message}")
    report.errors.sort(key=lambda e: e.line or 0)
    return report


def rule_action(directive: str | None, rule: str) -> str:
    """What ``# check=skip=...;error=...`` makes of a build check: "skip", "warn" or "error"."""
    options: dict[str, str] = {}
    for part in (directive or "").split(";"):
        key, _, arg = part.partition("=")
        options[key.strip().lower()] = arg.strip()
    skipped = {r.strip() for r in options.get("skip", "").split(",")}
    if "all" in skipped or rule in skipped:
        return "skip"
    return "error" if options.get("error", "").lower() in ("1", "t", "true") else "warn"


def _dispatch_errors(graph: BuildGraph) -> tuple[list[DockerfileError], list[tuple[str, str, int]]]:
    backend = CheckBackend()
    host = Platform.host()
    platform = {"architecture": host.architecture, "os": host.os, "variant": host.variant or ""}
    done: dict[int, StageState] = {}
    errors: list[DockerfileError] = []
    for index in graph.order:
        node = graph.nodes[index]
        parent = done.get(node.base_stage) if node.base_stage is not None else None
        state = start_stage(graph, index, parent, backend, platform)
        done[index] = dispatch_stage(state, graph, backend, errors)
    lint = [item for state in done.values() for item in state.lint]
    return errors, lint
