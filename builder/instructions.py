"""Typed instructions: one frozen dataclass per Dockerfile instruction, flags checked.

``from_node`` turns a parser node into its instruction, still unexpanded (``$VAR`` stays
as written; ``builder.expansion`` expands at dispatch). Every instruction has ``keyword``
(upper case) and ``loc``: ``line`` and ``end_line`` (1-based) and ``original`` (the joined
line), also readable as the instruction's own attributes.
Errors are DockerfileError located at the instruction's first line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from builder import keywords as kw
from builder.errors import DockerfileError
from builder.flags import Kind, ParsedFlags, parse_flags
from builder.mounts import Mount, parse_mount
from builder.parser.heredoc import parse_marker
from builder.parser.nodes import Heredoc, Node
from storage.duration import DurationError, parse_duration


@dataclass(frozen=True, slots=True)
class Loc:
    """Where an instruction is: its first and last line (1-based) and the joined line."""

    line: int
    end_line: int
    original: str
    comments: tuple[str, ...] = ()      # the comment lines right above it (a description)


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    """Fields every instruction has."""

    keyword: ClassVar[str] = ""
    loc: Loc

    @property
    def line(self) -> int:
        return self.loc.line

    @property
    def end_line(self) -> int:
        return self.loc.end_line

    @property
    def original(self) -> str:
        return self.loc.original


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class ArgDecl:
    """One name of an ARG line; ``default`` is None for ``ARG name`` without ``=``."""

    name: str
    default: str | None = None


@dataclass(frozen=True, slots=True)
class SourceContent:
    """A heredoc used as a COPY/ADD source: written to a file named ``name``."""

    name: str
    data: str
    expand: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class From(Instruction):
    keyword: ClassVar[str] = kw.FROM
    base: str
    name: str | None = None
    platform: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Run(Instruction):
    """``command`` is the JSON array, or one shell string when ``prepend_shell``."""

    keyword: ClassVar[str] = kw.RUN
    command: tuple[str, ...]
    prepend_shell: bool
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[Mount, ...] = ()
    network: str | None = None
    security: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Cmd(Instruction):
    keyword: ClassVar[str] = kw.CMD
    command: tuple[str, ...]
    prepend_shell: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Entrypoint(Instruction):
    keyword: ClassVar[str] = kw.ENTRYPOINT
    command: tuple[str, ...]
    prepend_shell: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Shell(Instruction):
    keyword: ClassVar[str] = kw.SHELL
    shell: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy(Instruction):
    keyword: ClassVar[str] = kw.COPY
    sources: tuple[str, ...]
    dest: str
    contents: tuple[SourceContent, ...] = ()
    from_stage: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    excludes: tuple[str, ...] = ()
    parents: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Add(Instruction):
    keyword: ClassVar[str] = kw.ADD
    sources: tuple[str, ...]
    dest: str
    contents: tuple[SourceContent, ...] = ()
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    excludes: tuple[str, ...] = ()
    checksum: str | None = None
    keep_git_dir: bool = False
    unpack: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Arg(Instruction):
    keyword: ClassVar[str] = kw.ARG
    args: tuple[ArgDecl, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Env(Instruction):
    keyword: ClassVar[str] = kw.ENV
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Label(Instruction):
    keyword: ClassVar[str] = kw.LABEL
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Expose(Instruction):
    keyword: ClassVar[str] = kw.EXPOSE
    ports: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume(Instruction):
    keyword: ClassVar[str] = kw.VOLUME
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class User(Instruction):
    keyword: ClassVar[str] = kw.USER
    user: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Workdir(Instruction):
    keyword: ClassVar[str] = kw.WORKDIR
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StopSignal(Instruction):
    keyword: ClassVar[str] = kw.STOPSIGNAL
    signal: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Maintainer(Instruction):
    keyword: ClassVar[str] = kw.MAINTAINER
    maintainer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck(Instruction):
    """``test`` is ``("NONE",)``, ``("CMD", *argv)`` or ``("CMD-SHELL", command)``.

    Durations are in nanoseconds (None when not given), as in an image config.
    """

    keyword: ClassVar[str] = kw.HEALTHCHECK
    test: tuple[str, ...]
    interval: int | None = None
    timeout: int | None = None
    start_period: int | None = None
    start_interval: int | None = None
    retries: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Onbuild(Instruction):
    """``expression`` is the trigger text stored in the image (heredoc bodies appended)."""

    keyword: ClassVar[str] = kw.ONBUILD
    trigger: str
    expression: str


_Parse = Callable[[Node], Instruction]

# Flags accepted by each instruction.
FLAGS: dict[str, dict[str, Kind]] = {
    kw.FROM: {kw.FLAG_PLATFORM: Kind.STRING},
    kw.RUN: {kw.FLAG_MOUNT: Kind.STRINGS, kw.FLAG_NETWORK: Kind.STRING, kw.FLAG_SECURITY: Kind.STRING},
    kw.COPY: {kw.FLAG_FROM: Kind.STRING, kw.FLAG_CHOWN: Kind.STRING, kw.FLAG_CHMOD: Kind.STRING,
              kw.FLAG_LINK: Kind.BOOL, kw.FLAG_EXCLUDE: Kind.STRINGS, kw.FLAG_PARENTS: Kind.BOOL},
    kw.ADD: {kw.FLAG_CHOWN: Kind.STRING, kw.FLAG_CHMOD: Kind.STRING, kw.FLAG_LINK: Kind.BOOL,
             kw.FLAG_EXCLUDE: Kind.STRINGS, kw.FLAG_CHECKSUM: Kind.STRING,
             kw.FLAG_KEEP_GIT_DIR: Kind.BOOL, kw.FLAG_UNPACK: Kind.BOOL},
    kw.HEALTHCHECK: {kw.FLAG_INTERVAL: Kind.STRING, kw.FLAG_TIMEOUT: Kind.STRING,
                     kw.FLAG_START_PERIOD: Kind.STRING, kw.FLAG_START_INTERVAL: Kind.STRING,
                     kw.FLAG_RETRIES: Kind.STRING},
}


def _flags(node: Node, keyword: str) -> ParsedFlags:
    return parse_flags(keyword, node.flags, FLAGS.get(keyword, {}))


def _loc(node: Node) -> Loc:
    return Loc(node.start_line, node.end_line, node.original, node.comments)


def _at_least_one(node: Node, keyword: str) -> None:
    if not node.args:
        raise DockerfileError(f"{keyword} requires at least one argument")


def _exactly_one(node: Node, keyword: str) -> None:
    if len(node.args) != 1:
        raise DockerfileError(f"{keyword} requires exactly one argument")


_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")


def _from(node: Node) -> From:
    args = node.args
    name: str | None = None
    if len(args) == 3 and args[1].upper() == kw.STAGE_KEYWORD_AS:
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise DockerfileError(f"invalid name for build stage: {args[2]!r}, name can't start with a "
                                  "number or contain symbols")
    elif len(args) != 1:
        raise DockerfileError("FROM requires either one or three arguments")
    flags = _flags(node, kw.FROM)
    return From(base=args[0], name=name, platform=flags.string(kw.FLAG_PLATFORM), loc=_loc(node))


def _run(node: Node) -> Run:
    # No argument count check: BuildKit's parseRun accepts a bare ``RUN`` (and ``RUN []``);
    # the shell form then runs an empty command line.
    flags = _flags(node, kw.RUN)
    network = flags.string(kw.FLAG_NETWORK)
    if network is not None and network not in kw.NETWORK_MODES:
        raise DockerfileError(f"unsupported network mode {network!r} (use one of "
                              f"{', '.join(sorted(kw.NETWORK_MODES))})")
    security = flags.string(kw.FLAG_SECURITY)
    if security is not None and security not in kw.SECURITY_MODES:
        raise DockerfileError(f"unsupported security mode {security!r} (use one of "
                              f"{', '.join(sorted(kw.SECURITY_MODES))})")
    mounts = tuple(parse_mount(spec) for spec in flags.strings(kw.FLAG_MOUNT))
    return Run(command=node.args, prepend_shell=not node.json, heredocs=node.heredocs, mounts=mounts,
               network=network, security=security, loc=_loc(node))


def _cmd(node: Node) -> Cmd:
    _flags(node, kw.CMD)
    return Cmd(command=node.args, prepend_shell=not node.json, loc=_loc(node))


def _entrypoint(node: Node) -> Entrypoint:
    _flags(node, kw.ENTRYPOINT)
    return Entrypoint(command=node.args, prepend_shell=not node.json, loc=_loc(node))


def _shell(node: Node) -> Shell:
    _flags(node, kw.SHELL)
    if not node.args:
        raise DockerfileError(f"{kw.SHELL} requires at least one argument")
    if not node.json:
        raise DockerfileError(f'{kw.SHELL} requires the arguments to be in JSON form, e.g. SHELL ["/bin/sh", "-c"]')
    return Shell(shell=node.args, loc=_loc(node))


class _Sources(NamedTuple):
    sources: tuple[str, ...]
    dest: str
    contents: tuple[SourceContent, ...]


def _sources_and_dest(node: Node, keyword: str) -> _Sources:
    if len(node.args) < 2:
        raise DockerfileError(f"{keyword} requires at least two arguments, but only one was provided. "
                              "Destination could not be determined")
    *sources, dest = node.args
    if parse_marker(dest) is not None:
        raise DockerfileError(f"{keyword} cannot accept a heredoc as a destination")
    bodies = {doc.name: doc for doc in node.heredocs}
    paths: list[str] = []
    contents: list[SourceContent] = []
    for src in sources:
        marker = parse_marker(src) if not node.json else None
        if marker is None:
            paths.append(src)
            continue
        doc = bodies.get(marker.name)
        body = doc.body if doc is not None else ""
        contents.append(SourceContent(marker.name, body, marker.expand))
    return _Sources(tuple(paths), dest, tuple(contents))


def _copy(node: Node) -> Copy:
    parts = _sources_and_dest(node, kw.COPY)
    flags = _flags(node, kw.COPY)
    return Copy(from_stage=flags.string(kw.FLAG_FROM), chown=flags.string(kw.FLAG_CHOWN),
                chmod=flags.string(kw.FLAG_CHMOD), link=flags.bool(kw.FLAG_LINK),
                excludes=flags.strings(kw.FLAG_EXCLUDE), parents=flags.bool(kw.FLAG_PARENTS),
                sources=parts.sources, dest=parts.dest, contents=parts.contents, loc=_loc(node))


def _add(node: Node) -> Add:
    parts = _sources_and_dest(node, kw.ADD)
    flags = _flags(node, kw.ADD)
    unpack = flags.bool(kw.FLAG_UNPACK) if flags.used(kw.FLAG_UNPACK) else None
    return Add(chown=flags.string(kw.FLAG_CHOWN), chmod=flags.string(kw.FLAG_CHMOD),
               link=flags.bool(kw.FLAG_LINK), excludes=flags.strings(kw.FLAG_EXCLUDE),
               checksum=flags.string(kw.FLAG_CHECKSUM), keep_git_dir=flags.bool(kw.FLAG_KEEP_GIT_DIR),
               unpack=unpack, sources=parts.sources, dest=parts.dest, contents=parts.contents, loc=_loc(node))


def _arg(node: Node) -> Arg:
    _at_least_one(node, kw.ARG)
    _flags(node, kw.ARG)
    decls: list[ArgDecl] = []
    for word in node.args:
        name, eq, default = word.partition("=")
        if eq and not name:
            raise DockerfileError(f"{kw.ARG} names can not be blank")
        decls.append(ArgDecl(name, default if eq else None))
    return Arg(args=tuple(decls), loc=_loc(node))


def _pairs(node: Node, keyword: str) -> tuple[KeyValue, ...]:
    _flags(node, keyword)
    _at_least_one(node, keyword)
    args = node.args
    pairs = tuple(KeyValue(args[i], args[i + 1]) for i in range(0, len(args) - 1, 2))
    if any(not p.key for p in pairs):
        raise DockerfileError(f"{keyword} names can not be blank")
    return pairs


def _env(node: Node) -> Env:
    return Env(pairs=_pairs(node, kw.ENV), loc=_loc(node))


def _label(node: Node) -> Label:
    return Label(pairs=_pairs(node, kw.LABEL), loc=_loc(node))


def _expose(node: Node) -> Expose:
    _at_least_one(node, kw.EXPOSE)
    _flags(node, kw.EXPOSE)
    return Expose(ports=tuple(sorted(node.args)), loc=_loc(node))


def _volume(node: Node) -> Volume:
    _at_least_one(node, kw.VOLUME)
    _flags(node, kw.VOLUME)
    paths = tuple(p.strip() for p in node.args)
    if any(not p for p in paths):
        raise DockerfileError("VOLUME specified can not be an empty string")
    return Volume(paths=paths, loc=_loc(node))


def _user(node: Node) -> User:
    _exactly_one(node, kw.USER)
    _flags(node, kw.USER)
    return User(user=node.args[0], loc=_loc(node))


def _workdir(node: Node) -> Workdir:
    _exactly_one(node, kw.WORKDIR)
    _flags(node, kw.WORKDIR)
    return Workdir(path=node.args[0], loc=_loc(node))


def _stopsignal(node: Node) -> StopSignal:
    _exactly_one(node, kw.STOPSIGNAL)
    return StopSignal(signal=node.args[0], loc=_loc(node))


def _maintainer(node: Node) -> Maintainer:
    _exactly_one(node, kw.MAINTAINER)
    _flags(node, kw.MAINTAINER)
    return Maintainer(maintainer=node.args[0], loc=_loc(node))


def parse_go_duration(text: str) -> int:
    """Nanoseconds in a Go duration string such as ``30s``, ``1m30s``, ``1.5h`` (storage.duration)."""
    try:
        return parse_duration(text)
    except DurationError as e:
        raise DockerfileError(str(e)) from None


def _interval(flags: ParsedFlags, name: str) -> int | None:
    text = flags.string(name)
    if text is None or text == "":
        return None
    value = parse_go_duration(text)
    if value != 0 and value < 1_000_000:
        raise DockerfileError(f'Interval "{name}" cannot be less than 1ms')
    return value


def _retries(flags: ParsedFlags) -> int | None:
    text = flags.string(kw.FLAG_RETRIES)
    if text is None or text == "":
        return None
    if not re.fullmatch(r"[+-]?[0-9]+", text) or not -(2**31) <= int(text) < 2**31:
        raise DockerfileError(f'--retries: strconv.ParseInt: parsing {text!r}: invalid syntax')
    if int(text) < 0:
        raise DockerfileError(f"--retries cannot be negative ({int(text)})")
    return int(text)


def _healthcheck(node: Node) -> Healthcheck:
    _at_least_one(node, kw.HEALTHCHECK)
    kind, rest = node.args[0].upper(), node.args[1:]
    if kind == kw.HEALTHCHECK_NONE:
        if rest:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(test=(kw.HEALTHCHECK_NONE,), loc=_loc(node))
    flags = _flags(node, kw.HEALTHCHECK)
    if kind != kw.HEALTHCHECK_CMD:
        raise DockerfileError(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    if not rest:
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    test = (kw.HEALTHCHECK_CMD,) + rest if node.json else (kw.HEALTHCHECK_CMD_SHELL,) + rest
    return Healthcheck(test=test, interval=_interval(flags, kw.FLAG_INTERVAL),
                       timeout=_interval(flags, kw.FLAG_TIMEOUT),
                       start_period=_interval(flags, kw.FLAG_START_PERIOD),
                       start_interval=_interval(flags, kw.FLAG_START_INTERVAL),
                       retries=_retries(flags), loc=_loc(node))


_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)


def _onbuild(node: Node) -> Onbuild:
    _at_least_one(node, kw.ONBUILD)
    _flags(node, kw.ONBUILD)
    trigger = node.args[0].strip().upper()
    if trigger == kw.ONBUILD:
        raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in kw.FORBIDDEN_ONBUILD_TRIGGERS:
        raise DockerfileError(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX.sub("", node.original, count=1)
    for doc in node.heredocs:
        expression += "\n" + doc.content + doc.name
    return Onbuild(trigger=trigger, expression=expression, loc=_loc(node))


PARSERS: dict[str, _Parse] = {
    kw.ADD: _add, kw.ARG: _arg, kw.CMD: _cmd, kw.COPY: _copy, kw.ENTRYPOINT: _entrypoint,
    kw.ENV: _env, kw.EXPOSE: _expose, kw.FROM: _from, kw.HEALTHCHECK: _healthcheck,
    kw.LABEL: _label, kw.MAINTAINER: _maintainer, kw.ONBUILD: _onbuild, kw.RUN: _run,
    kw.SHELL: _shell, kw.STOPSIGNAL: _stopsignal, kw.USER: _user, kw.VOLUME: _volume,
    kw.WORKDIR: _workdir,
}


def from_node(node: Node) -> Instruction:
    """The typed instruction for a node; raises DockerfileError located at the node."""
    keyword = node.keyword.upper()
    parse = PARSERS.get(keyword)
    try:
        if parse is None:
            raise DockerfileError(_unknown_instruction(node.keyword))
        return parse(node)
    except DockerfileError as e:
        raise e.at(node.start_line, node.end_line) from None


def _unknown_instruction(keyword: str) -> str:
    shown = keyword if keyword.isprintable() and len(keyword) <= 40 else repr(keyword[:40])
    close = difflib.get_close_matches(keyword.upper(), sorted(kw.INSTRUCTIONS), n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown instruction: {shown}{hint}"
