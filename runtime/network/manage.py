"""``hoist network`` verbs over the store and the kernel: create, remove, inspect, connect,
disconnect and prune. Each change holds the networks lock and leaves the kernel matching the
records (a bridge per network, the nft table rebuilt)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from runtime.containers import Container, ContainerStore
from runtime.network import DEFAULT_BRIDGE, NetworkError, NetworkInUse, dns, nat
from runtime.network.attach import ALIAS_RE, _sweep_locked, sweep
from runtime.network.ipam import Endpoint, Network, NetworkStore
from runtime.spec import ContainerSpec


def _iso(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00", "Z")


def pseudo_id(name: str) -> str:
    """``host`` and ``none`` are listed as docker lists them, with an id that never changes."""
    return hashlib.sha256(f"hoist-network:{name}".encode()).hexdigest()


def create(root: Path, name: str, subnet: str | None, gateway: str | None, internal: bool,
           labels: dict[str, str]) -> Network:
    from runtime.network import bridge

    nat.nft_path()
    store = NetworkStore(root)
    with store.locked():
        net = store.create(name, subnet, gateway, internal, labels)
        try:
            with bridge.netlink_in() as ipr:
                bridge.ensure_bridge(ipr, net.bridge, net.gateway, net.prefixlen)
            nat.apply(store.all(), [r for r in store.records() if r.alive()])
        except BaseException:
            store._path(net.name).unlink(missing_ok=True)
            with bridge.netlink_in() as ipr:
                bridge.delete_link(ipr, net.bridge)
            raise
    return net


def remove(root: Path, ref: str) -> Network:
    from runtime.network import bridge

    store = NetworkStore(root)
    with store.locked():
        net = store.get(ref) if ref != DEFAULT_BRIDGE else None
        if net is None:
            raise NetworkError("bridge is a pre-defined network and cannot be removed")
        _sweep_locked(store)
        store.remove(net)          # NetworkInUse while a live container is attached
        with bridge.netlink_in() as ipr:
            bridge.delete_link(ipr, net.bridge)
        nat.apply(store.all(), [r for r in store.records() if r.alive()])
    return net


def prune(root: Path) -> list[str]:
    """Stale endpoints first; then every user network no live container uses."""
    from runtime.network import bridge

    sweep(root)
    store = NetworkStore(root)
    removed = []
    with store.locked():
        for net in store.all():
            if not net.user_defined or store.members(net.name):
                continue
            store.remove(net)
            with bridge.netlink_in() as ipr:
                bridge.delete_link(ipr, net.bridge)
            removed.append(net.name)
        if store.all() or removed:
            nat.apply(store.all(), [r for r in store.records() if r.alive()])
    return removed


def inspect(root: Path, net: Network) -> dict[str, Any]:
    from runtime.network import bridge

    store = NetworkStore(root)
    containers = {}
    members = store.members(net.name)
    with bridge.netlink_in() as ipr:
        for rec in members:
            ep = rec.endpoint(net.name)
            assert ep is not None
            containers[rec.container] = {"Name": rec.name, "EndpointID": hashlib.sha256(
                f"{rec.container}:{net.id}".encode()).hexdigest(), "MacAddress": _mac(ipr, ep),
                "IPv4Address": f"{ep.ip}/{net.prefixlen}", "IPv6Address": ""}
    return {"Name": net.name, "Id": net.id, "Created": _iso(net.created), "Scope": "local",
            "Driver": "bridge", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
            "Internal": net.internal, "Attachable": False, "Ingress": False,
            "Containers": containers,
            "Options": {"com.docker.network.bridge.name": net.bridge}, "Labels": dict(net.labels)}


def _mac(ipr: object, ep: Endpoint) -> str:
    """The host end's (the container end is in its namespace); by netlink, since /sys shows
    the namespace it was mounted in, not necessarily this one."""
    from runtime.network import bridge

    info = bridge.link_info(ipr, ep.veth)
    return str(info["mac"]) if info else ""


def _running_netns(container: Container) -> int | None:
    pid = container.init_pid()
    if not pid:
        return None
    return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _bridged_spec(container: Container, verb: str) -> ContainerSpec:
    spec = container.spec
    if spec.network in ("none", "host") or spec.network.startswith("container:"):
        raise NetworkError(f"container {spec.name} uses network mode {spec.network.split(':')[0]}: "
                           f"it cannot be {verb} networks")
    return spec


def connect(root: Path, net_ref: str, container_ref: str, ip: str | None, aliases: list[str]) -> None:
    from runtime.network import bridge

    nat.nft_path()
    container = ContainerStore(root / "containers").get(container_ref)
    spec = _bridged_spec(container, "connected to")
    for alias in aliases:
        if not ALIAS_RE.match(alias):
            raise NetworkError(f"invalid network alias {alias!r} (letters, digits, _ . -)")
    store = NetworkStore(root)
    with store.locked():
        net = store.get(net_ref)
        if net.name in spec.networks:
            raise NetworkError(f"endpoint with name {spec.name} already exists in network {net.name}")
        if (ip or aliases) and not net.user_defined:
            raise NetworkError("--ip and --alias need a user-defined network")
        fd = _running_netns(container)
        rec = store.record(container.id)
        if fd is not None and rec is not None and rec.alive():
            try:
                wanted = ip
                addr = store.allocate(net, wanted)
                ep = Endpoint(network=net.name, ip=addr, ifname=bridge.next_ifname(fd),
                              veth=bridge.veth_name(container.id, net.id), aliases=list(aliases))
                with bridge.netlink_in() as ipr:
                    bridge.ensure_bridge(ipr, net.bridge, net.gateway, net.prefixlen)
                    bridge.add_endpoint(ipr, fd, net.bridge, ep.veth, ep.ifname, addr, net.prefixlen,
                                        None if net.internal else net.gateway)
                rec.endpoints.append(ep)
                store.write_record(rec)
                try:
                    nat.apply(store.all(), [r for r in store.records() if r.alive()])
                except BaseException:
                    rec.endpoints.remove(ep)
                    store.write_record(rec)
                    with bridge.netlink_in() as ipr:
                        bridge.delete_link(ipr, ep.veth)
                    raise
                dns.rewrite_members(store, {e.network for e in rec.endpoints}, also=rec)
            finally:
                os.close(fd)
        elif ip or aliases:
            raise NetworkError("--ip and --alias need a running container (hoist keeps them per start)")
        elif fd is not None:
            os.close(fd)
        spec.networks.append(net.name)
        container.write_spec(spec)


def disconnect(root: Path, net_ref: str, container_ref: str) -> None:
    from runtime.network import bridge

    container = ContainerStore(root / "containers").get(container_ref)
    spec = _bridged_spec(container, "disconnected from")
    store = NetworkStore(root)
    with store.locked():
        net = store.get(net_ref)
        if net.name not in spec.networks:
            raise NetworkError(f"container {spec.name} is not connected to network {net.name}")
        rec = store.record(container.id)
        ep = rec.endpoint(net.name) if rec is not None and rec.alive() else None
        if rec is not None and ep is not None:
            with bridge.netlink_in() as ipr:
                bridge.delete_link(ipr, ep.veth)
            rec.endpoints.remove(ep)
            store.write_record(rec)
            nat.apply(store.all(), [r for r in store.records() if r.alive()])
            dns.rewrite_members(store, {net.name} | {e.network for e in rec.endpoints}, also=rec)
        spec.networks.remove(net.name)
        if spec.network == net.name:
            spec.network = spec.networks[0] if spec.networks else "none"
        container.write_spec(spec)


__all__ = ["NetworkInUse", "connect", "create", "disconnect", "inspect", "prune", "pseudo_id", "remove"]
