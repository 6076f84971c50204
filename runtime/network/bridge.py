"""Bridges, veth pairs, addresses and routes over netlink (pyroute2), and network namespaces.

A container's network namespace is made by a short-lived child that unshares one and waits;
the parent opens ``/proc/CHILD/ns/net`` and keeps that descriptor (nothing is mounted, nothing
named under /run): the namespace lives exactly as long as a process holds it, so a crashed
container's namespace, and with it the container end of every veth (whose host end then goes
too), is reclaimed by the kernel. Inside the namespace the netlink socket is opened after a
``setns`` of this (single-threaded) process, which then returns to its own namespace.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
from collections.abc import Iterator
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from runtime import linux
from runtime.network import NetworkError


def veth_name(container_id: str, network_id: str) -> str:
    """The host end's name: fixed by container and network, so a sweep can find it."""
    return "hv" + hashlib.sha256(f"{container_id}:{network_id}".encode()).hexdigest()[:11]


def new_netns() -> int:
    """A fresh network namespace, as an O_CLOEXEC descriptor (loopback up)."""
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            os.close(w2)
            try:
                linux.unshare(linux.CLONE_NEWNET)
                linux.loopback_up()
            except OSError as e:
                os.write(w, (e.strerror or str(e)).encode()[:200])
                os._exit(1)
            os.write(w, b"k")
            os.read(r2, 1)  # hold the namespace until the parent has opened it
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.close(r2)
    try:
        answer = os.read(r, 256)
        if answer != b"k":
            raise NetworkError("cannot create a network namespace: the kernel refused it"
                               + (f" ({answer.decode(errors='replace')})" if answer else ""))
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(r)
        os.close(w2)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return fd


@contextlib.contextmanager
def netlink_in(netns_fd: int | None = None) -> Iterator[IPRoute]:
    """An IPRoute socket in the namespace ``netns_fd`` (or this process's)."""
    if netns_fd is None:
        ipr = IPRoute()
    else:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(netns_fd, linux.CLONE_NEWNET)
            try:
                ipr = IPRoute()
            finally:
                linux.setns(home, linux.CLONE_NEWNET)
        finally:
            os.close(home)
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def ensure_bridge(ipr: IPRoute, name: str, gateway: str, prefixlen: int) -> bool:
    """The bridge ``name`` up with the gateway address; True when it had to be created. Also
    turns on forwarding and route_localnet (for published ports on 127.0.0.1) for it."""
    created = False
    idx = _index(ipr, name)
    if idx is None:
        try:
            # A MAC of its own: a bridge without one takes its lowest port's, and changes it
            # as containers come and go (neighbours' ARP caches go stale). docker does the same.
            mac = "02:42:" + ":".join(f"{b:02x}" for b in os.urandom(4))
            ipr.link("add", ifname=name, kind="bridge", address=mac)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise NetworkError(f"cannot create bridge {name}: {os.strerror(e.code)}") from None
        created = True
        idx = _index(ipr, name)
        if idx is None:
            raise NetworkError(f"bridge {name} vanished while being set up")
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
    if (gateway, prefixlen) not in have:
        try:
            ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise NetworkError(f"cannot give bridge {name} its address {gateway}: "
                                   f"{os.strerror(e.code)}") from None
    ipr.link("set", index=idx, state="up")
    _write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")
    _write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
    return created


def delete_link(ipr: IPRoute, name: str) -> None:
    idx = _index(ipr, name)
    if idx is not None:
        with contextlib.suppress(NetlinkError):
            ipr.link("del", index=idx)


def mac_for(ip: str) -> str:
    """The MAC docker gives an IPv4 address on a bridge: ``02:42:`` and the address's bytes."""
    return "02:42:" + ":".join(f"{int(octet):02x}" for octet in ip.split("."))


def add_endpoint(ipr: IPRoute, netns_fd: int, bridge: str, veth: str, ifname: str, ip: str,
                 prefixlen: int, gateway: str | None) -> None:
    """A veth pair: ``veth`` on ``bridge`` here, its peer ``ifname`` in the namespace with
    ``ip`` and, if ``gateway``, the default route through it. On failure the pair is gone."""
    br = _index(ipr, bridge)
    if br is None:
        raise NetworkError(f"bridge {bridge} is missing")
    peer_tmp = "hp" + veth[2:]
    try:
        ipr.link("add", ifname=veth, kind="veth", peer={"ifname": peer_tmp, "net_ns_fd": netns_fd})
    except NetlinkError as e:
        raise NetworkError(f"cannot create veth {veth}: {os.strerror(e.code)}") from None
    try:
        idx = _index(ipr, veth)
        assert idx is not None
        ipr.link("set", index=idx, master=br)
        # hairpin: a container reaching its own published port comes back through its own port
        ipr.brport("set", index=idx, hairpin_mode=1)
        ipr.link("set", index=idx, state="up")
        with netlink_in(netns_fd) as inner:
            pidx = _index(inner, peer_tmp)
            if pidx is None:
                raise NetworkError("the container end of the veth is missing")
            # docker's MAC for an address (02:42 and its four bytes): a container recreated on
            # its predecessor's address has its MAC too, so no neighbour holds a stale ARP entry
            inner.link("set", index=pidx, ifname=ifname, address=mac_for(ip))
            inner.addr("add", index=pidx, address=ip, prefixlen=prefixlen)
            inner.link("set", index=pidx, state="up")
            if gateway is not None and not _has_default_route(inner):
                inner.route("add", dst="0.0.0.0/0", gateway=gateway, oif=pidx)
    except NetlinkError as e:
        delete_link(ipr, veth)
        raise NetworkError(f"cannot set up {ifname} in the container: {os.strerror(e.code)}") from None
    except BaseException:
        delete_link(ipr, veth)
        raise


def _has_default_route(ipr: IPRoute) -> bool:
    return any(r["dst_len"] == 0 for r in ipr.get_routes(family=2, table=254))


def next_ifname(netns_fd: int) -> str:
    with netlink_in(netns_fd) as inner:
        names = {link.get_attr("IFLA_IFNAME") for link in inner.get_links()}
    n = 0
    while f"eth{n}" in names:
        n += 1
    return f"eth{n}"


def link_names(ipr: IPRoute) -> set[str]:
    return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def link_info(ipr: IPRoute, name: str) -> dict[str, Any] | None:
    idx = _index(ipr, name)
    if idx is None:
        return None
    link = ipr.get_links(idx)[0]
    return {"ifname": name, "mac": link.get_attr("IFLA_ADDRESS")}
