"""``hoist port CONTAINER [PRIVATE_PORT[/PROTO]]``: the host ports a running container publishes."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("private", nargs="?", metavar="PRIVATE_PORT[/PROTO]")


def run(args: argparse.Namespace) -> int:
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure
    from runtime.network.attach import live_record
    from runtime.network.ports import format_ports

    root = paths.hoist_root()
    try:
        container = ContainerStore(root / "containers").get(args.container)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    rec = live_record(root, container.id) if container.init_pid() else None
    bindings = rec.ports if rec is not None else []
    if args.private is None:
        for line in format_ports(bindings):
            print(line)
        return 0
    port, _, proto = args.private.partition("/")
    proto = proto or "tcp"
    if not port.isdigit():
        raise UserError(f"invalid port {args.private!r} (use PORT or PORT/tcp|udp)")
    found = [b for b in bindings if b["container_port"] == int(port) and b["proto"] == proto]
    if not found:
        raise UserError(f"no public port '{port}/{proto}' published for {container.name}")
    for b in found:
        print(f"{b['host_ip']}:{b['host_port']}")
    return 0
