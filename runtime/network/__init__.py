"""Container networks, docker's model, without a daemon.

A *network* is data (``ipam.NetworkStore``: a file per network under ``$HOIST_ROOT/networks``)
plus what the kernel holds for it while containers use it: a Linux bridge and its gateway
address (``bridge.py``, over netlink with pyroute2) and its NAT/isolation rules (``nat.py``, one
``nft`` transaction). A container's *endpoints* (its addresses on networks, its published ports)
are one record per container, owned by the process that holds the container's network namespace
(its monitor): a record whose owner is gone is stale, and every start, ``hoist network prune``
and ``hoist rm`` sweeps stale records and what they had set up. The monitor (``attach.py``)
creates the network namespace, wires the veths, reserves the host ports (``ports.py``) and
rewrites every member's /etc/hosts (``dns.py``); PID 1 then joins that namespace.

::

    SetupError (runtime.errors)
    └── NetworkError              anything a network, an endpoint or a port cannot be
        ├── NetworkNotFound       no network by that name or id
        ├── NetworkInUse          ``network rm`` of a network containers are attached to
        ├── AddressUnavailable    --ip outside the subnet, taken, or the subnet is full
        ├── PortAllocated         a host port is already taken (docker's message)
        └── NftMissing            ``nft`` is not installed

Imports nothing heavy: pyroute2 is loaded only by the modules that talk netlink.
"""

from __future__ import annotations

import os

from runtime.errors import SetupError


def default_mode() -> str:
    """The network of a container run without ``--network``: docker's ``bridge``, unless
    ``HOIST_DEFAULT_NETWORK`` names another mode (``none`` is dockerd's ``--bridge=none``: a host
    that wants no bridge, no NAT rules and no addresses made for it)."""
    return os.environ.get("HOIST_DEFAULT_NETWORK") or "bridge"


class NetworkError(SetupError):
    pass


class NetworkNotFound(NetworkError):
    pass


class NetworkInUse(NetworkError):
    pass


class AddressUnavailable(NetworkError):
    pass


class PortAllocated(NetworkError):
    pass


class NftMissing(NetworkError):
    pass


# Modes of ``--network`` that are not networks in the store.
NON_BRIDGE_MODES = ("none", "host")
DEFAULT_BRIDGE = "bridge"


def is_bridged(mode: str) -> bool:
    """True when ``--network mode`` puts the container on a bridge (default or user network)."""
    return mode not in NON_BRIDGE_MODES and not mode.startswith("container:")
