"""The stage graph: which stage builds on which, what ``--target`` needs, in what order.

A stage depends on its base when ``FROM`` names an earlier stage (after expanding the
global ARGs), and on every stage a ``COPY --from`` or ``RUN --mount=from=`` names (by name,
else by index; anything else is an image). Building a target needs only the stages it
reaches; the others are skipped, as BuildKit skips them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from builder import keywords as kw
from builder.dockerfile import Dockerfile, Stage, go_atoi, stage_sources
from builder.errors import DockerfileError, ExpansionError, raise_collected
from builder.platforms import parse_platform, platform_args
from builder.reference import check_reference
from builder.shell_lex import ShellLex
from storage.platform import Platform


@dataclass(frozen=True, slots=True)
class StageNode:
    """A stage with its FROM resolved: ``base`` expanded, ``base_stage`` if it is a stage."""

    stage: Stage
    base: str
    base_stage: int | None
    platform: str | None
    deps: tuple[int, ...]
    images: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class BuildGraph:
    """Every stage resolved, the target, and the stages to build in order."""

    dockerfile: Dockerfile
    nodes: tuple[StageNode, ...]
    target: int
    order: tuple[int, ...]
    global_args: Mapping[str, str] = field(default_factory=dict)
    build_args: Mapping[str, str] = field(default_factory=dict)

    @property
    def target_stage(self) -> Stage:
        return self.nodes[self.target].stage

    def needed(self) -> frozenset[int]:
        return frozenset(self.order)

    def image_stages(self) -> list[int]:
        """The target and the stages it is built FROM (nearest first): those whose layers are
        the image's."""
        out: list[int] = []
        index: int | None = self.target
        while index is not None and index not in out:
            out.append(index)
            index = self.nodes[index].base_stage
        return out


def global_args(dockerfile: Dockerfile, build_args: Mapping[str, str], target_platform: Platform,
                build_platform: Platform) -> dict[str, str]:
    """The variables FROM lines see: platform args, then the global ARGs in order."""
    lex = ShellLex(dockerfile.escape)
    env = platform_args("TARGET", target_platform) | platform_args("BUILD", build_platform)
    for arg in dockerfile.meta_args:
        for decl in arg.args:
            try:
                name = lex.process_word(decl.name, env)
                default = None if decl.default is None else lex.process_word(decl.default, env)
            except ExpansionError as e:
                raise e.at(arg.line) from None
            value = build_args.get(name, default)
            if value is not None:
                env[name] = value
            else:
                env.pop(name, None)
    return env


def build_graph(dockerfile: Dockerfile, *, target: str | None = None, build_args: Mapping[str, str] | None = None,
                platform: str | None = None) -> BuildGraph:
    """Resolve every stage and pick what ``target`` needs; raises DockerfileError."""
    graph, errors = build_graph_collecting(dockerfile, target=target, build_args=build_args, platform=platform)
    raise_collected(errors)
    assert graph is not None
    return graph


def build_graph_collecting(dockerfile: Dockerfile, *, target: str | None = None,
                           build_args: Mapping[str, str] | None = None,
                           platform: str | None = None) -> tuple[BuildGraph | None, list[DockerfileError]]:
    build_args = dict(build_args or {})
    errors: list[DockerfileError] = []
    host = Platform.host()
    try:
        target_platform = parse_platform(platform) if platform else host
        env = global_args(dockerfile, build_args, target_platform, host)
    except DockerfileError as e:
        return None, [e]
    lex = ShellLex(dockerfile.escape)
    nodes: list[StageNode] = []
    names: dict[str, int] = {}
    for stage in dockerfile.stages:
        try:
            nodes.append(_resolve(stage, lex, env, names, dockerfile))
        except DockerfileError as e:
            errors.append(e.at(stage.line))
            # An empty base marks the stage as unresolved, so it is not checked again.
            nodes.append(StageNode(stage, "", None, None, ()))
        if stage.name is not None:
            names[stage.name] = stage.index
    target_index = _target(dockerfile, target)
    if target_index is None:
        errors.append(DockerfileError(f"target stage {target!r} could not be found", None))
        return None, errors
    order = _build_order(nodes, target_index)
    errors += _check_bases(nodes, order)
    graph = BuildGraph(dockerfile, tuple(nodes), target_index, order,
                       MappingProxyType(env), MappingProxyType(build_args))
    return graph, errors


def _resolve(stage: Stage, lex: ShellLex, env: Mapping[str, str], earlier: Mapping[str, int],
             dockerfile: Dockerfile) -> StageNode:
    base = lex.process_word(stage.base, env)
    if not base:
        raise DockerfileError(f"base name ({stage.base}) should not be blank")
    platform = None
    if stage.platform is not None:
        platform = lex.process_word(stage.platform, env)
        parse_platform(platform)
    deps: list[int] = []
    images: list[tuple[str, int]] = []
    for ref, instr in stage_sources(stage):
        index = _source_index(ref, dockerfile, instr.line)
        if index is None:
            images.append((ref, instr.line))
        elif index not in deps:
            deps.append(index)
    # FROM only sees stages defined before it, and matches names exactly (they are lower case).
    return StageNode(stage, base, earlier.get(base), platform, tuple(deps), tuple(images))


def _source_index(ref: str, dockerfile: Dockerfile, line: int) -> int | None:
    named = dockerfile.stage_by_name(ref)
    if named is not None:
        return named.index
    index = go_atoi(ref)
    if index is None:
        return None
    if not 0 <= index < len(dockerfile.stages):
        raise DockerfileError(f"invalid stage index {index}", line)
    return index


def _target(dockerfile: Dockerfile, target: str | None) -> int | None:
    if not target:
        return len(dockerfile.stages) - 1
    stage = dockerfile.stage_by_name(target)
    return stage.index if stage is not None else None


def _build_order(nodes: list[StageNode], target: int) -> tuple[int, ...]:
    """Stages the target reaches, dependencies first (iterative post-order, ties by index)."""
    order: list[int] = []
    done: set[int] = set()
    entered: set[int] = set()
    stack: list[tuple[int, bool]] = [(target, False)]
    while stack:
        index, expanded = stack.pop()
        if index in done:
            continue
        if expanded:
            done.add(index)
            order.append(index)
            continue
        if index in entered:
            continue  # a cycle; parse_dockerfile reports those
        entered.add(index)
        stack.append((index, True))
        node = nodes[index]
        needs = list(node.deps) + ([node.base_stage] if node.base_stage is not None else [])
        stack += [(dep, False) for dep in sorted(set(needs), reverse=True) if dep not in done]
    return tuple(order)


def _check_bases(nodes: list[StageNode], order: tuple[int, ...]) -> list[DockerfileError]:
    """Image references of the stages to build must be valid (others are never pulled)."""
    errors: list[DockerfileError] = []
    for index in order:
        node = nodes[index]
        refs = ([(node.base, node.stage.line)] if node.base_stage is None else []) + list(node.images)
        for ref, line in refs:
            if ref in (kw.SCRATCH, ""):
                continue
            try:
                check_reference(ref)
            except DockerfileError as e:
                errors.append(e.at(line))
    return errors
