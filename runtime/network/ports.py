"""Published ports: docker's ``-p`` grammar, ``-P`` from EXPOSE, and host-port reservation.

``-p [IP:][HOST:]CTR[/tcp|udp]`` with ranges on either side (``8000-8002:80-82``; a host range
with one container port takes the first free host port of the range, as docker does) and an
empty HOST for an ephemeral port (``-p 80``, ``-p 127.0.0.1::80``). A binding is a plain dict
(it lives in the container's config.json): ``{"proto", "host_ip", "host_port", "container_port"}``,
``host_port`` 0 meaning "ephemeral" and ``host_range`` the range to choose from.

Reservation: the monitor binds a socket on each host address and port (TCP bound but never
listening, UDP bound) and holds it while the container lives, so another process (or another
container) cannot take the port meanwhile and a port already in use is refused before the
container starts: "Bind for 0.0.0.0:8080 failed: port is already allocated". Packets never reach
those sockets: nftables rewrites them to the container first (``nat.py``).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from runtime.network import NetworkError, PortAllocated

PROTOS = ("tcp", "udp")


def _port_range(text: str, what: str, spec: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        start = int(lo, 10)
        end = int(hi, 10) if sep else start
    except ValueError:
        raise NetworkError(f"invalid {what}: {text!r} in -p {spec}") from None
    if not (1 <= start <= 65535 and 1 <= end <= 65535) or end < start:
        raise NetworkError(f"invalid {what}: {text!r} in -p {spec}")
    return start, end


def parse_publish(spec: str) -> list[dict[str, Any]]:
    """One ``-p`` value as its bindings (raises NetworkError with docker's wording)."""
    rest, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOS:
        raise NetworkError(f"invalid proto: {proto} in -p {spec} (use tcp or udp)")
    if rest.startswith("["):
        raise NetworkError(f"invalid -p {spec}: IPv6 host addresses are not supported")
    parts = rest.split(":")
    if len(parts) == 1:
        host_ip, host, ctr = "0.0.0.0", "", parts[0]
    elif len(parts) == 2:
        host_ip, host, ctr = "0.0.0.0", parts[0], parts[1]
    elif len(parts) == 3:
        host_ip, host, ctr = parts[0] or "0.0.0.0", parts[1], parts[2]
    else:
        raise NetworkError(f"invalid -p {spec} (use [IP:][HOST:]CONTAINER[/tcp|udp])")
    try:
        if not isinstance(ipaddress.ip_address(host_ip), ipaddress.IPv4Address):
            raise ValueError
    except ValueError:
        raise NetworkError(f"invalid ip address: {host_ip} in -p {spec}") from None
    c_start, c_end = _port_range(ctr, "containerPort", spec)
    count = c_end - c_start + 1
    if not host:
        return [_binding(proto, host_ip, 0, p) for p in range(c_start, c_end + 1)]
    h_start, h_end = _port_range(host, "hostPort", spec)
    h_count = h_end - h_start + 1
    if h_count == count:
        return [_binding(proto, host_ip, h_start + i, c_start + i) for i in range(count)]
    if count == 1:
        b = _binding(proto, host_ip, 0, c_start)
        b["host_range"] = [h_start, h_end]
        return [b]
    raise NetworkError(f"invalid ranges specified for container and host ports: {ctr} and {host}")


def _binding(proto: str, host_ip: str, host_port: int, container_port: int) -> dict[str, Any]:
    return {"proto": proto, "host_ip": host_ip, "host_port": host_port, "container_port": container_port}


def exposed_bindings(exposed: dict[str, Any] | None) -> list[dict[str, Any]]:
    """``-P``: every port of the image's ExposedPorts ("80/tcp": {}) on an ephemeral host port."""
    out = []
    for key in exposed or {}:
        port, _, proto = str(key).partition("/")
        proto = proto or "tcp"
        if proto not in PROTOS or not port.isdigit() or not 1 <= int(port) <= 65535:
            continue  # sctp, or a malformed key in a stranger's image: nothing to publish
        out.append(_binding(proto, "0.0.0.0", 0, int(port)))
    return sorted(out, key=lambda b: (b["container_port"], b["proto"]))


def merge(bindings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop exact duplicates (docker does too); a host port given twice is refused later by the
    reservation itself."""
    seen: set[tuple[Any, ...]] = set()
    out: list[dict[str, Any]] = []
    for b in bindings:
        key: tuple[Any, ...] = (b["proto"], b["host_ip"], b["host_port"], b["container_port"],
                                tuple(b.get("host_range", ())))
        if b["host_port"] == 0 and "host_range" not in b:
            key = key + (len(out),)  # each ephemeral binding gets its own port
        if key not in seen:
            seen.add(key)
            out.append(b)
    return out


class Reservation:
    """Sockets holding the host ports; ``bindings`` have their actual ports filled in."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.bindings: list[dict[str, Any]] = []

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        self.sockets.clear()


def _bind(proto: str, host_ip: str, port: int) -> socket.socket:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC)
    try:
        s.bind((host_ip, port))
    except OSError:
        s.close()
        raise
    return s


def reserve(bindings: list[dict[str, Any]]) -> Reservation:
    """Bind every host port (all or none: on a failure the ones taken are let go)."""
    res = Reservation()
    try:
        for b in bindings:
            b = dict(b)
            if "host_range" in b:
                lo, hi = b.pop("host_range")
                for port in range(lo, hi + 1):
                    try:
                        res.sockets.append(_bind(b["proto"], b["host_ip"], port))
                    except OSError:
                        continue
                    b["host_port"] = port
                    break
                else:
                    raise PortAllocated(f"Bind for {b['host_ip']}:{lo}-{hi} failed: "
                                        f"port is already allocated")
            else:
                try:
                    s = _bind(b["proto"], b["host_ip"], b["host_port"])
                except OSError as e:
                    if e.errno in (23, 24):  # ENFILE, EMFILE
                        raise NetworkError(f"cannot hold {len(bindings)} published ports: "
                                           f"{e.strerror}") from None
                    if e.errno == 99:  # EADDRNOTAVAIL: not an address of this host
                        raise NetworkError(f"Bind for {b['host_ip']}:{b['host_port']} failed: "
                                           f"{b['host_ip']} is not an address of this host") from None
                    raise PortAllocated(f"Bind for {b['host_ip']}:{b['host_port']} failed: "
                                        f"port is already allocated") from None
                res.sockets.append(s)
                b["host_port"] = s.getsockname()[1]
            res.bindings.append(b)
    except BaseException:
        res.close()
        raise
    return res


def format_ports(bindings: list[dict[str, Any]]) -> list[str]:
    """``hoist port`` lines: ``80/tcp -> 0.0.0.0:32768``, sorted as docker sorts them."""
    rows = sorted(bindings, key=lambda b: (b["container_port"], b["proto"], b["host_ip"], b["host_port"]))
    return [f"{b['container_port']}/{b['proto']} -> {b['host_ip']}:{b['host_port']}" for b in rows]
