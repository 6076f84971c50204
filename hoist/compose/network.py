"""How a service's container is attached to networks: the one place the engine asks.

Compose's model over hoist's runtime (``runtime/network``):

- every project network (``<project>_default`` for services without ``networks:`` or
  ``network_mode``, and the top-level ``networks:``) is a hoist user network, created by ``up``
  with compose's labels (``com.docker.compose.project``, ``com.docker.compose.network``) and the
  file's ``internal``, ``ipam.config[0].subnet``/``gateway``, ``labels`` and ``name``;
  ``external: true`` networks must exist and are never created or removed; ``down`` removes the
  project's networks (those carrying its label);
- a service joins its networks (ordered by ``priority``, then name, as compose does) with the
  aliases compose gives: the service name, the network's ``aliases:`` and the container name;
  ``ipv4_address`` is the runtime's ``--ip``. The runtime attaches the first network at create;
  the others are connected (with their aliases) right after each start, since the runtime keeps
  aliases per start and only for the first network;
- ``ports`` (short and long syntax, already long here) become the runtime's ``-p``; ``expose`` is
  only metadata (containers on a network reach each other on every port), as in compose;
- ``extra_hosts``, ``dns`` and ``hostname`` go through the runtime's options;
- ``network_mode: host``/``none`` are as given (``ports`` discarded with a warning, as docker does);
  ``service:NAME`` / ``container:NAME`` share that container's namespace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hoist.compose.errors import ComposeError

PROJECT = "com.docker.compose.project"
NETWORK = "com.docker.compose.network"


@dataclass(frozen=True)
class Join:
    network: str                                   # the runtime's network name
    aliases: list[str] = field(default_factory=list)
    ip: str | None = None


@dataclass(frozen=True)
class NetworkPlan:
    mode: str                                      # the runtime's --network value
    joins: list[Join] = field(default_factory=list)  # [0] is attached at create, the rest after start
    publish: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)

    @property
    def first(self) -> Join | None:
        return self.joins[0] if self.joins else None


def publish_args(service: str, ports: list[dict[str, Any]]) -> list[str]:
    """Long-syntax ``ports`` entries as ``-p`` values."""
    out = []
    for i, p in enumerate(ports):
        proto = p.get("protocol", "tcp")
        if proto not in ("tcp", "udp"):
            raise ComposeError(f"protocol {proto} is not supported by hoist (tcp or udp)",
                               where=f'service "{service}": ports.{i}')
        if p.get("mode", "ingress") not in ("ingress", "host"):
            raise ComposeError(f"mode {p['mode']!r} is not a port mode (ingress or host)",
                               where=f'service "{service}": ports.{i}')
        host_ip = p.get("host_ip") or ""
        if ":" in host_ip:
            raise ComposeError(f"IPv6 host address {host_ip} is not supported by hoist",
                               where=f'service "{service}": ports.{i}')
        published = str(p.get("published") or "")
        target = p["target"]
        if host_ip:
            out.append(f"{host_ip}:{published}:{target}/{proto}")
        elif published:
            out.append(f"{published}:{target}/{proto}")
        else:
            out.append(f"{target}/{proto}")
    return out


def _hosts(service: str, svc: dict[str, Any]) -> list[str]:
    out = []
    for h in svc.get("extra_hosts") or []:
        host, sep, ip = str(h).partition("=")
        if not sep:
            host, _, ip = str(h).partition(":")
        if ip == "host-gateway":
            raise ComposeError(f"extra_hosts {host}=host-gateway is not supported by hoist",
                               where=f'service "{service}"')
        out.append(f"{host}={ip}")
    from runtime.network import NetworkError, dns

    for i, h in enumerate(out):
        try:
            dns.parse_add_host(h)
        except NetworkError as e:
            raise ComposeError(str(e).replace("--add-host", "extra_hosts").replace("add-host", "extra_hosts"),
                               where=f'service "{service}": extra_hosts.{i}') from None
    return out


def _dns(service: str, svc: dict[str, Any]) -> list[str]:
    import ipaddress

    value = svc.get("dns")
    if value is None:
        return []
    servers = [str(value)] if isinstance(value, str) else [str(v) for v in value]
    for s in servers:
        try:
            ipaddress.ip_address(s)
        except ValueError:
            raise ComposeError(f"{s} is not an ip address", where=f'service "{service}": dns') from None
    return servers


def service_networks(svc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The service's networks (key, its attachment options) in compose's order: priority, highest
    first, then name."""
    nets = [(k, dict(v or {})) for k, v in (svc.get("networks") or {}).items()]
    return sorted(nets, key=lambda kv: (-int(kv[1].get("priority") or 0), kv[0]))


def plan(project: Any, service: str, svc: dict[str, Any], container_name: str, warn: Callable[[str], None],
         resolve: Callable[[str, str], str] | None = None) -> NetworkPlan:
    """``resolve(kind, name)`` gives the container id for ``network_mode: service:``/``container:``."""
    mode = svc.get("network_mode")
    hosts, dns = _hosts(service, svc), _dns(service, svc)
    publish = publish_args(service, svc.get("ports") or [])
    if mode in ("host", "none"):
        if publish:
            warn(f'service "{service}": published ports are discarded when using {mode} network mode')
        return NetworkPlan(mode, dns=dns, add_hosts=hosts)
    if mode and mode.startswith(("service:", "container:")):
        kind, _, ref = mode.partition(":")
        if resolve is None:
            raise ComposeError(f"network_mode {mode} cannot be resolved here", where=f'service "{service}"')
        return NetworkPlan(f"container:{resolve(kind, ref)}")
    if mode:
        raise ComposeError(f"network_mode {mode!r} is not supported by hoist (host, none, service:NAME, "
                           f"container:NAME)", where=f'service "{service}"')
    joins = []
    for key, opts in service_networks(svc):
        res = project.networks[key]
        for k in opts:
            if k not in ("aliases", "ipv4_address", "priority") and not k.startswith("x-"):
                warn(f'service "{service}": networks.{key}.{k} is not supported by hoist; ignored')
        aliases = [service] + [str(a) for a in opts.get("aliases") or []] + [container_name]
        seen: list[str] = []
        for a in aliases:
            if a not in seen:
                seen.append(a)
        joins.append(Join(res["name"], seen, opts.get("ipv4_address")))
    if not joins:
        return NetworkPlan("none", dns=dns, add_hosts=hosts)
    return NetworkPlan(joins[0].network, joins, publish, dns, hosts)


def used_networks(project: Any, services: list[str]) -> list[str]:
    """The keys of the project networks ``services`` use, in a stable order."""
    keys: set[str] = set()
    for s in services:
        svc = project.services[s]
        if not svc.get("network_mode"):
            keys.update((svc.get("networks") or {}).keys())
    return sorted(keys)


def ensure_networks(root: Path, project: Any, keys: list[str], warn: Callable[[str], None],
                    event: Callable[[str, str, str], None]) -> list[str]:
    """Create the project networks ``keys`` that do not exist (external ones must); returns the
    names created by this call (for rollback)."""
    from runtime.network import NetworkError, NetworkNotFound, manage
    from runtime.network.ipam import NetworkStore

    store = NetworkStore(root)
    created = []
    for key in keys:
        res = project.networks[key]
        name = res["name"]
        try:
            existing = store.get(name)
        except NetworkNotFound:
            existing = None
        if res.get("external"):
            if existing is None:
                raise ComposeError(f"network {name} declared as external, but could not be found")
            continue
        if existing is not None:
            labels = existing.labels or {}
            if labels.get(PROJECT) != project.name or labels.get(NETWORK) != key:
                warn(f'a network with name {name} exists but was not created for project "{project.name}"; '
                     f"it is used as it is")
            continue
        driver = res.get("driver") or "bridge"
        if driver != "bridge":
            raise ComposeError(f"driver {driver!r} is not supported by hoist (bridge)", where=f'network "{key}"')
        for k in ("driver_opts", "attachable", "enable_ipv6"):
            if res.get(k):
                warn(f'network "{key}": {k} is not supported by hoist; ignored')
        ipam = res.get("ipam") or {}
        if ipam.get("driver") not in (None, "default"):
            raise ComposeError(f"ipam driver {ipam['driver']!r} is not supported by hoist (default)",
                               where=f'network "{key}"')
        configs = [c for c in ipam.get("config") or [] if ":" not in str(c.get("subnet", ""))]
        if len(ipam.get("config") or []) > len(configs[:1]):
            warn(f'network "{key}": only the first IPv4 ipam.config entry is used by hoist')
        subnet = configs[0].get("subnet") if configs else None
        gateway = configs[0].get("gateway") if configs else None
        labels = {str(k): str(v) for k, v in (res.get("labels") or {}).items()}
        labels.update({PROJECT: project.name, NETWORK: key})
        event("⠿", f"Network {name}", "Creating")
        try:
            manage.create(root, name, subnet, gateway, bool(res.get("internal")), labels)
        except NetworkError as e:
            raise ComposeError(str(e), where=f'network "{key}"') from None
        created.append(name)
        event("✔", f"Network {name}", "Created")
    return created


def remove_networks(root: Path, project: Any, warn: Callable[[str], None],
                    event: Callable[[str, str, str], None], names: list[str] | None = None) -> None:
    """``down``: remove the project's networks (those labelled for it; external ones never)."""
    from runtime.network import NetworkError, NetworkNotFound, manage
    from runtime.network.ipam import NetworkStore

    store = NetworkStore(root)
    wanted = {res["name"]: key for key, res in project.networks.items() if not res.get("external")}
    for net in store.all():
        if not net.user_defined or (names is not None and net.name not in names):
            continue
        labels = net.labels or {}
        if labels.get(PROJECT) != project.name or net.name not in wanted:
            continue
        event("⠿", f"Network {net.name}", "Removing")
        try:
            manage.remove(root, net.name)
        except NetworkNotFound:
            continue
        except NetworkError as e:
            warn(f"error while removing network {net.name}: {e}")
            continue
        event("✔", f"Network {net.name}", "Removed")
