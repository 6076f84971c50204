"""``hoist compose``: multi-container applications from compose files (the Compose Specification).

``hoist compose [-f FILE]... [-p NAME] [--project-directory DIR] [--env-file FILE]...
[--profile NAME]... COMMAND``. The model is ``hoist.compose.loader``'s, the engine
``hoist.compose.engine``'s; this module only parses the command line and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from hoist import paths
from hoist.errors import UserError

COMMANDS = ("build", "config", "down", "exec", "images", "logs", "ps", "pull", "push", "restart", "rm",
            "run", "start", "stop", "top", "up")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", dest="files", action="append", default=[], metavar="FILE",
                        help="compose file (repeatable; later files override earlier ones)")
    parser.add_argument("-p", "--project-name", metavar="NAME", help="project name (default: the directory's)")
    parser.add_argument("--project-directory", metavar="DIR", help="base of relative paths (default: the first file's)")
    parser.add_argument("--env-file", dest="env_files", action="append", default=[], metavar="FILE",
                        help="environment file for interpolation (default: .env in the project directory)")
    parser.add_argument("--profile", dest="profiles", action="append", default=[], metavar="NAME",
                        help="enable services of this profile (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("config", help="validate and print the normalised model")
    p.add_argument("-q", "--quiet", action="store_true", help="only validate")
    p.add_argument("--services", action="store_true", help="print the service names")
    p.add_argument("--volumes", action="store_true", help="print the volume names")
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.add_argument("--hash", metavar="SERVICES", help="print the config hash of services ('*' for all)")

    p = sub.add_parser("up", help="create and start the services' containers")
    p.add_argument("-d", "--detach", action="store_true", help="leave the containers running in the background")
    p.add_argument("--build", action="store_true", help="build images before starting")
    p.add_argument("--no-build", action="store_true", help="do not build missing images")
    p.add_argument("--pull", choices=("always", "missing", "never"), help="pull policy for every service")
    p.add_argument("--force-recreate", action="store_true", help="recreate containers even if unchanged")
    p.add_argument("--no-recreate", action="store_true", help="keep existing containers even if changed")
    p.add_argument("--no-deps", action="store_true", help="do not start the services' dependencies")
    p.add_argument("--no-start", action="store_true", help="create the containers but do not start them")
    p.add_argument("--remove-orphans", action="store_true", help="remove containers of services not in the files")
    p.add_argument("--wait", action="store_true", help="wait until the services are running (healthy)")
    p.add_argument("services", nargs="*", metavar="SERVICE")

    p = sub.add_parser("down", help="stop and remove the project's containers")
    p.add_argument("-v", "--volumes", action="store_true", help="remove the project's named and anonymous volumes")
    p.add_argument("--rmi", choices=("local", "all"), help="remove images: built ones without a name (local) or all")
    p.add_argument("--remove-orphans", action="store_true", help="remove containers of services not in the files")

    p = sub.add_parser("ps", help="list the project's containers")
    p.add_argument("-a", "--all", action="store_true", help="stopped containers too")
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")
    p.add_argument("--services", action="store_true", help="service names only")
    p.add_argument("--format", default="table", metavar="FORMAT",
                   help="table (the default), json, or a Go template ('table ...' for a header)")
    p.add_argument("services_filter", nargs="*", metavar="SERVICE")

    p = sub.add_parser("logs", help="show the services' output, prefixed per container")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", metavar="N", default="all", help="lines from the end of each log (default all)")
    p.add_argument("--no-color", action="store_true")
    p.add_argument("--no-log-prefix", action="store_true")
    p.add_argument("services", nargs="*", metavar="SERVICE")

    for verb, text in (("build", "build the services' images"), ("pull", "pull the services' images"),
                       ("push", "push the services' images"), ("start", "start existing containers"),
                       ("images", "list the images the containers use"), ("top", "show the containers' processes")):
        p = sub.add_parser(verb, help=text)
        if verb == "build":
            p.add_argument("--no-cache", action="store_true")
            p.add_argument("--pull", action="store_true", help="always pull base images")
        if verb == "pull":
            p.add_argument("--ignore-pull-failures", action="store_true")
        p.add_argument("services", nargs="*", metavar="SERVICE")
    for verb in ("stop", "restart"):
        p = sub.add_parser(verb, help=f"{verb} the services' containers")
        p.add_argument("-t", "--timeout", type=float, help="seconds before SIGKILL (default: stop_grace_period)")
        p.add_argument("services", nargs="*", metavar="SERVICE")
    p = sub.add_parser("rm", help="remove stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="do not ask (hoist never asks)")
    p.add_argument("-s", "--stop", action="store_true", help="stop running containers first")
    p.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes too")
    p.add_argument("services", nargs="*", metavar="SERVICE")

    p = sub.add_parser("exec", help="run a command in a running service container")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("-T", "--no-TTY", action="store_true", help="accepted (hoist allocates no TTY)")
    p.add_argument("--index", type=int, default=1, help="which container of the service (default 1)")
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")

    p = sub.add_parser("run", help="run a one-off command in a new container of a service")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("--entrypoint")
    p.add_argument("--no-deps", action="store_true")
    p.add_argument("-T", "--no-TTY", action="store_true", help="accepted (hoist allocates no TTY)")
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")


def _warn(message: str) -> None:
    print(f"hoist compose: warning: {message}", file=sys.stderr, flush=True)


def _project(args: argparse.Namespace, services: list[str] | None = None) -> Any:
    from hoist.compose.loader import LoadOptions, load_project

    return load_project(LoadOptions(files=args.files, project_name=args.project_name,
                                    project_directory=args.project_directory, env_files=args.env_files,
                                    profiles=args.profiles, services=services or []), warn=_warn)


def _engine(project: Any) -> Any:
    from hoist.compose.engine import Engine
    from storage.fsutil import secure_store_root

    return Engine(project, secure_store_root(paths.hoist_root()))


def _services_arg(args: argparse.Namespace) -> list[str]:
    return list(getattr(args, "services", None) or getattr(args, "services_filter", None) or [])


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure

    try:
        return _dispatch(args)
    except RuntimeFailure as e:
        raise UserError(str(e), exit_code=e.exit_code if e.exit_code not in (0, 125) else 1) from None
    except OSError as e:
        raise UserError(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")) from None


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "config":
        return _config(args)
    names = [args.service] if cmd in ("exec", "run") else _services_arg(args)
    project = _project(args, names)
    engine = _engine(project)
    for name in names:
        if name not in project.services:
            raise UserError(f"no such service: {name}")
    handler = globals()[f"_cmd_{cmd}"]
    return int(handler(args, project, engine) or 0)


def _config(args: argparse.Namespace) -> int:
    from hoist.compose.engine import config_hash
    from hoist.compose.yamlio import dump_yaml

    project = _project(args)
    if args.quiet:
        return 0
    if args.services:
        for name in project.order(None, with_deps=False):
            print(name)
        return 0
    if args.volumes:
        for name in project.volumes:
            print(name)
        return 0
    if args.hash:
        wanted = sorted(project.services) if args.hash == "*" else args.hash.split(",")
        for name in wanted:
            if name not in project.services:
                raise UserError(f"no such service: {name}")
            print(f"{name} {config_hash(project.services[name])}")
        return 0
    # As docker compose: every $ printed as $$, so the output reads back as the same model.
    doc = _escape_dollars(project.to_doc())
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        sys.stdout.write(dump_yaml(doc))
    return 0


def _escape_dollars(node: Any) -> Any:
    if isinstance(node, str):
        return node.replace("$", "$$")
    if isinstance(node, dict):
        return {_escape_dollars(k): _escape_dollars(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_escape_dollars(v) for v in node]
    return node


def _cmd_up(args: argparse.Namespace, project: Any, engine: Any) -> int:
    from hoist.compose.engine import UpOptions, follow_logs

    if args.build and args.no_build:
        raise UserError("--build and --no-build cannot be combined")
    if args.force_recreate and args.no_recreate:
        raise UserError("--force-recreate and --no-recreate cannot be combined")
    opts = UpOptions(detach=args.detach, build=args.build, no_build=args.no_build, pull=args.pull,
                     force_recreate=args.force_recreate, no_recreate=args.no_recreate, no_deps=args.no_deps,
                     remove_orphans=args.remove_orphans, wait=args.wait, no_start=args.no_start)
    containers = engine.up(args.services, opts)
    if args.detach or args.no_start:
        return 0
    # Attached: the containers' output until they have all exited; Ctrl-C stops them.
    try:
        follow_logs(containers, True, None, sys.stdout.isatty(), sys.stdout.buffer)
    except KeyboardInterrupt:
        print("Gracefully stopping... (press Ctrl+C again to force)", file=sys.stderr, flush=True)
        for c in reversed(containers):
            engine.stop(c)
        return 130
    return 0


def _cmd_down(args: argparse.Namespace, project: Any, engine: Any) -> int:
    engine.down(remove_volumes=args.volumes, remove_orphans=args.remove_orphans, rmi=args.rmi)
    return 0


def _status(status: str, state: dict[str, Any]) -> str:
    from runtime.containers import uptime_text

    now = time.time()
    if status == "running":
        from hoist.commands.ps import health_suffix

        return f"Up {uptime_text(now - state.get('started_at', now))}" + health_suffix(state)
    if status == "exited":
        return f"Exited ({state.get('exit_code', 255)}) {uptime_text(now - state.get('finished_at', now))} ago"
    return "Created"


def _cmd_ps(args: argparse.Namespace, project: Any, engine: Any) -> int:
    from hoist.compose.engine import PROJECT, SERVICE
    from runtime import health
    from runtime.containers import uptime_text

    names = _services_arg(args) or None
    containers = [c for c in engine.containers(names) if args.all or c.status()[0] == "running"]
    if args.services:
        for name in sorted({c.spec.labels.get(SERVICE) for c in containers}):
            print(name)
        return 0
    if args.quiet:
        for c in containers:
            print(c.id)
        return 0
    rows = []
    for c in containers:
        spec = c.spec
        command = " ".join(spec.argv)
        command = f'"{command[:20]}…"' if len(command) > 20 else f'"{command}"'
        status, state = c.status()
        check = health.status_of(state) if status == "running" else health.NONE
        rows.append({"Name": spec.name, "Image": spec.image, "Command": command,
                     "Project": spec.labels.get(PROJECT, ""), "Service": spec.labels.get(SERVICE, ""),
                     "Created": f"{uptime_text(time.time() - spec.created)} ago",
                     "Status": _status(status, state), "ID": c.id, "State": status,
                     "Health": "" if check == health.NONE else check,
                     "ExitCode": int(state.get("exit_code", 0) or 0) if status == "exited" else 0,
                     "Ports": _ports_text(engine.root, c)})
    if args.format == "json":
        for row in rows:
            print(json.dumps(row))
        return 0
    if args.format != "table":
        _print_template(args.format, rows)
        return 0
    header = ("NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS")
    table = [header] + [(r["Name"], r["Image"], r["Command"], r["Service"], r["Created"], r["Status"], r["Ports"])
                        for r in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for row in table:
        print("   ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


_PS_HEADERS = {"Name": "NAME", "Image": "IMAGE", "Command": "COMMAND", "Project": "PROJECT",
               "Service": "SERVICE", "Created": "CREATED", "Status": "STATUS", "ID": "CONTAINER ID",
               "State": "STATE", "Health": "HEALTH", "ExitCode": "EXIT CODE", "Ports": "PORTS"}


def _print_template(fmt: str, rows: list[dict[str, Any]]) -> None:
    """docker compose ps's ``--format TEMPLATE``: the Go template over each container's summary."""
    from hoist.commands.ps import print_rows

    default = "\t".join(f"{{{{.{k}}}}}" for k in ("Name", "Image", "Command", "Service", "Created", "Status",
                                                   "Ports"))
    print_rows(fmt, rows, "api.ContainerSummary", _PS_HEADERS, default)


def _cmd_logs(args: argparse.Namespace, project: Any, engine: Any) -> int:
    from hoist.compose.engine import follow_logs

    tail: int | None = None
    if args.tail != "all":
        try:
            tail = int(args.tail)
        except ValueError:
            raise UserError(f"invalid --tail {args.tail!r}: a number of lines, or all") from None
    containers = engine.containers(args.services or None)
    if args.no_log_prefix:
        for c in containers:
            c.spec.name = ""
    color = sys.stdout.isatty() and not args.no_color and not os.environ.get("NO_COLOR")
    follow_logs(containers, args.follow, tail, color, sys.stdout.buffer)
    return 0


def _cmd_build(args: argparse.Namespace, project: Any, engine: Any) -> int:
    names = args.services or sorted(project.services)
    built = 0
    for name in names:
        if "build" in project.services[name]:
            engine.build(name, no_cache=args.no_cache, pull=args.pull)
            built += 1
    return 0


def _cmd_pull(args: argparse.Namespace, project: Any, engine: Any) -> int:
    for name in args.services or sorted(project.services):
        svc = project.services[name]
        if "image" not in svc:
            continue                   # built, not pulled
        if "build" in svc and svc.get("pull_policy") == "build":
            continue
        engine.pull(name, ignore_failures=args.ignore_pull_failures)
    return 0


def _cmd_push(args: argparse.Namespace, project: Any, engine: Any) -> int:
    from hoist.compose.engine import image_name
    from hoist.compose.images import push_image

    for name in args.services or sorted(project.services):
        svc = project.services[name]
        if "build" not in svc or "image" not in svc:
            continue                   # compose pushes the images it builds and names
        push_image(image_name(project, name), sys.stderr)
    return 0


def _cmd_start(args: argparse.Namespace, project: Any, engine: Any) -> int:
    engine.start_services(args.services or None)
    return 0


def _cmd_stop(args: argparse.Namespace, project: Any, engine: Any) -> int:
    engine.stop_services(args.services or None, args.timeout)
    return 0


def _cmd_restart(args: argparse.Namespace, project: Any, engine: Any) -> int:
    engine.stop_services(args.services or None, args.timeout)
    engine.start_services(args.services or None)
    return 0


def _cmd_rm(args: argparse.Namespace, project: Any, engine: Any) -> int:
    engine.rm(args.services or None, stop=args.stop, remove_volumes=args.volumes)
    return 0


def _cmd_images(args: argparse.Namespace, project: Any, engine: Any) -> int:
    from hoist.compose.engine import SERVICE

    rows = [("CONTAINER", "REPOSITORY", "TAG", "IMAGE ID")]
    for c in engine.containers(args.services or None):
        if c.spec.labels.get(SERVICE) is None:
            continue
        repo, _, tag = c.spec.image.rpartition(":")
        if "/" in tag or not repo:
            repo, tag = c.spec.image, "latest"
        rows.append((c.name, repo, tag, c.spec.image_id.split(":")[-1][:12]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _cmd_top(args: argparse.Namespace, project: Any, engine: Any) -> int:
    for c in engine.containers(args.services or None):
        pid = c.init_pid()
        if not pid:
            continue
        print(c.name)
        print(f"{'UID':<8} {'PID':<8} {'PPID':<8} CMD")
        for p in _processes_under(pid):
            print(f"{p[0]:<8} {p[1]:<8} {p[2]:<8} {p[3]}")
        print()
    return 0


def _processes_under(root_pid: int) -> list[tuple[int, int, int, str]]:
    """The host's view of the container's processes: PID 1 and its descendants."""
    procs: dict[int, tuple[int, int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
        procs[int(entry)] = (uid, ppid, cmd)
    out = []
    wanted = {root_pid}
    for pid in sorted(procs):
        uid, ppid, cmd = procs[pid]
        if pid == root_pid or ppid in wanted:
            wanted.add(pid)
            out.append((uid, pid, ppid, cmd))
    return out


def _ports_text(root: Any, container: Any) -> str:
    """docker compose ps's PORTS: ``0.0.0.0:8080->80/tcp, ...`` of a running container."""
    from runtime.network.attach import live_record

    rec = live_record(root, container.id) if container.init_pid() else None
    return ", ".join(f"{b['host_ip']}:{b['host_port']}->{b['container_port']}/{b['proto']}"
                     for b in (rec.ports if rec is not None else []))


def _cmd_exec(args: argparse.Namespace, project: Any, engine: Any) -> int:
    if not args.cmd:
        raise UserError("no command given", hint="hoist compose exec SERVICE COMMAND [ARG...]")
    containers = engine.service_containers(args.service)
    container = containers.get(args.index)
    if container is None or container.status()[0] != "running":
        which = f" (index {args.index})" if args.index != 1 else ""
        raise UserError(f'service "{args.service}" is not running{which}')
    return int(engine.runtime.exec(container, list(args.cmd), args.env, args.user, args.workdir))


def _cmd_run(args: argparse.Namespace, project: Any, engine: Any) -> int:
    from hoist.compose.engine import UpOptions

    service = args.service
    deps = [d for d in project.order([service]) if d != service]
    if deps and not args.no_deps:
        engine.up(deps, UpOptions(detach=True))
    image = engine.ensure_image(service, UpOptions())
    engine.check_supported(service)
    name = args.name or f"{project.name}-{service}-run-{os.urandom(6).hex()}"
    entrypoint = None
    if args.entrypoint is not None:
        import shlex

        entrypoint = shlex.split(args.entrypoint)
    container = engine.create(service, 1, image, oneoff=True, name=name,
                              command=list(args.cmd) if args.cmd else None, entrypoint=entrypoint,
                              extra_env=list(args.env), user=args.user, workdir=args.workdir,
                              remove=args.rm)
    if args.detach:
        engine.start(container)
        print(container.name)
        return 0
    return int(engine.runtime.run_foreground(container, interactive=True))
