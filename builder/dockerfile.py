"""The public model of a Dockerfile: directives, global (meta) ARGs and stages.

``parse_dockerfile`` is how other tools read Dockerfiles: parse, type every instruction,
split into stages and reject what BuildKit rejects before building (unknown instructions,
bad flags, bad stage names, instructions before the first FROM, no FROM, a COPY --from
cycle). Several errors are reported together as DockerfileErrors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from builder import keywords as kw
from builder.errors import DockerfileError, raise_collected
from builder.instructions import Arg, Copy, From, Instruction, Run, from_node
from builder.parser import Directive, parse_collecting


@dataclass(frozen=True, slots=True)
class Stage:
    """One build stage: its FROM and the instructions after it.

    ``name`` is the ``AS`` name in lower case (as BuildKit keys stages), or None;
    ``base`` and ``platform`` are as written (``$VARS`` unexpanded).
    """

    index: int
    header: From
    instructions: tuple[Instruction, ...]

    @property
    def name(self) -> str | None:
        return self.header.name

    @property
    def base(self) -> str:
        return self.header.base

    @property
    def platform(self) -> str | None:
        return self.header.platform

    @property
    def line(self) -> int:
        return self.header.line

    @property
    def display_name(self) -> str:
        """The name BuildKit shows: the stage name, or ``stage-<index>``."""
        return self.name or f"stage-{self.index}"


@dataclass(frozen=True, slots=True)
class Dockerfile:
    """A parsed, typed Dockerfile. ``directives`` maps lower-case names to values."""

    directives: Mapping[str, str]
    escape: str
    meta_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    directive_list: tuple[Directive, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def stage_by_name(self, name: str) -> Stage | None:
        """The stage called ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        return next((s for s in self.stages if s.name == lowered), None)

    def find_stage(self, ref: str) -> Stage | None:
        """A stage by name, else by index (as ``COPY --from`` resolves it), else None."""
        by_name = self.stage_by_name(ref)
        if by_name is not None:
            return by_name
        index = go_atoi(ref)
        if index is not None and 0 <= index < len(self.stages):
            return self.stages[index]
        return None


def go_atoi(text: str) -> int | None:
    """``strconv.Atoi``: an optional sign and ASCII digits, else None."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body or not body.isascii() or not body.isdigit():
        return None
    return int(text)


def parse_dockerfile(text: str | bytes) -> Dockerfile:
    """Parse and type a Dockerfile; raises DockerfileError (DockerfileErrors for several)."""
    dockerfile, errors = parse_dockerfile_collecting(text)
    raise_collected(errors)
    assert dockerfile is not None
    return dockerfile


def parse_dockerfile_collecting(text: str | bytes) -> tuple[Dockerfile | None, list[DockerfileError]]:
    """Like parse_dockerfile, but returns every error found instead of raising."""
    result, errors = parse_collecting(text)
    typed: list[Instruction] = []
    for node in result.nodes:
        try:
            typed.append(from_node(node))
        except DockerfileError as e:
            errors.append(e)
    meta_args, stages, split_errors = _split_stages(typed, bool(result.nodes) and not errors)
    errors += split_errors
    directives = {d.name: d.value for d in result.directives}
    duplicates = _duplicate_names(stages)
    lint_warnings: list[str] = []
    # BuildKit reports duplicate stage names as the DuplicateStageName check: a warning that
    # fails the build only under `# check=error=true` (and not when the check is skipped).
    if duplicates and _check_fails(directives.get(kw.DIRECTIVE_CHECK), "DuplicateStageName"):
        errors += duplicates
    else:
        lint_warnings = [f"line {e.line}: DuplicateStageName: {e.message}" for e in duplicates]
    if not errors:
        errors += copy_cycles(stages)
    errors.sort(key=lambda e: e.line or 0)
    dockerfile = Dockerfile(
        directives=MappingProxyType({d.name: d.value for d in result.directives}),
        escape=result.escape, meta_args=tuple(meta_args), stages=tuple(stages),
        directive_list=result.directives, warnings=tuple(result.warnings) + tuple(lint_warnings),
    )
    return (dockerfile if stages else None), errors


def _split_stages(typed: list[Instruction], require_stage: bool
                  ) -> tuple[list[Arg], list[Stage], list[DockerfileError]]:
    meta_args: list[Arg] = []
    stages: list[Stage] = []
    errors: list[DockerfileError] = []
    current: list[Instruction] = []
    header: From | None = None
    for instr in typed:
        if isinstance(instr, From):
            if header is not None:
                stages.append(Stage(len(stages), header, tuple(current)))
            header, current = instr, []
        elif header is not None:
            current.append(instr)
        elif isinstance(instr, Arg):
            meta_args.append(instr)
        elif not errors:
            errors.append(DockerfileError(
                f"no build stage in current context: {instr.keyword} comes before the first FROM", instr.line))
    if header is not None:
        stages.append(Stage(len(stages), header, tuple(current)))
    elif require_stage and not errors:
        first_line = typed[0].line if typed else 1
        errors.append(DockerfileError("dockerfile contains no stages to build (no FROM instruction)", first_line))
    return meta_args, stages, errors


def _check_fails(value: str | None, rule: str) -> bool:
    """Whether ``# check=...`` makes lint rule ``rule`` an error (error=true, rule not skipped)."""
    if not value:
        return False
    options = {}
    for part in value.split(";"):
        key, _, arg = part.partition("=")
        options[key.strip().lower()] = arg.strip()
    skipped = {r.strip() for r in options.get("skip", "").split(",")}
    if "all" in skipped or rule in skipped:
        return False
    return options.get("error", "").lower() in ("1", "t", "true")


def _duplicate_names(stages: list[Stage]) -> list[DockerfileError]:
    seen: dict[str, Stage] = {}
    errors: list[DockerfileError] = []
    for stage in stages:
        if stage.name is None:
            continue
        first = seen.setdefault(stage.name, stage)
        if first is not stage:
            errors.append(DockerfileError(
                f"Duplicate stage name {stage.name!r}, stage names should be unique "
                f"(first defined on line {first.line})", stage.line))
    return errors


def stage_sources(stage: Stage) -> list[tuple[str, Instruction]]:
    """The ``--from`` references of a stage (COPY --from, RUN --mount from=), in order."""
    refs: list[tuple[str, Instruction]] = []
    for instr in stage.instructions:
        if isinstance(instr, Copy) and instr.from_stage:
            refs.append((instr.from_stage, instr))
        elif isinstance(instr, Run):
            refs += [(m.from_stage, instr) for m in instr.mounts if m.from_stage]
    return refs


def copy_cycles(stages: list[Stage] | tuple[Stage, ...]) -> list[DockerfileError]:
    """A cycle through ``--from`` references is an error (FROM can only point backwards)."""
    probe = Dockerfile(MappingProxyType({}), kw.DEFAULT_ESCAPE, (), tuple(stages))
    edges: dict[int, list[tuple[int, Instruction]]] = {}
    for stage in stages:
        for ref, instr in stage_sources(stage):
            target = probe.find_stage(ref)
            if target is not None:
                edges.setdefault(stage.index, []).append((target.index, instr))
    for stage in stages:
        path = _cycle_from(stage.index, edges)
        if path:
            return [DockerfileError(f"circular dependency detected on stage: {stage.display_name}", path[0].line)]
    return []


def _cycle_from(start: int, edges: dict[int, list[tuple[int, Instruction]]]) -> list[Instruction]:
    """The instructions forming a cycle back to ``start``, or [] (iterative DFS)."""
    stack: list[tuple[int, int, list[Instruction]]] = [(start, 0, [])]
    on_path = {start}
    visited: set[int] = set()
    while stack:
        node, i, via = stack[-1]
        out = edges.get(node, [])
        if i >= len(out):
            stack.pop()
            on_path.discard(node)
            visited.add(node)
            continue
        stack[-1] = (node, i + 1, via)
        dep, instr = out[i]
        if dep == start:
            return via + [instr]
        if dep in on_path or dep in visited:
            continue
        on_path.add(dep)
        stack.append((dep, 0, via + [instr]))
    return []
