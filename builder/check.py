"""``hoist build --check``: every error a build would hit before running anything.

Parse and type the Dockerfile, resolve the stage graph for the target, then dispatch the
stages the target needs (``builder.dispatch``) with a backend that runs nothing. The base
images' own ENV is unknown here, so a ``${VAR?}`` check that could be satisfied by the image is
not reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from builder.dispatch import (
    CheckBackend,
    StageState,
    check_digest,
    check_port_spec,
    check_signal,
    dispatch_stage,
    start_stage,
)
from builder.dockerfile import Dockerfile, parse_dockerfile_collecting
from builder.dockerignore import PatternMatcher
from builder.errors import DockerfileError
from builder.lint import BuildCheck, apply_checks, copy_ignored_files
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
    checks: list[BuildCheck] = field(default_factory=list)   # the build checks found (builder/lint.py)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_dockerfile(text: str | bytes, *, target: str | None = None, build_args: Mapping[str, str] | None = None,
                     platform: str | None = None, ignore: PatternMatcher | None = None) -> CheckReport:
    """Check a Dockerfile as a build of ``target`` would; never raises DockerfileError.
    ``ignore``: the context's ``.dockerignore`` patterns (for CopyIgnoredFile)."""
    dockerfile, errors = parse_dockerfile_collecting(text)
    report = CheckReport(errors=errors, dockerfile=dockerfile)
    if dockerfile is None or errors:
        return report
    report.warnings = list(dockerfile.warnings)
    graph, graph_errors = build_graph_collecting(dockerfile, target=target, build_args=build_args, platform=platform)
    report.graph = graph
    dispatched: list[BuildCheck] = []
    report.errors += graph_errors
    if graph is not None and not graph_errors:
        errors, found = _dispatch_errors(graph)
        dispatched += found
        report.errors += errors
    if ignore is not None:
        dispatched += copy_ignored_files(dockerfile, ignore)
    apply_checks(report, dispatched)  # BuildKit's build checks (builder/lint.py): warnings, or errors
    report.errors.sort(key=lambda e: e.line or 0)
    return report


def _dispatch_errors(graph: BuildGraph) -> tuple[list[DockerfileError], list[BuildCheck]]:
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
    return errors, [check for state in done.values() for check in state.lint]
