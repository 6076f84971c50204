"""``hoist network create|ls|inspect|rm|connect|disconnect|prune``: docker's network verbs."""

from __future__ import annotations

import argparse
import json

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("create", help="create a bridge network")
    p.add_argument("--subnet", metavar="CIDR", help="the network's IPv4 range (default: a free /16)")
    p.add_argument("--gateway", metavar="IP", help="the bridge's address (default: the first of the subnet)")
    p.add_argument("--internal", action="store_true", help="no outbound traffic, no published ports")
    p.add_argument("-d", "--driver", default="bridge", help="bridge (the only driver)")
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("name", metavar="NAME")
    p = sub.add_parser("ls", aliases=["list"], help="list networks")
    p.add_argument("-q", "--quiet", action="store_true", help="print ids only")
    p = sub.add_parser("inspect", help="show networks as JSON")
    p.add_argument("names", nargs="+", metavar="NETWORK")
    p = sub.add_parser("rm", aliases=["remove"], help="remove networks")
    p.add_argument("names", nargs="+", metavar="NETWORK")
    p = sub.add_parser("connect", help="connect a container to a network")
    p.add_argument("--ip", metavar="ADDR")
    p.add_argument("--alias", action="append", default=[], metavar="NAME")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p = sub.add_parser("disconnect", help="disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p = sub.add_parser("prune", help="remove unused networks and what crashed containers left")
    p.add_argument("-f", "--force", action="store_true", help="do not ask (hoist never asks)")


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure

    try:
        return _ACTIONS[args.action](args)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")) from None


def _create(args: argparse.Namespace) -> int:
    from runtime.network import manage

    if args.driver != "bridge":
        raise UserError(f"network driver {args.driver!r} is not supported (use bridge)")
    labels = {}
    for item in args.label:
        k, _, v = item.partition("=")
        labels[k] = v
    net = manage.create(paths.hoist_root(), args.name, args.subnet, args.gateway, args.internal, labels)
    print(net.id)
    return 0


def _ls(args: argparse.Namespace) -> int:
    from runtime.network.ipam import NetworkStore
    from runtime.network.manage import pseudo_id

    store = NetworkStore(paths.hoist_root())
    rows = [(n.id[:12], n.name, "bridge", "local") for n in store.all()]
    if not any(r[1] == "bridge" for r in rows):
        rows.append(("-" * 12, "bridge", "bridge", "local"))  # made on first use
    rows += [(pseudo_id("host")[:12], "host", "host", "local"), (pseudo_id("none")[:12], "none", "null", "local")]
    rows.sort(key=lambda r: r[1])
    if args.quiet:
        for r in rows:
            print(r[0])
        return 0
    header = ("NETWORK ID", "NAME", "DRIVER", "SCOPE")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for row in [header, *rows]:
        print("   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from runtime.network import NetworkNotFound, manage
    from runtime.network.ipam import NetworkStore

    root = paths.hoist_root()
    store = NetworkStore(root)
    docs = []
    for name in args.names:
        if name in ("host", "none"):
            docs.append({"Name": name, "Id": manage.pseudo_id(name), "Created": "", "Scope": "local",
                         "Driver": "host" if name == "host" else "null", "EnableIPv6": False,
                         "IPAM": {"Driver": "default", "Options": None, "Config": []}, "Internal": False,
                         "Containers": {}, "Options": {}, "Labels": {}})
            continue
        with store.locked():
            try:
                net = store.get(name)
            except NetworkNotFound:
                raise UserError(f"network {name} not found") from None
        docs.append(manage.inspect(root, net))
    print(json.dumps(docs, indent=4))
    return 0


def _rm(args: argparse.Namespace) -> int:
    from runtime.network import manage

    for name in args.names:
        if name in ("host", "none"):
            raise UserError(f"{name} is a pre-defined network and cannot be removed")
        manage.remove(paths.hoist_root(), name)
        print(name)
    return 0


def _connect(args: argparse.Namespace) -> int:
    from runtime.network import manage

    manage.connect(paths.hoist_root(), args.network, args.container, args.ip, args.alias)
    return 0


def _disconnect(args: argparse.Namespace) -> int:
    from runtime.network import manage

    manage.disconnect(paths.hoist_root(), args.network, args.container)
    return 0


def _prune(args: argparse.Namespace) -> int:
    from runtime.network import manage

    removed = manage.prune(paths.hoist_root())
    if removed:
        print("Deleted Networks:")
        for name in removed:
            print(name)
    return 0


_ACTIONS = {"create": _create, "ls": _ls, "list": _ls, "inspect": _inspect, "rm": _rm, "remove": _rm,
            "connect": _connect, "disconnect": _disconnect, "prune": _prune}
