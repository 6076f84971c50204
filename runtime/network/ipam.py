"""Networks and endpoints on disk, and address management.

::

    <root>/networks/                 0700
    ├── .lock                        flock: held for every change below (and the kernel work
    │                                that goes with it), so concurrent ``run``s never share an
    │                                address and the nft table always matches the records
    ├── <name>.json                  a network: id, subnet, gateway, bridge, internal, created
    └── endpoints/<container id>.json
                                     a container's endpoints: owner (pid and start time of the
                                     process holding its netns), its networks with address,
                                     veth and aliases, its published ports, its hosts file

The default network ``bridge`` is written the first time something uses it. An address is in
use while an endpoint record names it; a record whose owner process is gone is *stale*
(``stale_records``) and is removed by whoever sweeps next.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.containers import NAME_RE, process_start_time
from runtime.network import (
    DEFAULT_BRIDGE,
    NON_BRIDGE_MODES,
    AddressUnavailable,
    NetworkError,
    NetworkInUse,
    NetworkNotFound,
)
from storage.fsutil import atomic_write, file_lock, private_dir

DEFAULT_BRIDGE_IFNAME = "hoist0"
# docker's default address pools: 172.17-31.0.0/16, then 192.168.0.0/16 cut into /20s.
_POOLS = ([ipaddress.IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)]
          + list(ipaddress.IPv4Network("192.168.0.0/16").subnets(new_prefix=20)))


@dataclass
class Network:
    name: str
    id: str
    subnet: str
    gateway: str
    bridge: str
    internal: bool = False
    created: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def user_defined(self) -> bool:
        return self.name != DEFAULT_BRIDGE

    @property
    def net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def prefixlen(self) -> int:
        return self.net.prefixlen


@dataclass
class Endpoint:
    network: str          # network name
    ip: str
    ifname: str           # inside the container (eth0, eth1, ...)
    veth: str             # on the host, a port of the network's bridge
    aliases: list[str] = field(default_factory=list)


@dataclass
class Record:
    """One container's network state; ``owner`` is [pid, start time] of the netns holder."""

    container: str
    name: str
    hostname: str
    hosts: str                       # the container's hosts file (bound on /etc/hosts)
    owner: list[int]
    endpoints: list[Endpoint] = field(default_factory=list)
    ports: list[dict[str, Any]] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        pid, start = self.owner
        return process_start_time(pid) == start

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Record:
        doc = dict(doc)
        doc["endpoints"] = [Endpoint(**e) for e in doc.get("endpoints") or []]
        return cls(**doc)

    def endpoint(self, network: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.network == network), None)


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise NetworkError(f"invalid subnet {text!r}: {e}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise NetworkError(f"invalid subnet {text!r}: IPv6 networks are not supported")
    if net.prefixlen > 30:
        raise NetworkError(f"invalid subnet {text}: too small (at most /30)")
    return net


class NetworkStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root) / "networks"
        self.endpoints_dir = self.root / "endpoints"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        private_dir(self.root)
        with file_lock(self.root / ".lock"):
            yield

    # -- networks -------------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def all(self) -> list[Network]:
        if not self.root.is_dir():
            return []
        out = []
        for entry in sorted(os.listdir(self.root)):
            if entry.endswith(".json") and not entry.startswith("."):
                try:
                    out.append(Network(**json.loads((self.root / entry).read_text())))
                except FileNotFoundError:
                    continue
        return out

    def get(self, ref: str) -> Network:
        """By name, full id or unique id prefix; ``bridge`` is made on first use (caller holds
        the lock when it may be the first)."""
        nets = self.all()
        for n in nets:
            if n.name == ref or n.id == ref:
                return n
        matches = [n for n in nets if len(ref) >= 3 and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if ref == DEFAULT_BRIDGE:
            return self._create_default()
        raise NetworkNotFound(f"network {ref} not found")

    def _create_default(self) -> Network:
        subnet = self._free_subnet()
        return self._write(Network(name=DEFAULT_BRIDGE, id=os.urandom(32).hex(), subnet=str(subnet),
                                   gateway=str(next(subnet.hosts())), bridge=DEFAULT_BRIDGE_IFNAME,
                                   created=time.time()))

    def _write(self, net: Network) -> Network:
        private_dir(self.root)
        atomic_write(self._path(net.name), json.dumps(asdict(net), indent=1).encode(), durable=False)
        return net

    def create(self, name: str, subnet: str | None = None, gateway: str | None = None,
               internal: bool = False, labels: dict[str, str] | None = None) -> Network:
        """A user network (caller holds the lock). The subnet defaults to the first of docker's
        pools that overlaps neither another network nor a route of this network namespace."""
        if name in (DEFAULT_BRIDGE, *NON_BRIDGE_MODES):
            raise NetworkError(f"{name} is a pre-defined network and cannot be created")
        if not NAME_RE.match(name):
            raise NetworkError(f"invalid network name {name!r} (letters, digits, _ . -)")
        if any(n.name == name for n in self.all()):
            raise NetworkError(f"network with name {name} already exists")
        if gateway and not subnet:
            raise NetworkError("--gateway needs --subnet")
        # The first pool stays for the default network, as docker keeps it for docker0.
        net = parse_subnet(subnet) if subnet else self._free_subnet(skip=() if self._has_default() else (_POOLS[0],))
        for other in self.all():
            if other.net.overlaps(net):
                raise NetworkError(f"invalid pool request: subnet {net} overlaps with network "
                                   f"{other.name} ({other.subnet})")
        if gateway:
            gw = _address(gateway, "gateway")
            if gw not in net or gw in (net.network_address, net.broadcast_address):
                raise AddressUnavailable(f"gateway {gateway} is not a host address of subnet {net}")
        else:
            gw = next(net.hosts())
        nid = os.urandom(32).hex()
        return self._write(Network(name=name, id=nid, subnet=str(net), gateway=str(gw),
                                   bridge=f"hbr-{nid[:11]}", internal=internal, created=time.time(),
                                   labels=dict(labels or {})))

    def remove(self, net: Network) -> None:
        """Forget ``net`` (caller holds the lock, has checked it is unused and removed its bridge)."""
        if net.name == DEFAULT_BRIDGE:
            raise NetworkError("bridge is a pre-defined network and cannot be removed")
        users = [r.name for r in self.records() if r.endpoint(net.name) and r.alive()]
        if users:
            raise NetworkInUse(f"error while removing network: network {net.name} id {net.id[:12]} "
                               f"has active endpoints ({', '.join(sorted(users))})")
        self._path(net.name).unlink(missing_ok=True)

    def _has_default(self) -> bool:
        return self._path(DEFAULT_BRIDGE).exists()

    def _free_subnet(self, skip: tuple[ipaddress.IPv4Network, ...] = ()) -> ipaddress.IPv4Network:
        taken = [n.net for n in self.all()] + _routed_subnets() + list(skip)
        for pool in _POOLS:
            if not any(pool.overlaps(t) for t in taken):
                return pool
        raise NetworkError("could not find an available, non-overlapping IPv4 address pool "
                           "among the defaults to assign to the network")

    # -- endpoint records --------------------------------------------------------------------------
    def records(self) -> list[Record]:
        if not self.endpoints_dir.is_dir():
            return []
        out = []
        for entry in sorted(os.listdir(self.endpoints_dir)):
            if entry.endswith(".json"):
                try:
                    out.append(Record.from_json(json.loads((self.endpoints_dir / entry).read_text())))
                except (FileNotFoundError, ValueError, TypeError):
                    continue
        return out

    def record(self, container_id: str) -> Record | None:
        try:
            return Record.from_json(json.loads((self.endpoints_dir / f"{container_id}.json").read_text()))
        except FileNotFoundError:
            return None

    def write_record(self, rec: Record) -> None:
        private_dir(self.endpoints_dir)
        atomic_write(self.endpoints_dir / f"{rec.container}.json",
                     json.dumps(rec.to_json(), indent=1).encode(), durable=False)

    def drop_record(self, container_id: str) -> None:
        (self.endpoints_dir / f"{container_id}.json").unlink(missing_ok=True)

    def members(self, network: str) -> list[Record]:
        """The live records with an endpoint on ``network``."""
        return [r for r in self.records() if r.endpoint(network) and r.alive()]

    # -- addresses -------------------------------------------------------------------------------
    def allocate(self, net: Network, wanted: str | None = None) -> str:
        """A free host address of ``net`` (caller holds the lock): ``wanted`` if it is one, else
        the lowest free. Live records hold addresses; stale ones do not."""
        used = {e.ip for r in self.records() if r.alive() for e in r.endpoints if e.network == net.name}
        used.add(net.gateway)
        if wanted:
            check_ip_in(net, wanted)
            if wanted in used:
                raise AddressUnavailable(f"address {wanted} is already in use on network {net.name}")
            return wanted
        for host in net.net.hosts():
            if str(host) not in used:
                return str(host)
        raise AddressUnavailable(f"no available IPv4 addresses on network {net.name} ({net.subnet})")


def check_ip_in(net: Network, ip: str) -> None:
    addr = _address(ip, "IP address")
    if addr not in net.net or addr in (net.net.network_address, net.net.broadcast_address):
        raise AddressUnavailable(f"invalid address {ip}: it does not belong to any of network "
                                 f"{net.name}'s subnets ({net.subnet})")
    if str(addr) == net.gateway:
        raise AddressUnavailable(f"invalid address {ip}: it is the gateway of network {net.name}")


def _address(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise AddressUnavailable(f"invalid {what} {text!r}") from None
    if not isinstance(addr, ipaddress.IPv4Address):
        raise AddressUnavailable(f"invalid {what} {text!r}: IPv6 is not supported")
    return addr


def _routed_subnets() -> list[ipaddress.IPv4Network]:
    """The destinations of this network namespace's IPv4 routes (docker avoids them too)."""
    try:
        with open("/proc/net/route") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return []
    out = []
    for line in lines:
        cols = line.split()
        if len(cols) < 8:
            continue
        dest, mask = int(cols[1], 16), int(cols[7], 16)
        if mask == 0:
            continue  # the default route overlaps everything; docker ignores it too
        d = ipaddress.IPv4Address(dest.to_bytes(4, "little"))
        m = ipaddress.IPv4Address(mask.to_bytes(4, "little"))
        out.append(ipaddress.IPv4Network(f"{d}/{m}", strict=False))
    return out
