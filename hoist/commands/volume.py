"""``hoist volume create|ls|inspect|rm|prune``: named volumes (``runtime/volumes.py``), as
``docker volume`` manages them (the local driver only)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hoist import paths
from hoist.errors import UserError

HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
           "Labels": "LABELS", "CreatedAt": "CREATED", "Links": "LINKS", "Size": "SIZE"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a volume (a random name if none is given)")
    create.add_argument("name", nargs="?", metavar="NAME")
    create.add_argument("-d", "--driver", default="local", help="local (the only one)")
    create.add_argument("-l", "--label", action="append", default=[], metavar="K=V")
    create.add_argument("-o", "--opt", action="append", default=[], metavar="K=V", help="not supported")
    ls = sub.add_parser("ls", help="list volumes")
    ls.add_argument("-q", "--quiet", action="store_true", help="names only")
    ls.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="name=, label=KEY[=VALUE], dangling=true|false, driver=local")
    ls.add_argument("--format", metavar="TEMPLATE", help="a Go template ('table ...'), or json")
    inspect = sub.add_parser("inspect", help="show volumes as JSON")
    inspect.add_argument("names", nargs="+", metavar="NAME")
    inspect.add_argument("-f", "--format", metavar="TEMPLATE")
    rm = sub.add_parser("rm", help="remove volumes no container uses")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.add_argument("-f", "--force", action="store_true", help="no error for a missing volume")
    prune = sub.add_parser("prune", help="remove unused anonymous volumes (-a: all unused)")
    prune.add_argument("-a", "--all", action="store_true", help="named ones too")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask (hoist never asks)")
    prune.add_argument("--filter", action="append", default=[], metavar="label=K[=V]")


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.volumes import VolumeStore

    store = VolumeStore(paths.hoist_root() / "volumes")
    try:
        return int(_ACTIONS[args.action](args, store))
    except RuntimeFailure as e:
        raise UserError(str(e)) from None


def _users() -> list[tuple[str, str]]:
    from runtime.volumes import volume_users

    return volume_users(paths.containers_dir())


def _create(args: argparse.Namespace, store: Any) -> int:
    from runtime.spec import parse_labels

    if args.driver != "local":
        raise UserError(f"unsupported volume driver {args.driver!r} (only local)")
    if args.opt:
        raise UserError("volume driver options (-o) are not supported by hoist's local driver")
    # docker: a volume made by `volume create` without a name is a named one all the same
    info, _ = store.create(args.name, parse_labels(args.label), anonymous=False)
    print(info.name)
    return 0


def _rows(store: Any, filters: list[str]) -> list[Any]:
    from hoist.commands.ps import match_labels

    users = {vol for _, vol in _users()}
    wanted: dict[str, list[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or key not in ("name", "label", "dangling", "driver"):
            raise UserError(f"invalid filter '{item}'")
        wanted.setdefault(key, []).append(value)
    out = []
    for info in store.all():
        if "name" in wanted and not any(v in info.name for v in wanted["name"]):
            continue
        if "label" in wanted and not match_labels(wanted["label"], info.labels):
            continue
        if "dangling" in wanted:
            dangling = info.name not in users
            if not any((v.lower() in ("true", "1")) == dangling for v in wanted["dangling"]):
                continue
        if "driver" in wanted and "local" not in wanted["driver"]:
            continue
        out.append(info)
    return out


def _ls(args: argparse.Namespace, store: Any) -> int:
    from hoist import gotemplate

    rows = _rows(store, args.filter)
    fmt = args.format or ("{{.Name}}" if args.quiet else "table")
    if fmt == "json":
        fmt = "{{json .}}"
    contexts = [gotemplate.Struct("*formatter.volumeContext", {
        "CreatedAt": info.inspect()["CreatedAt"], "Driver": "local",
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(info.labels.items())), "Links": "N/A",
        "Mountpoint": str(info.data), "Name": info.name, "Scope": "local", "Size": "N/A"}) for info in rows]
    try:
        sys.stdout.write(gotemplate.format_rows(fmt, contexts, HEADERS, default="{{.Driver}}\t{{.Name}}"))
    except gotemplate.TemplateError as e:
        raise UserError(str(e)) from None
    return 0


def _inspect(args: argparse.Namespace, store: Any) -> int:
    from hoist import gotemplate

    found, missing = [], []
    for name in args.names:
        try:
            found.append(store.get(name).inspect())
        except Exception as e:  # VolumeNotFound: docker prints the rest and fails at the end
            missing.append(str(e))
    if args.format:
        try:
            for doc in found:
                print(gotemplate.render(gotemplate.expand_escapes(args.format), doc))
        except gotemplate.TemplateError as e:
            raise UserError(str(e)) from None
    else:
        print(json.dumps(found, indent=4))
    if missing:
        raise UserError("; ".join(missing))
    return 0


def _rm(args: argparse.Namespace, store: Any) -> int:
    from runtime.errors import RuntimeFailure

    failed = []
    users = _users()
    for name in args.names:
        try:
            store.remove(name, users, force=args.force)
            print(name)
        except RuntimeFailure as e:
            failed.append(str(e))
    if failed:
        raise UserError("; ".join(failed))
    return 0


def _prune(args: argparse.Namespace, store: Any) -> int:
    from hoist.commands.ps import match_labels, tree_size
    from hoist.progress import docker_size

    labels = []
    for item in args.filter:
        key, _, value = item.partition("=")
        if key != "label":
            raise UserError(f"invalid filter '{item}' (label=KEY[=VALUE])")
        labels.append(value)
    users = _users()
    used = {vol for _, vol in users}
    gone, freed = [], 0
    for info in store.all():
        if info.name in used or not (args.all or info.anonymous):
            continue
        if labels and not match_labels(labels, info.labels):
            continue
        size = tree_size(str(info.data))
        try:
            store.remove(info.name, users)
        except Exception:  # taken by a container meanwhile: kept
            continue
        gone.append(info.name)
        freed += size
    if gone:
        print("Deleted Volumes:")
        for name in gone:
            print(name)
        print()
    print(f"Total reclaimed space: {docker_size(freed)}")
    return 0


_ACTIONS = {"create": _create, "ls": _ls, "inspect": _inspect, "rm": _rm, "prune": _prune}
