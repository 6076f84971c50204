"""A container's network, from ``hoist run`` options to the kernel and back.

``check_options`` (at create, in the CLI) validates the flags against the store and returns
the spec's network fields; ``attach`` (in the monitor, before PID 1 exists) reserves the host
ports, makes the namespace, wires an endpoint per network, writes the record and rebuilds the
nft table, all under the networks lock; ``Attachment.close`` (the monitor, after the container
ended) undoes exactly that. ``sweep`` removes what stale records (a killed monitor's) left.
Every failure leaves nothing behind: what was done so far is undone before the error rises.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.containers import ContainerStore, process_start_time
from runtime.errors import ContainerNotFound
from runtime.network import DEFAULT_BRIDGE, NON_BRIDGE_MODES, NetworkError, NetworkNotFound, dns, is_bridged, nat, ports
from runtime.network.ipam import Endpoint, Network, NetworkStore, Record, check_ip_in


@dataclass
class NetOptions:
    mode: str = "none"
    ip: str | None = None
    aliases: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    dns: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)


# More than this many published ports is refused (a stranger's image can EXPOSE thousands, and
# -P would hold a socket for each).
MAX_PUBLISHED = 1024
ALIAS_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,252}$")


def check_options(root: Path, opts: NetOptions, exposed: dict[str, Any] | None,
                  hostname_given: bool) -> dict[str, Any]:
    """The spec fields for ``opts`` (``network``, ``networks``, ``ports``, ``ip``, ``aliases``,
    ``extra_hosts``, ``dns``), or NetworkError naming the first bad one."""
    mode = opts.mode
    fields: dict[str, Any] = {"network": mode, "networks": [], "ports": [], "ip": opts.ip or "",
                              "aliases": list(opts.aliases),
                              "extra_hosts": [dns.parse_add_host(h) for h in opts.add_hosts],
                              "dns": dns.check_dns(list(opts.dns))}
    bindings: list[dict[str, Any]] = []
    for p in opts.publish:
        bindings += ports.parse_publish(p)
    if opts.publish_all:
        bindings += ports.exposed_bindings(exposed)
    bindings = ports.merge(bindings)
    if len(bindings) > MAX_PUBLISHED:
        raise NetworkError(f"too many published ports ({len(bindings)}; at most {MAX_PUBLISHED})")
    for alias in opts.aliases:
        if not ALIAS_RE.match(alias):
            raise NetworkError(f"invalid network alias {alias!r} (letters, digits, _ . -)")
    if mode.startswith("container:"):
        ref = mode.split(":", 1)[1]
        try:
            other = ContainerStore(root / "containers").get(ref)
        except ContainerNotFound:
            raise NetworkError(f"no such container: {ref} (--network container:{ref})") from None
        if not other.init_pid():
            raise NetworkError(f"cannot join network of a non running container: {ref}")
        if bindings:
            raise NetworkError("conflicting options: port publishing and the container type network mode")
        if hostname_given:
            raise NetworkError("conflicting options: hostname and the network mode")
        if opts.ip or opts.aliases or opts.dns or opts.add_hosts:
            raise NetworkError("conflicting options: --ip, --network-alias, --dns and --add-host "
                               "cannot be used with the container network mode")
        fields["network"] = f"container:{other.id}"
        fields["hostname"] = other.spec.hostname
        return fields
    if mode in NON_BRIDGE_MODES:
        if opts.ip or opts.aliases:
            raise NetworkError("--ip and --network-alias need a user-defined network")
        # docker discards published ports with these modes (a warning for host)
        return fields
    store = NetworkStore(root)
    nat.nft_path()
    try:
        net = store.get(mode) if mode != DEFAULT_BRIDGE else None
    except NetworkNotFound:
        raise NetworkNotFound(f"network {mode} not found (create it with `hoist network create {mode}`)") from None
    if net is None or not net.user_defined:
        if opts.ip:
            raise NetworkError("user specified IP address is supported on user defined networks only")
        if opts.aliases:
            raise NetworkError("network-scoped alias is supported only for containers in user defined networks")
        fields["network"] = DEFAULT_BRIDGE
    else:
        if opts.ip:
            check_ip_in(net, opts.ip)
        fields["network"] = net.name
    fields["networks"] = [fields["network"]]
    fields["ports"] = bindings
    return fields


def _owner() -> list[int]:
    pid = os.getpid()
    return [pid, process_start_time(pid) or 0]


class Attachment:
    """What ``attach`` set up for one container; ``close`` takes it all down."""

    def __init__(self, root: Path, container_id: str, netns_fd: int,
                 reservation: ports.Reservation | None) -> None:
        self.root, self.container_id = root, container_id
        self.netns_fd: int | None = netns_fd
        self.reservation = reservation

    def close(self) -> None:
        try:
            release(self.root, self.container_id)
        finally:
            if self.netns_fd is not None:
                os.close(self.netns_fd)
                self.netns_fd = None
            if self.reservation is not None:
                self.reservation.close()


def attach(root: Path, spec: Any, cdir: Path) -> Attachment | None:
    """Set up ``spec``'s network in this process (the monitor). None when the container makes
    its own namespace (``none``) or uses the host's; for ``container:ID`` the other container's
    namespace, held open."""
    mode: str = spec.network
    if mode in NON_BRIDGE_MODES:
        return None
    if mode.startswith("container:"):
        other = ContainerStore(root / "containers").get(mode.split(":", 1)[1])
        pid = other.init_pid()
        if not pid:
            raise NetworkError(f"cannot join network of a non running container: {other.name}")
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise NetworkError(f"cannot join network of container {other.name}: {e.strerror}") from None
        return _Shared(fd)
    from runtime.network import bridge

    nat.nft_path()
    reservation = ports.reserve(list(spec.ports)) if spec.ports else None
    store = NetworkStore(root)
    netns_fd: int | None = None
    rec = Record(container=spec.id, name=spec.name, hostname=spec.hostname, hosts=str(cdir / "hosts"),
                 owner=_owner(), ports=reservation.bindings if reservation else [],
                 extra_hosts=list(spec.extra_hosts))
    written = False
    try:
        with store.locked():
            _sweep_locked(store)
            netns_fd = bridge.new_netns()
            with bridge.netlink_in() as ipr:
                for i, name in enumerate(spec.networks):
                    net = store.get(name)
                    bridge.ensure_bridge(ipr, net.bridge, net.gateway, net.prefixlen)
                    ip = store.allocate(net, spec.ip if i == 0 and spec.ip else None)
                    ep = Endpoint(network=net.name, ip=ip, ifname=f"eth{i}", veth=bridge.veth_name(spec.id, net.id),
                                  aliases=list(spec.aliases) if i == 0 and net.user_defined else [])
                    bridge.add_endpoint(ipr, netns_fd, net.bridge, ep.veth, ep.ifname, ip, net.prefixlen,
                                        None if net.internal else net.gateway)
                    rec.endpoints.append(ep)
                    store.write_record(rec)   # the next allocation (and any other run) sees it
                    written = True
            nat.apply(store.all(), [r for r in store.records() if r.alive()])
            dns.rewrite_members(store, {e.network for e in rec.endpoints}, also=rec)
    except BaseException:
        with contextlib.suppress(Exception):
            _undo(store, rec, written)
        if netns_fd is not None:
            os.close(netns_fd)
        if reservation is not None:
            reservation.close()
        raise
    return Attachment(root, spec.id, netns_fd, reservation)


class _Shared(Attachment):
    """``container:ID``: only a descriptor of the other container's namespace."""

    def __init__(self, fd: int) -> None:
        self.netns_fd = fd
        self.reservation = None

    def close(self) -> None:
        if self.netns_fd is not None:
            os.close(self.netns_fd)
            self.netns_fd = None


def _undo(store: NetworkStore, rec: Record, written: bool) -> None:
    from runtime.network import bridge

    with store.locked():
        with bridge.netlink_in() as ipr:
            for ep in rec.endpoints:
                bridge.delete_link(ipr, ep.veth)
        if written:
            store.drop_record(rec.container)
            nat.apply(store.all(), [r for r in store.records() if r.alive()])
            dns.rewrite_members(store, {e.network for e in rec.endpoints})


def release(root: Path, container_id: str) -> None:
    """Remove the container's record and everything it stands for (veths, rules, hosts lines)."""
    store = NetworkStore(root)
    if store.record(container_id) is None:
        return
    from runtime.network import bridge

    with store.locked():
        rec = store.record(container_id)
        if rec is None:
            return
        with bridge.netlink_in() as ipr:
            for ep in rec.endpoints:
                bridge.delete_link(ipr, ep.veth)
        store.drop_record(container_id)
        nat.apply(store.all(), [r for r in store.records() if r.alive()])
        dns.rewrite_members(store, {e.network for e in rec.endpoints})


def _sweep_locked(store: NetworkStore) -> list[Record]:
    """Drop stale records and their veths (caller holds the lock and rebuilds the table)."""
    from runtime.network import bridge

    stale = [r for r in store.records() if not r.alive()]
    if stale:
        with bridge.netlink_in() as ipr:
            for rec in stale:
                for ep in rec.endpoints:
                    bridge.delete_link(ipr, ep.veth)
                store.drop_record(rec.container)
    return stale


def sweep(root: Path) -> list[Record]:
    """What a crash left: stale records, their veths and rules; the hosts files of the members
    of their networks are rewritten. Returns the records removed."""
    store = NetworkStore(root)
    if not store.root.is_dir():
        return []
    with store.locked():
        stale = _sweep_locked(store)
        if stale or store.all():
            try:
                nat.apply(store.all(), [r for r in store.records() if r.alive()])
            except NetworkError:
                if stale:
                    raise
        dns.rewrite_members(store, {e.network for r in stale for e in r.endpoints})
    return stale


def forget_if_stale(root: Path, container_id: str) -> None:
    """``hoist rm``: a container whose monitor was killed still has a record; take it down."""
    store = NetworkStore(root)
    rec = store.record(container_id)
    if rec is not None and not rec.alive():
        release(root, container_id)


# -- reading -----------------------------------------------------------------------------------

def live_record(root: Path, container_id: str) -> Record | None:
    rec = NetworkStore(root).record(container_id)
    return rec if rec is not None and rec.alive() else None


def network_settings(root: Path, container_id: str) -> dict[str, Any]:
    """docker's ``NetworkSettings`` (Networks, Ports) of a running container, for inspect."""
    store = NetworkStore(root)
    rec = live_record(root, container_id)
    networks: dict[str, Any] = {}
    port_map: dict[str, Any] = {}
    if rec is not None:
        for ep in rec.endpoints:
            try:
                net: Network | None = store.get(ep.network)
            except NetworkError:
                net = None
            networks[ep.network] = {
                "NetworkID": net.id if net else "", "IPAddress": ep.ip,
                "IPPrefixLen": net.prefixlen if net else 0, "Gateway": net.gateway if net else "",
                "Aliases": list(ep.aliases) or None,
                "DNSNames": [rec.name, *ep.aliases, rec.container[:12]] if net and net.user_defined else None,
            }
        for b in rec.ports:
            port_map.setdefault(f"{b['container_port']}/{b['proto']}", []).append(
                {"HostIp": b["host_ip"], "HostPort": str(b["host_port"])})
    return {"Networks": networks, "Ports": port_map}


def is_bridged_spec(spec: Any) -> bool:
    return is_bridged(spec.network)
