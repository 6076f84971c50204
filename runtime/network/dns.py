"""/etc/hosts, /etc/resolv.conf and --add-host for bridged containers; name resolution on user
networks by hosts files that are rewritten in place.

Each container's ``hosts`` file (in its folder, bound on /etc/hosts) is docker's: the localhost
lines, the ``--add-host`` lines, the container's own address and hostname; on a user network
hoist adds a line per member (the container itself included) naming it by container name,
``--network-alias``es and short id: docker's embedded DNS answers exactly those names. Whoever
changes a network's membership (a start, an exit, ``network connect``/``disconnect``, a sweep)
rewrites the hosts file of every live member, under the networks lock. The file is rewritten in
place (same inode), because a bind mount pins the inode: a rename would leave the container
reading the old file. Why hosts files and not a resolver: see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.network import NetworkError

if TYPE_CHECKING:
    from runtime.network.ipam import NetworkStore, Record

HOSTS_HEADER = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\n"
                "ff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
_MEMBERS = "# hoist: members of the container's user networks, rewritten as they come and go\n"
# docker's fallback when the host has no usable nameserver
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")


def parse_add_host(text: str) -> str:
    """``--add-host NAME:IP`` (or ``NAME=IP``) as a hosts line; ``host-gateway`` is not supported."""
    sep = "=" if "=" in text else ":"
    name, _, ip = text.partition(sep)
    if not name or not ip:
        raise NetworkError(f"invalid argument {text!r} for --add-host (use NAME:IP)")
    if ip == "host-gateway":
        raise NetworkError("--add-host NAME:host-gateway is not supported")
    try:
        ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise NetworkError(f"invalid IP address in add-host: {ip!r}") from None
    if any(c.isspace() for c in name) or "#" in name:
        raise NetworkError(f"invalid host name in add-host: {name!r}")
    return f"{ip.strip('[]')}\t{name}"


def check_dns(servers: list[str]) -> list[str]:
    for s in servers:
        try:
            ipaddress.ip_address(s)
        except ValueError:
            raise NetworkError(f"{s} is not an ip address (--dns)") from None
    return servers


def resolv_conf(host_text: str, dns: list[str]) -> str:
    """docker's rules: the host's file without loopback nameservers (unreachable from the
    container's own loopback), with ``--dns`` replacing its nameservers; Google's when none
    are left."""
    lines = host_text.splitlines()
    kept = [ln for ln in lines if not ln.split()[:1] == ["nameserver"]]
    servers = [ln.split()[1] for ln in lines if ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1]
    servers = list(dns) if dns else [s for s in servers if not (s.startswith("127.") or s == "::1")]
    if not servers:
        servers = list(DEFAULT_NAMESERVERS)
    return "\n".join(kept + [f"nameserver {s}" for s in servers]) + "\n"


def hosts_text(rec: Record, store: NetworkStore) -> str:
    """The hosts file of the container ``rec`` describes, from the current live members."""
    lines = [HOSTS_HEADER]
    lines += [h + "\n" for h in rec.extra_hosts]
    if rec.endpoints and rec.hostname and not any(c.isspace() or c == "#" for c in rec.hostname):
        lines.append(f"{rec.endpoints[0].ip}\t{rec.hostname}\n")
    members: list[str] = []
    for ep in rec.endpoints:
        try:
            net = store.get(ep.network)
        except NetworkError:
            continue
        if not net.user_defined:
            continue   # the default bridge has no name resolution (as docker's)
        for m in store.members(ep.network):
            theirs = m.endpoint(ep.network)
            if theirs is None:
                continue
            names = [m.name, *theirs.aliases, m.container[:12]]
            members.append(f"{theirs.ip}\t{' '.join(dict.fromkeys(names))}\n")
    if members:
        lines += [_MEMBERS, *members]
    return "".join(lines)


def write_in_place(path: str | os.PathLike[str], text: str) -> None:
    """Rewrite ``path`` keeping its inode (the bind mount in the container sees it): the new
    bytes in one write from offset 0, then the length cut, so a reader sees the old or the new
    content (or a prefix of the longer one), never another file. A missing file (a container
    being removed) is skipped."""
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def rewrite_members(store: NetworkStore, networks: set[str], also: Record | None = None) -> None:
    """Rewrite the hosts file of every live member of ``networks`` (and of ``also``); caller
    holds the networks lock."""
    done: set[str] = set()
    targets = [also] if also is not None else []
    for name in networks:
        targets += store.members(name)
    for rec in targets:
        if rec.container in done:
            continue
        done.add(rec.container)
        if Path(rec.hosts).exists():
            write_in_place(rec.hosts, hosts_text(rec, store))


def share_etc_files(cdir: Path, other_dir: Path) -> None:
    """``--network container:ID``: the other container's hosts, hostname and resolv.conf, as
    hard links (one inode, so its in-place rewrites reach both containers)."""
    for name in ("hosts", "hostname", "resolv.conf"):
        try:
            os.link(other_dir / name, cdir / name)
        except FileNotFoundError:
            raise NetworkError(f"the container whose network is joined has no {name} "
                               f"(was it removed?)") from None
