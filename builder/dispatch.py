"""Dispatch: one pass over a stage's instructions, over one stage state.

The shape of BuildKit's ``dockerfile2llb/convert.go``: each instruction is expanded in the
stage's scope (``builder.expansion``), checked as BuildKit checks it at conversion time, and
applied to the stage state (scope, image config, history, layer chain). What touches a root
file system (FROM of an image, RUN, COPY/ADD, WORKDIR's mkdir) is handed to a ``Backend``:
``hoist build --check`` uses ``CheckBackend``, which runs nothing; the real build
(``builder.execute``) runs the steps. ARG/ENV scoping, word expansion and the conversion-time
checks live only here.

History entries are written as BuildKit writes them (``created_by``; ``# buildkit`` after the
instructions that make a layer; ``empty_layer`` for metadata-only ones).
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from builder import keywords as kw
from builder import lint
from builder.copy import ChownSpec, parse_chmod, parse_chown
from builder.dockerfile import parse_dockerfile_collecting
from builder.errors import DockerfileError, UnsetVariableError
from builder.expansion import expand_instruction
from builder.instructions import (
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Loc,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from builder.lint import BuildCheck
from builder.parser.heredoc import parse_marker
from builder.scope import Scope
from builder.shell_lex import ShellLex
from builder.stages import BuildGraph, StageNode
from storage.duration import format_duration

HISTORY_COMMENT = "buildkit.dockerfile.v0"
DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class LayerRef:
    """One layer of a stage's chain: its blob descriptor fields and diff_id, and when it was made
    (RFC 3339; a base image's from its history, a step's when it first ran, kept by the cache:
    BuildKit's ref creation time, which dates the image; not part of the layer's identity)."""

    digest: str
    diff_id: str
    size: int
    media_type: str
    created: str | None = field(default=None, compare=False)

    @property
    def lazy(self) -> bool:
        """A layer no blob holds yet, only its snapshot (``builder.execute``: a step of a stage
        no output needs); ``size`` is then its tar's length, ``media_type`` what its blob's will be."""
        return not self.digest


@dataclass
class StageState:
    """What a stage has become so far: the state BuildKit's dispatchState holds."""

    node: StageNode
    scope: Scope
    image: dict[str, Any]                       # the image config (architecture, os, config, ...)
    history: list[dict[str, Any]] = field(default_factory=list)
    _layers: list[LayerRef] = field(default_factory=list)      # read as ``layers``
    build_args: list[tuple[str, str | None]] = field(default_factory=list)  # declared ARGs, in order
    env_known: bool = True                      # False when the base image's ENV is unknown (--check)
    cmd_set: bool = False
    base_digest: str | None = None              # the resolved manifest digest of an image base
    new_history: int = 0                        # history entries this build added
    onbuild_done: bool = False
    workdir_set: bool = False                   # a WORKDIR of this Dockerfile ran (in this stage or its base)
    lint: list[BuildCheck] = field(default_factory=list)   # build checks found at dispatch (builder/lint.py)
    runs_ahead: int = 0                         # RUN instructions after the one being dispatched
    # A step's commit still being made beside the next step (builder.execute's run ahead): the
    # first read of ``layers`` waits for it and puts its layer on the chain.
    pending: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def layers(self) -> list[LayerRef]:
        """The stage's layer chain, lowest first (a pending commit settled first)."""
        settle = self.pending
        if settle is not None:
            self.pending = None
            settle()
        return self._layers

    @layers.setter
    def layers(self, value: list[LayerRef]) -> None:
        self._layers = value

    @property
    def config(self) -> dict[str, Any]:
        return self.image.setdefault("config", {})

    @property
    def workdir(self) -> str:
        return self.config.get("WorkingDir") or "/"

    @property
    def user(self) -> str:
        return self.config.get("User") or ""

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    def env_list(self) -> list[str]:
        return list(self.config.get("Env") or [])

    def run_env(self) -> list[str]:
        """ENV, then the declared ARGs that have a value and are not ENV (BuildKit's exec env)."""
        env = self.env_list()
        keys = {item.partition("=")[0] for item in env}
        for name, _ in self.build_args:
            value = self.scope.args.get(name)
            if value is not None and name not in keys:
                env.append(f"{name}={value}")
                keys.add(name)
        return env

    def add_history(self, created_by: str, layer: bool) -> None:
        entry: dict[str, Any] = {"created_by": created_by + (" # buildkit" if layer else ""),
                                 "comment": HISTORY_COMMENT}
        if not layer:
            entry["empty_layer"] = True
        self.history.append(entry)
        self.new_history += 1


@dataclass(frozen=True)
class RunProcess:
    """What a RUN executes, fully resolved."""

    argv: list[str]
    env: list[str]
    cwd: str
    user: str
    network: str        # "default" | "none" | "host"
    files: dict[str, bytes] = field(default_factory=dict)   # read-only files to provide (mode 0755)
    # The predefined proxy ARGs given with --build-arg and not declared: in the step's env, never in
    # its history or cache key (BuildKit's ProxyEnv).
    proxy_env: list[str] = field(default_factory=list)


class Backend(Protocol):
    """What dispatch needs done to root file systems."""

    def from_image(self, state: StageState) -> None:
        """Fill ``state.image``, ``layers``, ``history`` and ``base_digest`` from ``state.node.base``
        (not a stage, maybe ``scratch``); set ``env_known`` False if the image is not looked at."""

    def run(self, state: StageState, instr: Run, process: RunProcess) -> None:
        """Run and append the layer to ``state.layers``."""

    def copy(self, state: StageState, instr: Copy | Add, dest: str) -> None:
        """Copy and append the layer to ``state.layers``; ``dest`` is absolute (WORKDIR applied),
        keeping a trailing slash."""

    def workdir(self, state: StageState, path: str) -> None:
        """Create ``path`` (absolute, not ``/``) owned by the stage's user and append the layer."""


class CheckBackend:
    """Runs nothing: base images are not looked at, RUN/COPY/WORKDIR make no layer."""

    def from_image(self, state: StageState) -> None:
        state.env_known = state.node.base == kw.SCRATCH

    def run(self, state: StageState, instr: Run, process: RunProcess) -> None:
        pass

    def copy(self, state: StageState, instr: Copy | Add, dest: str) -> None:
        pass

    def workdir(self, state: StageState, path: str) -> None:
        pass


def empty_image(platform: Mapping[str, str]) -> dict[str, Any]:
    """The config of ``FROM scratch``: BuildKit's emptyImage gives it a default PATH and
    WorkingDir ``/`` (an image base keeps the WorkingDir its config has, set or not)."""
    image: dict[str, Any] = {"architecture": platform["architecture"], "os": platform["os"]}
    if platform.get("variant"):
        image["variant"] = platform["variant"]
    image["config"] = {"Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"}
    image["rootfs"] = {"type": "layers", "diff_ids": []}
    return image


def _env_map(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _set_env(env: list[str], key: str, value: str) -> list[str]:
    for i, item in enumerate(env):
        if item.partition("=")[0] == key:
            env[i] = f"{key}={value}"
            return env
    env.append(f"{key}={value}")
    return env


def start_stage(graph: BuildGraph, index: int, parent: StageState | None, backend: Backend,
                platform: Mapping[str, str]) -> StageState:
    """The state after a stage's FROM: a copy of the parent stage's, or the base image's."""
    node = graph.nodes[index]
    if parent is not None:
        image = json.loads(json.dumps(parent.image))
        state = StageState(node, Scope(graph.global_args, graph.build_args), image,
                           history=[dict(h) for h in parent.history], _layers=list(parent.layers),
                           build_args=list(parent.build_args), env_known=parent.env_known,
                           base_digest=parent.base_digest, workdir_set=parent.workdir_set)
        state.scope.args = dict(parent.scope.args)
    else:
        state = StageState(node, Scope(graph.global_args, graph.build_args), empty_image(platform))
        if node.base != kw.SCRATCH:
            backend.from_image(state)
        elif node.base == kw.SCRATCH:
            state.env_known = True
    state.scope.env = _env_map(state.env_list())
    return state


def dispatch_stage(state: StageState, graph: BuildGraph, backend: Backend,
                   errors: list[DockerfileError] | None = None) -> StageState:
    """Dispatch every instruction of the stage. With ``errors`` given, a failing instruction is
    recorded there and dispatch goes on (``--check``); otherwise the first error is raised."""
    lex = ShellLex(graph.dockerfile.escape)
    instructions = list(state.node.stage.instructions)
    if not state.onbuild_done:
        instructions = onbuild_triggers(state, errors) + instructions
    runs_ahead = sum(isinstance(i, Run) for i in instructions)
    for instr in instructions:
        runs_ahead -= isinstance(instr, Run)
        state.runs_ahead = runs_ahead
        try:
            dispatch(instr, state, lex, backend)
        except UnsetVariableError as e:
            if state.env_known:
                if errors is None:
                    raise e.at(instr.line, instr.end_line) from None
                errors.append(e.at(instr.line, instr.end_line))
            # else: the base image may define it
        except DockerfileError as e:
            if errors is None:
                raise e.at(instr.line, instr.end_line) from None
            errors.append(e.at(instr.line, instr.end_line))
    return state


def onbuild_triggers(state: StageState, errors: list[DockerfileError] | None) -> list[Instruction]:
    """The base's ONBUILD triggers as instructions located at the stage's FROM line (they run
    before the stage's own instructions); the new image does not inherit them."""
    triggers = list(state.config.pop("OnBuild", None) or [])
    state.onbuild_done = True
    line = state.node.stage.line
    out: list[Instruction] = []
    for text in triggers:
        dockerfile, problems = parse_dockerfile_collecting(f"FROM scratch\n{text}\n")
        if problems or dockerfile is None or len(dockerfile.stages[0].instructions) != 1:
            error = DockerfileError(f"invalid ONBUILD trigger {text!r}"
                                    + (f": {problems[0].message}" if problems else ""), line)
            if errors is None:
                raise error
            errors.append(error)
            continue
        instr = dockerfile.stages[0].instructions[0]
        out.append(dataclasses.replace(instr, loc=Loc(line, line, instr.original)))
    return out


def _unknown_vars(lex: ShellLex, words: tuple[str, ...], scope: Scope) -> bool:
    """Whether the words use a variable the Dockerfile does not set (the image might)."""
    return any(lex.process_word_with_matches(w, scope)[2] for w in words if "$" in w)


def dispatch(instr: Instruction, state: StageState, lex: ShellLex, backend: Backend) -> None:
    """Apply one instruction to the stage state."""
    scope = state.scope
    if not state.env_known and isinstance(instr, (Expose, StopSignal, Volume)):
        raw = instr.ports if isinstance(instr, Expose) else \
            (instr.signal,) if isinstance(instr, StopSignal) else instr.paths
        if _unknown_vars(lex, raw, scope):
            return  # its value depends on the base image's ENV, unknown here
    lookups = lint.MissedLookups(scope)
    expanded = expand_instruction(instr, lex, lookups)
    if lookups.missed and state.env_known:     # the base image's ENV known: UndefinedVar can tell
        state.lint.extend(lint.undefined_vars(instr, lookups.missed, scope.args, list(scope)))
    config = state.config
    match expanded:
        case Arg():
            parts = []
            for decl in expanded.args:
                scope.declare(decl.name, decl.default)
                state.build_args.append((decl.name, scope.args.get(decl.name)))
                value = scope.args.get(decl.name)
                parts.append(decl.name if value is None else f"{decl.name}={value}")
            state.add_history("ARG " + " ".join(parts), False)
        case Env():
            env = state.env_list()
            for pair in expanded.pairs:
                scope.set_env(pair.key, pair.value)
                env = _set_env(env, pair.key, pair.value)
            config["Env"] = env
            state.add_history("ENV " + " ".join(f"{p.key}={p.value}" for p in expanded.pairs), False)
        case Label():
            labels = config.setdefault("Labels", {}) or {}
            config["Labels"] = labels
            for pair in expanded.pairs:
                labels[pair.key] = pair.value
            state.add_history("LABEL " + " ".join(f"{p.key}={p.value}" for p in expanded.pairs), False)
        case Maintainer():
            state.lint.append(lint.maintainer_deprecated(expanded))
            state.image["author"] = expanded.maintainer
            state.add_history(f"MAINTAINER {expanded.maintainer}", False)
        case Expose():
            ports: dict[str, dict[str, str]] = {}
            for port in expanded.ports:
                check_port_spec(port)
                ports.update({p: {} for p in _port_keys(port)})
            exposed = config.get("ExposedPorts") or {}
            exposed.update(ports)
            config["ExposedPorts"] = exposed
            shown = " ".join(f"{p}:{{}}" for p in sorted(ports))
            state.add_history(f"EXPOSE map[{shown}]", False)
        case StopSignal():
            check_signal(expanded.signal)
            config["StopSignal"] = expanded.signal
            state.add_history(f"STOPSIGNAL {expanded.signal}", False)
        case Volume():
            if any(not p for p in expanded.paths):
                raise DockerfileError("VOLUME specified can not be an empty string")
            volumes = config.get("Volumes") or {}
            volumes.update({p: {} for p in expanded.paths})
            config["Volumes"] = volumes
            state.add_history(f"VOLUME [{' '.join(expanded.paths)}]", False)
        case User():
            config["User"] = expanded.user
            state.add_history(f"USER {expanded.user}", False)
        case Shell():
            config["Shell"] = list(expanded.shell)
            state.add_history(f"SHELL [{' '.join(expanded.shell)}]", False)
        case Cmd():
            _json_args_lint(state, expanded)
            args = _with_shell(state, expanded.command, expanded.prepend_shell)
            config["Cmd"] = args
            config["ArgsEscaped"] = True
            state.cmd_set = True
            state.add_history(f"CMD {go_quote_list(args)}", False)
        case Entrypoint():
            _json_args_lint(state, expanded)
            args = _with_shell(state, expanded.command, expanded.prepend_shell)
            config["Entrypoint"] = args
            if not state.cmd_set:
                config["Cmd"] = None
            state.add_history(f"ENTRYPOINT {go_quote_list(args)}", False)
        case Healthcheck():
            health: dict[str, Any] = {"Test": list(expanded.test)}
            for key, amount in (("Interval", expanded.interval), ("Timeout", expanded.timeout),
                                ("StartPeriod", expanded.start_period),
                                ("StartInterval", expanded.start_interval), ("Retries", expanded.retries)):
                if amount:
                    health[key] = amount
            config["Healthcheck"] = health
            state.add_history(f"HEALTHCHECK {_health_text(health)}", False)
        case Onbuild():
            config["OnBuild"] = list(config.get("OnBuild") or []) + [expanded.expression]
        case Workdir():
            if not state.workdir_set and not expanded.path.startswith("/"):
                state.lint.append(lint.workdir_relative_path(expanded, expanded.path))
            state.workdir_set = True
            wd = posixpath.normpath(posixpath.join(state.workdir, expanded.path))
            wd = "/" + wd.lstrip("/")
            config["WorkingDir"] = wd
            if wd != "/":
                backend.workdir(state, wd)
            state.add_history(f"WORKDIR {wd}", wd != "/")
            if wd != "/":
                # WORKDIR's history has no "# buildkit" (commitToHistory without a state).
                state.history[-1]["created_by"] = f"WORKDIR {wd}"
        case Run():
            for mount in expanded.mounts:
                if mount.type in (kw.MOUNT_BIND, kw.MOUNT_CACHE, kw.MOUNT_TMPFS) and \
                        mount_target(state.workdir, mount.target) == "/":
                    raise DockerfileError('invalid mount target "/"')
            process = run_process(state, expanded)
            backend.run(state, expanded, process)
            state.add_history("RUN " + run_command_string(process.argv, state), True)
        case Copy() | Add():
            check_remote_sources(expanded)
            if expanded.chmod:
                parse_chmod(expanded.chmod)
            elif expanded.link and expanded.chown:
                link_chown_ids(parse_chown(expanded.chown))
            dest = copy_dest(state.workdir, expanded.dest)
            backend.copy(state, expanded, dest)
            state.add_history(copy_message(expanded), True)


def mount_target(workdir: str, target: str | None) -> str:
    """A RUN mount's target: relative ones (and none) are against WORKDIR, as BuildKit joins them."""
    joined = posixpath.normpath(posixpath.join("/", workdir, target or ""))
    return "/" + joined.lstrip("/")


def _json_args_lint(state: StageState, instr: Cmd | Entrypoint) -> None:
    if instr.prepend_shell and not state.config.get("Shell"):
        state.lint.append(lint.json_args_recommended(instr))


def _with_shell(state: StageState, command: tuple[str, ...], prepend_shell: bool) -> list[str]:
    if prepend_shell:
        return state.shell + [" ".join(command)]
    return list(command)


def run_process(state: StageState, instr: Run) -> RunProcess:
    """The argv (SHELL for the shell form, heredocs as BuildKit runs them) and environment."""
    process = _run_process(state, instr)
    declared = {name for name, _ in state.build_args} | set(_env_map(state.env_list()))
    proxy = [f"{k}={v}" for k, v in state.scope.build_args.items() if k in kw.PROXY_ARGS and k not in declared]
    return dataclasses.replace(process, proxy_env=proxy) if proxy else process


def _run_process(state: StageState, instr: Run) -> RunProcess:
    args = list(instr.command)
    files: dict[str, bytes] = {}
    if instr.heredocs and instr.prepend_shell and len(args) == 1:
        marker = parse_marker(args[0]) if " " not in args[0].strip() else None
        if marker is not None:
            # One heredoc and nothing else: a shebang body is a file the step executes, any other
            # body the shell's command (BuildKit's dispatchRun).
            doc = instr.heredocs[0]
            data = doc.content
            if doc.chomp:
                data = "".join(line.lstrip("\t") for line in data.splitlines(keepends=True))
            if data.startswith("#!"):
                path = f"/dev/pipes/{doc.name}"
                files[path] = data.encode()
                return RunProcess(argv=[path], env=state.run_env(), cwd=state.workdir, user=state.user,
                                  network=instr.network or "default", files=files)
            args = [data]
        else:
            full = args[0]
            for doc in instr.heredocs:
                full += "\n" + doc.content + doc.name
            args = [full]
    argv = _with_shell(state, tuple(args), instr.prepend_shell)
    return RunProcess(argv=argv, env=state.run_env(), cwd=state.workdir, user=state.user,
                      network=instr.network or "default")


def run_command_string(argv: list[str], state: StageState) -> str:
    """BuildKit's runCommandString: ``|N K=V ...`` for the declared ARGs, then the argv."""
    env = _env_map(state.env_list())
    pairs: dict[str, str] = {}
    for name, _ in state.build_args:
        value = env.get(name)
        if value is None:
            value = state.scope.args.get(name) or ""
        pairs[name] = value
    prefix = [f"|{len(pairs)}"] + [f"{k}={v}" for k, v in pairs.items()] if pairs else []
    return " ".join(prefix + argv)


def copy_dest(workdir: str, dest: str) -> str:
    """The destination against WORKDIR, normalised, keeping a trailing slash (and ``.`` as a dir)."""
    if dest in ("", "."):
        dest = "./"
    slash = dest.endswith(("/", "/."))
    joined = posixpath.normpath(posixpath.join(workdir, dest))
    joined = "/" + joined.lstrip("/")
    return joined + "/" if slash and joined != "/" else joined


def copy_message(instr: Copy | Add) -> str:
    parts = [instr.keyword]
    if isinstance(instr, Copy) and instr.parents:
        parts.append("--parents")
    if instr.chown:
        parts.append(f"--chown={instr.chown}")
    if instr.chmod:
        parts.append(f"--chmod={instr.chmod}")
    parts += list(instr.sources)
    parts += [f"<<{c.name}" for c in instr.contents]
    parts.append(instr.dest)
    return " ".join(parts)


def link_chown_ids(spec: ChownSpec) -> tuple[int, int]:
    """The (uid, gid) of ``--chown`` for ``COPY --link``: BuildKit copies onto scratch there, so
    only ids (and ``root``, as llb's parseUID reads it) can be used, never names looked up in the
    image (current BuildKit rejects them at parse time). A user without a group gives gid = uid,
    as for any copy."""
    def number(name: str) -> int:
        value = 0 if name == "root" else (int(name) if name.isascii() and name.isdigit() else None)
        if value is None or value >= 1 << 32:
            raise DockerfileError(f"--chown={spec.text} by name cannot be used with --link (the files are "
                                  f"copied onto an empty tree, without /etc/passwd): use numeric ids")
        return value

    uid = number(spec.user) if spec.user is not None else 0
    gid = number(spec.group) if spec.group is not None else uid
    return uid, gid


def go_quote_list(items: list[str]) -> str:
    """Go's ``%q`` of a []string: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(s, ensure_ascii=False) for s in items) + "]"


def _health_text(health: dict[str, Any]) -> str:
    """Go's ``%+v`` of the HealthcheckConfig value, as current BuildKit's dispatchHealthcheck
    writes it: ``{Test:[CMD-SHELL x] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s
    Retries:0}`` (slices unquoted, durations as time.Duration.String, Retries in decimal)."""
    fields = ["Test:[" + " ".join(health["Test"]) + "]"]
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        fields.append(f"{key}:{format_duration(health.get(key, 0))}")
    fields.append(f"Retries:{int(health.get('Retries', 0))}")
    return "{" + " ".join(fields) + "}"


def _port_keys(spec: str) -> list[str]:
    """ExposedPorts keys of one EXPOSE word: ``80/tcp``, ranges expanded (nat.ParsePortSpecs)."""
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    container = port.rsplit(":", 1)[-1]
    start, dash, end = container.partition("-")
    if not dash:
        return [f"{int(start)}/{proto}"]
    return [f"{p}/{proto}" for p in range(int(start), int(end) + 1)]


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


def check_remote_sources(instr: Copy | Add) -> None:
    """dockerfile2llb's checks of URL and git sources: COPY takes neither, ``--checksum`` needs
    exactly one source that is one of them (a digest for a URL, a commit id prefix for git)."""
    from builder.remote import classify, git_options, parse_git_ref

    kinds = [classify(src) for src in instr.sources]
    if isinstance(instr, Copy):
        if "git" in kinds:
            raise DockerfileError("source can't be a git ref for COPY")
        if "url" in kinds:
            raise DockerfileError("source can't be a URL for COPY")
        return
    if instr.checksum:
        if len(instr.sources) != 1:
            raise DockerfileError("checksum can't be specified for multiple sources")
        if kinds[0] == "url":
            check_digest(instr.checksum)
        elif kinds[0] != "git":
            raise DockerfileError("checksum requires HTTP(S) or Git sources")
    for src, kind in zip(instr.sources, kinds, strict=True):
        if kind == "git":
            ref = parse_git_ref(src)  # raises for a malformed query or fragment
            assert ref is not None
            git_options(ref, instr.checksum, instr.keep_git_dir)


_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


def check_digest(value: str) -> None:
    algorithm, sep, encoded = value.partition(":")
    expected = _DIGEST_LENGTHS.get(algorithm)
    if not sep or expected is None:
        raise DockerfileError(f"invalid checksum digest format: {value!r} (expected sha256:<hex>)")
    if len(encoded) != expected or not re.fullmatch(r"[a-f0-9]+", encoded):
        raise DockerfileError(f"invalid checksum digest length or characters: {value!r}")
