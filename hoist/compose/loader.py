"""Loading a compose project: find the files, read the environment, interpolate, validate,
canonicalise, resolve ``extends``, merge, apply profiles, name the project, check the whole.

The order is docker compose's: each file is read, interpolated with the project environment
(the caller's environment over the ``.env`` file, or over the ``--env-file`` files), validated
against the specification's schema, put in long form and its ``extends`` resolved; then the
files are merged in order. Relative paths of ``-f`` files are relative to the project directory
(the first file's directory unless ``--project-directory``); those of a file named by
``extends: {file: ...}`` are relative to that file.

``include`` (after a file's ``extends``, before the files are merged, as compose-go does it):
each entry's files are loaded as an application of their own (their project directory, their
env files under the including project's environment, their own ``include``s; a file met again
on the way is a cycle) and its services, networks, volumes, secrets and configs are added to
the including file; a name the file (or an earlier entry) defines otherwise is an error.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hoist.compose import canonical, merge
from hoist.compose.errors import ComposeError, where
from hoist.compose.interpolate import Interpolator
from hoist.compose.schema import validate
from hoist.compose.yamlio import load_yaml_file, load_yaml_text

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_FILES = ("compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml",
                  "docker-compose.override.yml")
PROJECT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MAX_EXTENDS_DEPTH = 64
_RESOURCES = ("networks", "volumes", "secrets", "configs")


@dataclass
class LoadOptions:
    files: list[str] = field(default_factory=list)
    project_name: str | None = None
    project_directory: str | None = None
    env_files: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)     # named on the command line: enabled
    environ: Mapping[str, str] | None = None
    cwd: str | None = None
    stdin: Callable[[], str] | None = None


@dataclass
class Project:
    name: str
    working_dir: Path
    files: list[Path]
    services: dict[str, dict[str, Any]]
    disabled: dict[str, dict[str, Any]]
    networks: dict[str, dict[str, Any]]
    volumes: dict[str, dict[str, Any]]
    secrets: dict[str, dict[str, Any]]
    configs: dict[str, dict[str, Any]]
    extensions: dict[str, Any]
    environment: dict[str, str]
    warnings: list[str]

    def to_doc(self) -> dict[str, Any]:
        """The canonical model, as ``docker compose config`` prints it."""
        doc: dict[str, Any] = {"name": self.name,
                               "services": {n: _sorted(s) for n, s in sorted(self.services.items())}}
        for kind in _RESOURCES:
            section = getattr(self, kind)
            if section:
                doc[kind] = {n: section[n] for n in sorted(section)}
        doc.update(self.extensions)
        return doc

    def dependencies(self, name: str) -> dict[str, dict[str, Any]]:
        return dict(self.services[name].get("depends_on") or {})

    def order(self, names: list[str] | None = None, with_deps: bool = True) -> list[str]:
        """Services in start order (dependencies first), restricted to ``names`` and, with
        ``with_deps``, what they depend on; ties keep the alphabetical order."""
        wanted = set(names) if names else set(self.services)
        if with_deps:
            stack = list(wanted)
            while stack:
                for dep in self.dependencies(stack.pop()):
                    if dep in self.services and dep not in wanted:
                        wanted.add(dep)
                        stack.append(dep)
        out: list[str] = []
        done: set[str] = set()

        def visit(n: str) -> None:
            if n in done:
                return
            done.add(n)
            for dep in sorted(self.dependencies(n)):
                if dep in wanted:
                    visit(dep)
            out.append(n)

        for n in sorted(wanted):
            visit(n)
        return out


def _sorted(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in sorted(doc)}


# -- discovery ---------------------------------------------------------------------------------------
def find_files(opts: LoadOptions, environ: Mapping[str, str]) -> list[Path]:
    cwd = Path(opts.cwd or os.getcwd())
    if opts.files:
        return [Path("-") if f == "-" else (cwd / f) for f in opts.files]
    if environ.get("COMPOSE_FILE"):
        sep = environ.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        return [cwd / f for f in environ["COMPOSE_FILE"].split(sep) if f]
    directory = cwd
    while True:
        found = [directory / n for n in DEFAULT_FILES if (directory / n).is_file()]
        if found:
            files = [found[0]]
            override = next((directory / n for n in OVERRIDE_FILES if (directory / n).is_file()), None)
            if override is not None:
                files.append(override)
            return files
        if directory.parent == directory:
            break
        directory = directory.parent
    raise ComposeError("no configuration file provided: not found",
                       hint=f"looked for {', '.join(DEFAULT_FILES)} in {cwd} and its parents; pass one with -f")


# -- environment ------------------------------------------------------------------------------------
def project_environment(opts: LoadOptions, project_dir: Path, environ: Mapping[str, str],
                        warn: Callable[[str], None]) -> dict[str, str]:
    cwd = Path(opts.cwd or os.getcwd())
    if opts.env_files:
        paths = [cwd / p for p in opts.env_files]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise ComposeError(f"env file {missing[0]} not found")
    else:
        default = project_dir / ".env"
        paths = [default] if default.is_file() else []
    return environment_over_files(paths, environ, warn)


def environment_over_files(paths: list[Path], environ: Mapping[str, str],
                           warn: Callable[[str], None]) -> dict[str, str]:
    """The values of the env files ``paths`` (read in order, each seeing the ones before) with
    ``environ`` on top: the caller's environment wins."""
    from hoist.compose.dotenv import read_env_file

    env: dict[str, str] = {}
    for path in paths:
        values = read_env_file(path, {**env, **environ}, warn)
        env.update({k: v for k, v in values.items() if v is not None})
    env.update(environ)
    return env


# -- one file ---------------------------------------------------------------------------------------
class _Files:
    """Reads, interpolates, validates and canonicalises each file once."""

    def __init__(self, env: Mapping[str, str], warn: Callable[[str], None],
                 stdin: Callable[[], str] | None) -> None:
        self.env = env
        self.warn = warn
        self.stdin = stdin
        self.cache: dict[tuple[str, str], dict[str, Any]] = {}

    def load(self, path: Path, base_dir: Path) -> dict[str, Any]:
        key = (str(path), str(base_dir))
        if key in self.cache:
            return self.cache[key]
        name = str(path)
        if name == "-":
            raw = load_yaml_text((self.stdin or sys.stdin.read)(), "-")
        else:
            raw = load_yaml_file(path)
        if raw is None:
            raise ComposeError(f"{name}: empty compose file")
        if not isinstance(raw, dict):
            raise ComposeError(f"{name}: the top level must be a mapping")
        doc = Interpolator(self.env, self.warn).tree(raw)
        validate(doc, name)
        if "version" in doc:
            self.warn(f"{name}: the attribute `version` is obsolete, it will be ignored")
            doc = {k: v for k, v in doc.items() if k != "version"}
        ctx = canonical.Context(name, base_dir, self.env)
        out: dict[str, Any] = {}
        for k, v in doc.items():
            if k == "services":
                out[k] = {s: canonical.service(s, d, ctx) for s, d in (v or {}).items()}
            elif k in _RESOURCES:
                out[k] = {r: canonical.resource(k, r, d, ctx) for r, d in (v or {}).items()}
            else:
                out[k] = v
        self.cache[key] = out
        return out

    def with_extends(self, path: Path, base_dir: Path) -> dict[str, Any]:
        doc = dict(self.load(path, base_dir))
        services = doc.get("services") or {}
        doc["services"] = {name: self.extended(path, base_dir, name, ())
                           for name in services}
        return doc

    def project_file(self, path: Path, working_dir: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
        """A file of the project (``-f`` or included) with its ``extends`` resolved and then the
        resources of its ``include`` entries added (``chain``: the files including it)."""
        doc = self.with_extends(path, working_dir)
        chain += (Path(os.path.normpath(path)),)
        for i, entry in enumerate(doc.pop("include", None) or []):
            key = f"include.{i}"
            paths, imported = self.included(entry, str(path), key, working_dir, chain)
            for kind in ("services", *_RESOURCES):
                if not imported.get(kind):
                    continue
                section = dict(doc.get(kind) or {})
                for name, res in imported[kind].items():
                    # As docker compose: the same definition twice is no conflict.
                    if name in section and section[name] != res:
                        raise ComposeError(f"{kind}.{name} conflicts with imported resource "
                                           f"(from {', '.join(map(str, paths))})", where=where(str(path), None, key))
                    section[name] = res
                doc[kind] = section
        return doc

    def included(self, entry: Any, file: str, key: str, working_dir: Path,
                 chain: tuple[Path, ...]) -> tuple[list[Path], dict[str, Any]]:
        """The files of one ``include`` entry of ``file`` and the model they make, loaded as an
        application of their own: relative paths against its project directory (the first
        file's directory unless ``project_directory``), interpolation with its env files (``.env``
        there unless ``env_file``) under the including project's environment."""
        ctx = canonical.Context(file, working_dir, self.env)
        if isinstance(entry, str):
            entry = {"path": entry}
        if not entry.get("path"):
            raise ctx.error(None, key, "path is required")
        paths = [Path(ctx.path(p)) for p in canonical.string_list(entry["path"])]
        for p in paths:
            if p in chain:
                cycle = " -> ".join(str(f) for f in chain + (p,))
                raise ctx.error(None, key, f"include cycle detected: {cycle}")
            if not p.is_file():
                raise ctx.error(None, key, f"included file {p} not found")
        if entry.get("project_directory"):
            project_dir = Path(ctx.path(entry["project_directory"]))
        else:
            project_dir = paths[0].parent
        if entry.get("env_file"):
            env_paths = [Path(ctx.path(p)) for p in canonical.string_list(entry["env_file"])]
            for p in env_paths:
                if not p.is_file():
                    raise ctx.error(None, f"{key}.env_file", f"env file {p} not found")
        else:
            default = project_dir / ".env"
            env_paths = [default] if default.is_file() else []
        reader = _Files(environment_over_files(env_paths, self.env, self.warn), self.warn, self.stdin)
        model: dict[str, Any] = {}
        for p in paths:
            model = merge.merge_documents(model, reader.project_file(p, project_dir, chain))
        return paths, merge.strip(model)

    def extended(self, path: Path, base_dir: Path, name: str,
                 chain: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        """Service ``name`` of file ``path`` with its ``extends`` resolved (recursively)."""
        here = (str(path), name)
        if here in chain:
            cycle = " -> ".join(f"{s} ({f})" for f, s in chain + (here,))
            raise ComposeError(f"circular extends: {cycle}")
        if len(chain) > MAX_EXTENDS_DEPTH:
            raise ComposeError(f"extends nested deeper than {MAX_EXTENDS_DEPTH} levels", where=where(str(path), name))
        services = self.load(path, base_dir).get("services") or {}
        if name not in services:
            raise ComposeError(f'cannot extend service "{name}": no such service', where=str(path))
        svc = services[name]
        ext = svc.get("extends")
        if not ext:
            return svc
        base_name = ext["service"]
        if ext.get("file"):
            other = (Path(str(path)).parent / ext["file"]) if str(path) != "-" else Path(ext["file"])
            other = Path(os.path.normpath(other))
            if not other.is_file():
                raise ComposeError(f"extends file {ext['file']} not found",
                                   where=where(str(path), name, "extends.file"))
            base = self.extended(other, other.parent, base_name, chain + (here,))
        else:
            if base_name not in services:
                raise ComposeError(f'cannot extend service "{base_name}": no such service in this file',
                                   where=where(str(path), name, "extends"))
            base = self.extended(path, base_dir, base_name, chain + (here,))
        own = {k: v for k, v in svc.items() if k != "extends"}
        return merge.merge_service({k: v for k, v in base.items() if k != "extends"}, own)


# -- the project --------------------------------------------------------------------------------------
def normalize_project_name(name: str) -> str:
    """docker compose's rule for a name taken from a directory: lower case, only a-z 0-9 _ -,
    no leading _ or -."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


def _check_project_name(name: str, source: str) -> str:
    if not PROJECT_NAME_RE.match(name):
        raise ComposeError(f"invalid project name {name!r} (from {source}): it must consist only of lowercase "
                           f"letters, digits, hyphens and underscores, and start with a letter or digit")
    return name


def load_project(opts: LoadOptions, warn: Callable[[str], None] | None = None) -> Project:
    warnings: list[str] = []

    def _warn(msg: str) -> None:
        if msg not in warnings:
            warnings.append(msg)
            if warn is not None:
                warn(msg)

    environ = dict(os.environ if opts.environ is None else opts.environ)
    files = find_files(opts, environ)
    cwd = Path(opts.cwd or os.getcwd())
    first = files[0]
    if opts.project_directory:
        project_dir = Path(os.path.normpath(cwd / opts.project_directory))
    elif str(first) == "-":
        project_dir = cwd
    else:
        project_dir = Path(os.path.normpath(first.parent))
    env = project_environment(opts, project_dir, environ, _warn)
    reader = _Files(env, _warn, opts.stdin)
    model: dict[str, Any] = {}
    for path in files:
        if str(path) != "-" and not path.is_file():
            raise ComposeError(f"compose file {path} not found")
        model = merge.merge_documents(model, reader.project_file(path, project_dir))
    model = merge.strip(model)
    name = _project_name(opts, env, model, project_dir)
    return _finish(model, name, project_dir, files, env, opts, _warn, warnings)


def _project_name(opts: LoadOptions, env: Mapping[str, str], model: dict[str, Any], project_dir: Path) -> str:
    if opts.project_name:
        return _check_project_name(opts.project_name, "-p")
    if env.get("COMPOSE_PROJECT_NAME"):
        return _check_project_name(env["COMPOSE_PROJECT_NAME"], "COMPOSE_PROJECT_NAME")
    if model.get("name"):
        return _check_project_name(str(model["name"]), "the top-level name")
    name = normalize_project_name(project_dir.name)
    if not name:
        raise ComposeError(f"cannot derive a project name from the directory {project_dir.name!r}",
                           hint="give one with -p")
    return name


def _active(services: dict[str, dict[str, Any]], profiles: set[str], named: set[str]) -> set[str]:
    active = set()
    for name, svc in services.items():
        own = set(svc.get("profiles") or [])
        if not own or "*" in profiles or own & profiles or name in named:
            active.add(name)
    # What a service named on the command line depends on is enabled with it.
    stack = [n for n in named if n in services]
    while stack:
        for dep in services[stack.pop()].get("depends_on") or {}:
            if dep in services and dep not in active:
                active.add(dep)
                stack.append(dep)
    return active


def _finish(model: dict[str, Any], name: str, project_dir: Path, files: list[Path], env: dict[str, str],
            opts: LoadOptions, warn: Callable[[str], None], warnings: list[str]) -> Project:
    file0 = str(files[0])
    all_services: dict[str, dict[str, Any]] = model.get("services") or {}
    for named in opts.services:
        if named not in all_services:
            raise ComposeError(f"no such service: {named}")
    profiles = set(opts.profiles) or {p for p in env.get("COMPOSE_PROFILES", "").split(",") if p}
    active = _active(all_services, profiles, set(opts.services))
    services = {n: dict(s) for n, s in all_services.items() if n in active}
    disabled = {n: s for n, s in all_services.items() if n not in active}
    networks = {k: dict(v) for k, v in (model.get("networks") or {}).items()}
    volumes = {k: dict(v) for k, v in (model.get("volumes") or {}).items()}
    secrets = {k: dict(v) for k, v in (model.get("secrets") or {}).items()}
    configs = {k: dict(v) for k, v in (model.get("configs") or {}).items()}
    uses_default = False
    for sname, svc in services.items():
        _env_files(sname, svc, env, warn, file0)
        if "image" not in svc and "build" not in svc:
            raise ComposeError("has neither an image nor a build context specified", where=where(file0, sname))
        if "network_mode" not in svc and not svc.get("networks"):
            svc["networks"] = {"default": None}
        if svc.get("network_mode") and svc.get("networks"):
            raise ComposeError("network_mode and networks cannot be combined", where=where(file0, sname, "networks"))
        for net in svc.get("networks") or {}:
            if net == "default" and "default" not in networks:
                uses_default = True
            elif net not in networks:
                raise ComposeError(f'refers to undefined network {net}', where=where(file0, sname, "networks"))
        for i, vol in enumerate(svc.get("volumes") or []):
            if vol.get("type") == "volume" and vol.get("source") and vol["source"] not in volumes:
                raise ComposeError(f'refers to undefined volume {vol["source"]}',
                                   where=where(file0, sname, f"volumes.{i}"))
        for kind, table in (("secrets", secrets), ("configs", configs)):
            for ref in svc.get(kind) or []:
                if ref.get("source") not in table:
                    raise ComposeError(f'refers to undefined {kind[:-1]} {ref.get("source")}',
                                       where=where(file0, sname, kind))
        deps = svc.get("depends_on") or {}
        for dep, spec in list(deps.items()):
            if dep not in services:
                if spec.get("required", True) is False:
                    warn(f'service "{sname}": optional dependency "{dep}" is not defined or not enabled; ignored')
                    del deps[dep]
                    continue
                state = "disabled (its profiles are not active)" if dep in disabled else "undefined"
                raise ComposeError(f'depends on {state} service "{dep}"', where=where(file0, sname, "depends_on"))
        if svc.get("container_name") and int(svc.get("scale", 1)) > 1:
            raise ComposeError("container_name cannot be used with scale > 1",
                               where=where(file0, sname, "container_name"))
    _check_cycles(services, file0)
    if uses_default:
        networks["default"] = {}
    for table in (networks, volumes, secrets, configs):
        for key, res in table.items():
            if "name" not in res:
                res["name"] = key if res.get("external") else f"{name}_{key}"
            table[key] = {"name": res.pop("name"), **res}
    extensions = {k: v for k, v in model.items() if k.startswith("x-")}
    return Project(name=name, working_dir=project_dir, files=files, services=services, disabled=disabled,
                   networks=networks, volumes=volumes, secrets=secrets, configs=configs, extensions=extensions,
                   environment=env, warnings=warnings)


def _env_files(sname: str, svc: dict[str, Any], env: Mapping[str, str], warn: Callable[[str], None],
               file0: str) -> None:
    from hoist.compose.dotenv import read_env_file

    if not svc.get("env_file"):
        return
    merged: dict[str, Any] = {}
    for entry in svc["env_file"]:
        path = Path(entry["path"])
        if not path.is_file():
            if entry.get("required", True):
                raise ComposeError(f"env file {path} not found", where=where(file0, sname, "env_file"))
            continue
        merged.update(read_env_file(path, env, warn))
    merged.update(svc.get("environment") or {})
    svc["environment"] = merged


def _check_cycles(services: dict[str, dict[str, Any]], file0: str) -> None:
    state: dict[str, int] = {}
    for start in sorted(services):
        if state.get(start):
            continue
        # Iterative DFS: (node, iterator over its dependencies); a grey node met again is a cycle.
        path = [start]
        state[start] = 1
        stack = [(start, iter(sorted(services[start].get("depends_on") or {})))]
        while stack:
            node, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                raise ComposeError(f"dependency cycle: {' -> '.join(cycle)}",
                                   where=where(file0, node, "depends_on"))
            if not state.get(dep):
                state[dep] = 1
                path.append(dep)
                stack.append((dep, iter(sorted(services[dep].get("depends_on") or {}))))
