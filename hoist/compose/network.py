"""How a service's container is attached to a network: the one place the engine asks.

Today hoist's runtime has two network modes, ``none`` (its own empty network namespace) and
``host`` (the host's stack), and no user-defined networks or published ports. So:

- ``network_mode: host`` / ``none`` are honoured as they are;
- services on project networks (the default, or ``networks:``) run with ``none`` and a warning,
  since running them on the host's stack instead would give a stranger's compose file the host's
  network without it asking (``network_mode: host`` is how a file asks);
- ``ports`` are a warning (with ``network_mode: host`` they are discarded, as docker discards them);
- ``extra_hosts`` entries are added to the container's /etc/hosts.

When the runtime has networks, ``plan`` maps project networks to them (name, aliases, the service
name for discovery) and ``ports`` to published ports; the engine does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hoist.compose.errors import ComposeError


@dataclass(frozen=True)
class NetworkPlan:
    mode: str                                      # the runtime's --network value
    extra_hosts: list[tuple[str, str]] = field(default_factory=list)


def plan(project_name: str, service: str, svc: dict[str, Any], warn: Callable[[str], None]) -> NetworkPlan:
    mode = svc.get("network_mode")
    hosts = [tuple(h.split("=", 1)) for h in svc.get("extra_hosts") or []]
    for host, ip in hosts:
        if ip == "host-gateway":
            raise ComposeError(f'service "{service}": extra_hosts {host}=host-gateway needs a bridge network, '
                               f"which hoist does not have yet")
    if svc.get("ports"):
        if mode == "host":
            warn(f'service "{service}": published ports are discarded when using host network mode')
        else:
            warn(f'service "{service}": "ports" are not published: hoist has no port publishing yet '
                 f"(use network_mode: host to serve on the host's network)")
    if mode in ("host", "none"):
        return NetworkPlan(mode, [(h, i) for h, i in hosts])
    if mode:
        warn(f'service "{service}": network_mode {mode!r} is not supported by hoist yet; it runs with network none')
        return NetworkPlan("none", [(h, i) for h, i in hosts])
    nets = ", ".join(sorted(svc.get("networks") or {"default": None}))
    warn(f'service "{service}": project networks ({nets}) are not supported by hoist yet; it runs with '
         f"network none (network_mode: host shares the host's network)")
    return NetworkPlan("none", [(h, i) for h, i in hosts])


def project_networks(project: Any, warn: Callable[[str], None]) -> None:
    """Create the project's networks (none can be made yet: nothing to do but say so once)."""
    return None
