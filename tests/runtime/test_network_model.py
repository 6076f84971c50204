"""The network package's data side, without a kernel: docker's -p grammar, -P, resolv.conf and
--add-host rules, address management over the records, and the nft table it renders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.containers import process_start_time
from runtime.network import AddressUnavailable, NetworkError, PortAllocated, dns, nat, ports
from runtime.network.ipam import Endpoint, NetworkStore, Record
from runtime.network.ipam import _routed_subnets as _routes


def b(proto: str, ip: str, host: int, ctr: int) -> dict:
    return {"proto": proto, "host_ip": ip, "host_port": host, "container_port": ctr}


@pytest.mark.parametrize("spec, want", [
    ("80", [b("tcp", "0.0.0.0", 0, 80)]),
    ("8080:80", [b("tcp", "0.0.0.0", 8080, 80)]),
    ("127.0.0.1:8080:80/udp", [b("udp", "127.0.0.1", 8080, 80)]),
    ("127.0.0.1::80", [b("tcp", "127.0.0.1", 0, 80)]),
    ("8000-8001:80-81/tcp", [b("tcp", "0.0.0.0", 8000, 80), b("tcp", "0.0.0.0", 8001, 81)]),
    ("80-81", [b("tcp", "0.0.0.0", 0, 80), b("tcp", "0.0.0.0", 0, 81)]),
    ("8000-8010:80", [dict(b("tcp", "0.0.0.0", 0, 80), host_range=[8000, 8010])]),
])
def test_publish_grammar(spec: str, want: list[dict]) -> None:
    assert ports.parse_publish(spec) == want


@pytest.mark.parametrize("spec, message", [
    ("80-81:90-92", "invalid ranges"), ("abc", "invalid containerPort"), ("70000", "invalid containerPort"),
    ("0:80", "invalid hostPort"), ("1.2.3:80:80", "invalid ip address"), ("80/sctp", "invalid proto"),
    ("[::1]:80:80", "IPv6"), ("1:2:3:4", "invalid -p"), ("90-80", "invalid containerPort"),
])
def test_publish_refuses(spec: str, message: str) -> None:
    with pytest.raises(NetworkError, match=message):
        ports.parse_publish(spec)


def test_publish_all_takes_exposed_ports_and_skips_what_it_cannot_publish() -> None:
    exposed = {"80/tcp": {}, "53/udp": {}, "9/sctp": {}, "x/tcp": {}, "443": {}}
    assert ports.exposed_bindings(exposed) == [b("udp", "0.0.0.0", 0, 53), b("tcp", "0.0.0.0", 0, 80),
                                               b("tcp", "0.0.0.0", 0, 443)]
    assert ports.exposed_bindings(None) == []


def test_reserve_is_all_or_nothing() -> None:
    taken = ports.reserve([b("tcp", "127.0.0.1", 0, 80)])
    port = taken.bindings[0]["host_port"]
    try:
        with pytest.raises(PortAllocated, match=f"Bind for 127.0.0.1:{port} failed: port is already allocated"):
            ports.reserve([b("udp", "127.0.0.1", 0, 53), b("tcp", "127.0.0.1", port, 80)])
        # a host range skips the taken port
        res = ports.reserve([dict(b("tcp", "127.0.0.1", 0, 80), host_range=[port, port + 50])])
        assert res.bindings[0]["host_port"] != port and "host_range" not in res.bindings[0]
        res.close()
    finally:
        taken.close()
    assert ports.format_ports([b("udp", "0.0.0.0", 5, 53), b("tcp", "0.0.0.0", 7, 80), b("tcp", "0.0.0.0", 6, 53)]) == [
        "53/tcp -> 0.0.0.0:6", "53/udp -> 0.0.0.0:5", "80/tcp -> 0.0.0.0:7"]


def test_resolv_conf_and_add_host() -> None:
    host = "search example.org\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0\n"
    assert dns.resolv_conf(host, []) == "search example.org\noptions edns0\nnameserver 10.0.0.2\n"
    assert dns.resolv_conf("nameserver 127.0.0.53\n", []) == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert dns.resolv_conf(host, ["1.1.1.1"]).endswith("nameserver 1.1.1.1\n")
    assert dns.parse_add_host("db:10.1.2.3") == "10.1.2.3\tdb"
    assert dns.parse_add_host("v6=[::1]") == "::1\tv6"
    for bad in ("db", "db:notanip", "a b:1.2.3.4", "x:host-gateway"):
        with pytest.raises(NetworkError):
            dns.parse_add_host(bad)
    with pytest.raises(NetworkError, match="not an ip address"):
        dns.check_dns(["dns.example"])


def _record(cid: str, network: str, ip: str, alive: bool = True) -> Record:
    owner = [os.getpid(), process_start_time(os.getpid()) or 0] if alive else [os.getpid(), -1]
    return Record(container=cid, name=f"c{cid[:4]}", hostname=cid[:12], hosts="/nonexistent", owner=owner,
                  endpoints=[Endpoint(network=network, ip=ip, ifname="eth0", veth="hvx")])


def test_addresses_come_from_live_records(tmp_path: Path) -> None:
    store = NetworkStore(tmp_path)
    with store.locked():
        net = store.create("n1", "10.40.0.0/29", None, False)
    assert net.gateway == "10.40.0.1" and net.bridge.startswith("hbr-") and len(net.bridge) <= 15
    assert store.allocate(net) == "10.40.0.2"
    store.write_record(_record("a" * 64, "n1", "10.40.0.2"))
    store.write_record(_record("b" * 64, "n1", "10.40.0.3", alive=False))   # stale: does not hold it
    assert store.allocate(net) == "10.40.0.3"
    assert store.allocate(net, "10.40.0.6") == "10.40.0.6"
    for wanted, message in (("10.40.0.2", "already in use"), ("10.40.0.1", "gateway"),
                            ("10.40.0.7", "does not belong"), ("10.41.0.2", "does not belong"),
                            ("nope", "invalid IP address")):
        with pytest.raises(AddressUnavailable, match=message):
            store.allocate(net, wanted)
    for i in range(3, 7):
        store.write_record(_record(f"{i}" * 64, "n1", f"10.40.0.{i}"))
    with pytest.raises(AddressUnavailable, match="no available IPv4 addresses"):
        store.allocate(net)
    assert [r.name for r in store.members("n1")] == ["c3333", "c4444", "c5555", "c6666", "caaaa"]


def test_network_definitions(tmp_path: Path) -> None:
    store = NetworkStore(tmp_path)
    with store.locked():
        store.create("n1", "10.40.0.0/24", "10.40.0.254", True)
        for args, message in ((("n1", None, None, False), "already exists"),
                              (("n2", "10.40.0.128/25", None, False), "overlaps with network n1"),
                              (("bridge", None, None, False), "pre-defined"),
                              (("host", None, None, False), "pre-defined"),
                              (("bad name", None, None, False), "invalid network name"),
                              (("n3", "10.50.0.0/24", "10.60.0.1", False), "not a host address"),
                              (("n4", None, "10.60.0.1", False), "needs --subnet"),
                              (("n5", "10.50.0.1/24", None, False), "invalid subnet"),
                              (("n6", "fd00::/64", None, False), "IPv6")):
            with pytest.raises(NetworkError, match=message):
                store.create(*args)
        auto = store.create("n7")
        default = store.get("bridge")
        auto2 = store.create("n8")
    assert auto.subnet != default.subnet and not auto.net.overlaps(default.net)
    assert default.subnet == "172.17.0.0/16" or "172.17.0.0/16" in {str(r) for r in _routes()}
    assert not auto2.net.overlaps(auto.net) and not auto2.net.overlaps(default.net)
    assert store.get("n1").gateway == "10.40.0.254" and store.get(store.get("n1").id[:6]).name == "n1"


def test_nft_table_follows_the_records(tmp_path: Path) -> None:
    store = NetworkStore(tmp_path)
    with store.locked():
        pub = store.create("pub", "10.40.0.0/24")
        sealed = store.create("sealed", "10.41.0.0/24", internal=True)
    rec = _record("c" * 64, "pub", "10.40.0.2")
    rec.ports = [b("tcp", "0.0.0.0", 8080, 80), b("udp", "127.0.0.1", 53, 5353)]
    table = nat.render([pub, sealed], [rec])
    assert f"chain c-{'c' * 12} {{" in table and f"jump c-{'c' * 12}" in table
    assert "tcp dport 8080 dnat to 10.40.0.2:80" in table
    assert "ip daddr 127.0.0.1 udp dport 53 dnat to 10.40.0.2:5353" in table
    assert f"ip saddr 10.40.0.0/24 oifname != \"{pub.bridge}\" masquerade" in table
    assert "10.41.0.0/24" not in table   # internal: no masquerade
    assert f"iifname \"{sealed.bridge}\" oifname != \"{sealed.bridge}\" drop" in table
    assert "chain c-" not in nat.render([pub, sealed], [])
    assert nat.render([], []) == ""


def test_mac_follows_the_address_as_docker() -> None:
    from runtime.network.bridge import mac_for

    assert mac_for("172.17.0.2") == "02:42:ac:11:00:02"
    assert mac_for("10.90.0.255") == "02:42:0a:5a:00:ff"
