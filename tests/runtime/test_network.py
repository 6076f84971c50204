"""Networks and published ports, on test hosts in network namespaces this test makes: hoist runs
inside a "host" namespace (its bridges and nft table live and die there, never in the machine's
own), joined by a veth pair to a "client host" namespace. Nothing here touches the root
namespace: both namespaces, and everything hoist made in them, go with ``ip netns del``."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.images import Entry, busybox_image
from tests.peers import absent, need_tool
from tests.runtime.conftest import need_root_and_busybox

REPO = Path(__file__).resolve().parents[2]
UDP_ECHO_SRC = Path(__file__).with_name("probes") / "udp_echo.c"
IMAGE = "netbox:latest"
UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
for _ in range(20):
    s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(2048)[0].decode()); break
    except socket.timeout:
        continue
else:
    sys.exit("no answer")
"""


@dataclass
class Res:
    code: int
    out: str
    err: str


class Bed:
    """A "host" namespace where hoist runs and a "client" namespace one veth away."""

    def __init__(self, root: Path) -> None:
        self.ip_tool = need_tool("ip", "iproute2")
        self.nft = need_tool("nft", "nftables")
        self.nsenter = need_tool("nsenter", "util-linux")
        tag = f"{os.getpid() % 10000}{random.randrange(100, 999)}"
        self.host, self.client = f"hoist-nh{tag}", f"hoist-nc{tag}"
        octet = random.randrange(1, 250)
        self.host_addr, self.client_addr = f"10.252.{octet}.1", f"10.252.{octet}.2"
        self.root = root
        self._made: list[str] = []

    def _ip(self, *args: str) -> None:
        res = subprocess.run([self.ip_tool, *args], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")

    def start(self) -> Bed:
        for ns in (self.host, self.client):
            self._ip("netns", "add", ns)
            self._made.append(ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
        self._ip("-n", self.host, "link", "add", "tb0", "type", "veth", "peer", "name", "tb1", "netns", self.client)
        self._ip("-n", self.host, "addr", "add", f"{self.host_addr}/30", "dev", "tb0")
        self._ip("-n", self.client, "addr", "add", f"{self.client_addr}/30", "dev", "tb1")
        self._ip("-n", self.host, "link", "set", "tb0", "up")
        self._ip("-n", self.client, "link", "set", "tb1", "up")
        return self

    def stop(self) -> None:
        if self.host in self._made:
            ids = self.hoist("ps", "-aq").out.split()
            if ids:
                self.hoist("rm", "-f", *ids)
        for ns in self._made:
            subprocess.run([self.ip_tool, "netns", "del", ns], capture_output=True)
        self._made.clear()

    def env(self, **extra: str) -> dict[str, str]:
        return dict(os.environ, HOIST_ROOT=str(self.root), PYTHONPATH=str(REPO), **extra)

    def enter(self, ns: str) -> list[str]:
        """Only the network namespace (``ip netns exec`` would also remount /sys, hiding the
        cgroup hierarchies the containers' device rules live in)."""
        return [self.nsenter, f"--net=/run/netns/{ns}"]

    def in_ns(self, ns: str, *argv: str, timeout: float = 60, env: dict[str, str] | None = None) -> Res:
        res = subprocess.run([*self.enter(ns), *argv], capture_output=True, text=True,
                             timeout=timeout, env=env or self.env(), cwd=REPO)
        return Res(res.returncode, res.stdout, res.stderr)

    def hoist(self, *args: str, env: dict[str, str] | None = None) -> Res:
        return self.in_ns(self.host, sys.executable, "-m", "hoist.cli", *args, env=env)

    def ok(self, *args: str) -> str:
        res = self.hoist(*args)
        assert res.code == 0, f"hoist {' '.join(args)} -> {res.code}\n{res.out}\n{res.err}"
        return res.out

    def host_sh(self, *argv: str) -> Res:
        return self.in_ns(self.host, *argv)

    def client_sh(self, *argv: str) -> Res:
        return self.in_ns(self.client, *argv)

    def kernel_state(self) -> dict[str, object]:
        """What hoist may add in the host namespace: links, addresses, the nft ruleset."""
        links = json.loads(self.host_sh(self.ip_tool, "-j", "link").out)
        addrs = json.loads(self.host_sh(self.ip_tool, "-j", "addr").out)
        rules = self.host_sh(self.nft, "list", "ruleset").out
        return {"links": sorted((link["ifname"], link.get("address")) for link in links),
                "addrs": sorted((a["ifname"], i["local"], i["prefixlen"]) for a in addrs
                                for i in a.get("addr_info", []) if i["family"] == "inet"),
                "rules": rules}


def eventually(fn, what: str, tries: int = 100) -> str:
    """``fn()`` until it returns text (a server just started may not listen yet)."""
    last = None
    for _ in range(tries):
        res = fn()
        if res.code == 0 and res.out.strip():
            return res.out
        last = res
        time.sleep(0.1)
    raise AssertionError(f"{what}: never answered ({last})")


@pytest.fixture(scope="session")
def udp_echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        absent("gcc missing (apt-get install gcc libc6-dev)")
    out = tmp_path_factory.mktemp("udp-echo") / "udp_echo"
    res = subprocess.run([gcc, "-static", "-O1", "-Wall", "-o", str(out), str(UDP_ECHO_SRC)], capture_output=True)
    if res.returncode != 0:
        absent(f"cannot build the static UDP echo server: {res.stderr.decode(errors='replace')[-500:]}")
    return out


@pytest.fixture
def bed(tmp_path: Path, udp_echo: Path) -> Iterator[Bed]:
    need_root_and_busybox()
    root = tmp_path / "hoist"
    busybox_image(root / "images")
    busybox_image(root / "images", IMAGE, config={"ExposedPorts": {"80/tcp": {}, "9999/udp": {}}},
                  extra=[Entry("bin/udp_echo", data=udp_echo.read_bytes(), mode=0o755),
                         Entry("www/", "dir", mode=0o755),
                         Entry("www/index.html", data=b"hello from the container\n", mode=0o644)])
    tb = Bed(root).start()
    try:
        yield tb
    finally:
        tb.stop()


WEB = ["sh", "-c", "udp_echo 9999 & exec httpd -f -p 80 -h /www"]


def test_two_containers_on_a_user_network_talk_by_name(bed: Bed) -> None:
    bed.ok("network", "create", "--subnet", "10.90.0.0/24", "appnet")
    # The client starts first: it must still learn the server's name when that starts later.
    bed.ok("run", "-d", "--name", "early", "--network", "appnet", "busybox", "sleep", "300")
    bed.ok("run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "www",
           "--ip", "10.90.0.50", IMAGE, *WEB)
    for name in ("web", "www"):
        out = eventually(lambda n=name: bed.hoist("exec", "early", "busybox", "wget", "-qO-", f"http://{n}/index.html"),
                         f"http://{name}/ from an earlier container")
        assert out == "hello from the container\n"
    hosts = bed.ok("exec", "early", "cat", "/etc/hosts")
    assert "10.90.0.50\tweb www " in hosts
    # A later container, by name too; its own /etc/hosts is docker's plus the members.
    out = bed.ok("run", "--rm", "--network", "appnet", "--name", "late", "busybox", "sh", "-c",
                 "wget -qO- http://web/index.html && cat /etc/hostname /etc/hosts")
    assert out.startswith("hello from the container\n")
    assert "127.0.0.1\tlocalhost\n" in out and "late " in out
    # The server stopped: its name is gone from the others' hosts files.
    bed.ok("rm", "-f", "web")
    assert "web" not in bed.ok("exec", "early", "cat", "/etc/hosts")
    # The default bridge has no names (as docker's), but an address and a route out.
    out = bed.ok("run", "--rm", "--network", "bridge", "busybox", "sh", "-c", "ip route; cat /etc/hosts")
    assert "default via 172.17.0.1" in out and "early" not in out


def test_the_default_network_is_the_bridge(bed: Bed) -> None:
    """Without --network a container is on the default bridge, as docker's (the suite's other
    tests run with HOIST_DEFAULT_NETWORK=none: dockerd's --bridge=none)."""
    env = {k: v for k, v in bed.env().items() if k != "HOIST_DEFAULT_NETWORK"}
    res = bed.hoist("run", "--rm", "-p", "8090:80", "busybox", "sh", "-c", "ip addr show eth0; ip route",
                    env=env)
    assert res.code == 0, res.err
    assert "inet 172.17." in res.out and "default via 172.17.0.1" in res.out
    ip = res.out.split("inet ", 1)[1].split("/", 1)[0]
    # docker's MAC for the address: a container recreated on it keeps its neighbours' ARP right
    assert "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split(".")) in res.out
    res = bed.hoist("run", "--rm", "busybox", "sh", "-c", "ip -4 addr show eth0",
                    env={**env, "HOIST_DEFAULT_NETWORK": "none"})
    assert res.code != 0 or "inet " not in res.out


def test_published_tcp_and_udp_from_another_host_and_loopback(bed: Bed) -> None:
    bed.ok("network", "create", "--subnet", "10.91.0.0/24", "pubnet")
    bed.ok("run", "-d", "--name", "pub", "--network", "pubnet", "-p", "8080:80", "-p", "9999:9999/udp",
           "-p", "127.0.0.1:8081:80", IMAGE, *WEB)
    assert bed.ok("port", "pub").splitlines() == [
        "80/tcp -> 0.0.0.0:8080", "80/tcp -> 127.0.0.1:8081", "9999/udp -> 0.0.0.0:9999"]
    assert bed.ok("port", "pub", "9999/udp").strip() == "0.0.0.0:9999"
    page = "hello from the container\n"
    # from the client host
    assert eventually(lambda: bed.client_sh("busybox", "wget", "-qO-", f"http://{bed.host_addr}:8080/"),
                      "TCP from the client host") == page
    assert bed.client_sh(sys.executable, "-c", UDP_CLIENT, bed.host_addr, "9999").out == "echo:ping\n"
    # from the host itself, on 127.0.0.1 and its own address
    assert bed.host_sh("busybox", "wget", "-qO-", "http://127.0.0.1:8080/").out == page
    assert bed.host_sh("busybox", "wget", "-qO-", "http://127.0.0.1:8081/").out == page
    assert bed.host_sh("busybox", "wget", "-qO-", f"http://{bed.host_addr}:8080/").out == page
    assert bed.host_sh(sys.executable, "-c", UDP_CLIENT, "127.0.0.1", "9999").out == "echo:ping\n"
    # 127.0.0.1:8081 is bound to loopback only: not reachable from the client host
    res = bed.client_sh("busybox", "wget", "-T", "2", "-qO-", f"http://{bed.host_addr}:8081/")
    assert res.code != 0
    # another container reaches the published port through the host's address (hairpin NAT)
    out = bed.ok("run", "--rm", "--network", "pubnet", "busybox", "busybox", "wget", "-qO-", f"http://{bed.host_addr}:8080/")
    assert out == page


def test_outbound_nat_reaches_the_client_host(bed: Bed) -> None:
    """The client host has no route to the container's subnet: only a masquerade gets the
    answer back. An --internal network has no way out at all."""
    server = subprocess.Popen([*bed.enter(bed.client), "busybox", "httpd", "-f", "-p", "7000",
                               "-h", str(bed.root / "images")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (bed.root / "images" / "probe.txt").write_text("from the client host\n")
        out = eventually(lambda: bed.hoist("run", "--rm", "--network", "bridge", "busybox", "busybox", "wget", "-qO-",
                                           f"http://{bed.client_addr}:7000/probe.txt"), "outbound from a container")
        assert out == "from the client host\n"
        bed.ok("network", "create", "--internal", "--subnet", "10.92.0.0/24", "sealed")
        res = bed.hoist("run", "--rm", "--network", "sealed", "busybox", "busybox", "wget", "-T", "2", "-qO-",
                        f"http://{bed.client_addr}:7000/probe.txt")
        assert res.code != 0 and "from the client host" not in res.out
        out = bed.ok("run", "--rm", "--network", "sealed", "busybox", "busybox", "ip", "route")
        assert "default" not in out
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


def test_publish_all_and_ephemeral_ports(bed: Bed) -> None:
    bed.ok("run", "-d", "--name", "eph", "--network", "bridge", "-P", IMAGE, *WEB)
    lines = bed.ok("port", "eph").splitlines()
    assert [ln.split(" -> ")[0] for ln in lines] == ["80/tcp", "9999/udp"]
    tcp_port = int(lines[0].rsplit(":", 1)[1])
    udp_port = int(lines[1].rsplit(":", 1)[1])
    low, _high = map(int, bed.host_sh("cat", "/proc/sys/net/ipv4/ip_local_port_range").out.split())
    assert tcp_port >= low and udp_port >= low
    assert eventually(lambda: bed.client_sh("busybox", "wget", "-qO-", f"http://{bed.host_addr}:{tcp_port}/"),
                      "-P's TCP port") == "hello from the container\n"
    assert bed.client_sh(sys.executable, "-c", UDP_CLIENT, bed.host_addr, str(udp_port)).out == "echo:ping\n"
    # -p CTR: an ephemeral host port; a host range with one container port takes a free one
    bed.ok("run", "-d", "--name", "eph2", "--network", "bridge", "-p", "80", "-p", "18000-18002:80", IMAGE, *WEB)
    lines = bed.ok("port", "eph2").splitlines()
    assert len(lines) == 2 and all(ln.startswith("80/tcp -> 0.0.0.0:") for ln in lines)
    assert "80/tcp -> 0.0.0.0:18000" in lines


def test_teardown_leaves_nothing(bed: Bed) -> None:
    pristine = bed.kernel_state()
    bed.ok("network", "create", "--subnet", "10.93.0.0/24", "tnet")
    bed.ok("network", "create", "--subnet", "10.98.0.0/24", "tnet2")
    with_networks = bed.kernel_state()
    assert with_networks != pristine
    bed.ok("run", "-d", "--name", "t1", "--network", "tnet", "-p", "8090:80", "-p", "8091:9999/udp", IMAGE, *WEB)
    bed.ok("run", "-d", "--name", "t2", "--network", "tnet", "busybox", "sleep", "300")
    bed.ok("network", "connect", "tnet2", "t2")
    running = bed.kernel_state()
    assert running != with_networks and "dnat to 10.93.0.2:80" in str(running["rules"])
    bed.ok("network", "disconnect", "tnet2", "t2")
    bed.ok("rm", "-f", "t1", "t2")
    assert bed.kernel_state() == with_networks
    # A crash: monitor and container killed with SIGKILL leave a stale record and its rules;
    # prune removes them (and the networks nothing uses any more).
    bed.ok("run", "-d", "--name", "t3", "--network", "tnet", "-p", "8092:80", IMAGE, *WEB)
    state = json.loads(next((bed.root / "containers").glob("*/state.json")).read_text())
    for pid in (state["monitor_pid"], state["pid"]):
        os.kill(pid, signal.SIGKILL)
    for pid in (state["monitor_pid"], state["pid"]):
        while os.path.exists(f"/proc/{pid}/stat") and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            time.sleep(0.02)
    assert "dport 8092" in str(bed.kernel_state()["rules"])   # stale until something sweeps
    assert bed.ok("network", "prune").split() == ["Deleted", "Networks:", "tnet", "tnet2"]
    bed.ok("rm", "-f", "t3")
    assert bed.kernel_state() == pristine
    assert "tnet" not in bed.ok("network", "ls")


def _listening(bed: Bed, port: int) -> bool:
    table = bed.host_sh("cat", "/proc/net/tcp").out.splitlines()[1:]
    return any(cols[1].endswith(f":{port:04X}") and cols[3] == "0A" for cols in (ln.split() for ln in table))


def _one_line(res: Res, code: int = 125) -> str:
    assert res.code == code, res
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.err, res.err
    return lines[0]


def test_bad_input_is_one_line_and_leaves_nothing(bed: Bed) -> None:
    bed.ok("network", "create", "--subnet", "10.94.0.0/24", "bnet")
    bed.ok("run", "-d", "--name", "holder", "--network", "bnet", "-p", "8100:80", IMAGE, *WEB)
    before = bed.kernel_state()
    records = sorted(p.name for p in (bed.root / "networks" / "endpoints").iterdir())
    # host port in use: by another container, and by a host process
    err = _one_line(bed.hoist("run", "-d", "--network", "bnet", "-p", "8100:80", IMAGE, *WEB))
    assert err == "hoist run: Bind for 0.0.0.0:8100 failed: port is already allocated"
    listener = subprocess.Popen([*bed.enter(bed.host), "busybox", "nc", "-l", "-p", "8101"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if _listening(bed, 8101):
                break
            time.sleep(0.05)
        err = _one_line(bed.hoist("run", "--network", "bnet", "-p", "8102:80", "-p", "8101:80", IMAGE, "true"))
        assert "8101 failed: port is already allocated" in err
    finally:
        listener.kill()
        listener.wait()
    # the port taken before the failure was let go
    bed.ok("run", "--rm", "--network", "bnet", "-p", "8102:80", "busybox", "true")
    err = _one_line(bed.hoist("run", "--rm", "--network", "bnet", "--ip", "10.95.0.9", "busybox", "true"))
    assert "does not belong to" in err and "10.94.0.0/24" in err
    err = _one_line(bed.hoist("run", "--rm", "--network", "bnet", "--ip", "10.94.0.2", "busybox", "true"))
    assert "already in use" in err
    err = _one_line(bed.hoist("network", "rm", "bnet"), code=1)
    assert "has active endpoints (holder)" in err
    err = _one_line(bed.hoist("run", "--rm", "--network", "nosuch", "busybox", "true"))
    assert "network nosuch not found" in err
    err = _one_line(bed.hoist("run", "--rm", "--network", "bridge", "--ip", "172.17.0.9", "busybox", "true"))
    assert "user defined networks only" in err
    err = _one_line(bed.hoist("run", "--rm", "--network", "bnet", "-p", "80:70000", "busybox", "true"))
    assert "invalid containerPort" in err
    err = _one_line(bed.hoist("network", "create", "--subnet", "10.94.0.0/25", "overlap"), code=1)
    assert "overlaps with network bnet" in err
    # nft missing: a PATH without it
    empty = bed.root.parent / "empty-path"
    empty.mkdir()
    err = _one_line(bed.hoist("run", "--rm", "--network", "bnet", "busybox", "true",
                              env=bed.env(PATH=str(empty))))
    assert "nftables is not installed" in err
    err = _one_line(bed.hoist("network", "create", "nonft", env=bed.env(PATH=str(empty))), code=1)
    assert "nftables is not installed" in err
    # the kernel refusing a network namespace (a seccomp filter on the hoist process answers
    # EPERM to unshare/clone of CLONE_NEWNET, as a locked-down host does)
    refuse = [sys.executable, str(Path(__file__).with_name("refuse_netns.py")), sys.executable, "-m", "hoist.cli"]
    for args in (["--network", "bnet", "-p", "8103:80"], ["--network", "bridge"], ["--network", "none"]):
        err = _one_line(bed.in_ns(bed.host, *refuse, "run", "--rm", *args, "busybox", "true"))
        assert "Operation not permitted" in err and "unshare" in err, err
    assert "8103" not in bed.host_sh(bed.nft, "list", "ruleset").out
    assert bed.kernel_state() == before
    assert sorted(p.name for p in (bed.root / "networks" / "endpoints").iterdir()) == records


def test_container_mode_dns_and_add_host(bed: Bed) -> None:
    bed.ok("network", "create", "--subnet", "10.96.0.0/24", "cnet")
    bed.ok("run", "-d", "--name", "base", "--network", "cnet", "--add-host", "db.example:10.1.2.3",
           "--dns", "10.0.0.53", IMAGE, *WEB)
    out = bed.ok("run", "--rm", "--network", "container:base", "busybox", "sh", "-c",
                 "ip -4 addr show eth0; wget -qO- http://127.0.0.1/index.html; cat /etc/hosts /etc/resolv.conf")
    assert "10.96.0.2/24" in out and "hello from the container" in out
    assert "10.1.2.3\tdb.example" in out and "nameserver 10.0.0.53" in out
    err = _one_line(bed.hoist("run", "--rm", "--network", "container:base", "-p", "80:80", "busybox", "true"))
    assert "conflicting options" in err
    err = _one_line(bed.hoist("run", "--rm", "--network", "container:nosuch", "busybox", "true"))
    assert "no such container: nosuch" in err
    bed.ok("run", "--name", "done", "--network", "cnet", "busybox", "true")
    err = _one_line(bed.hoist("run", "--rm", "--network", "container:done", "busybox", "true"))
    assert "non running container" in err
    err = _one_line(bed.hoist("network", "rm", "nosuch"), code=1)
    assert "network nosuch not found" in err
    # connect a running container to a second network: a new interface and names there
    bed.ok("network", "create", "--subnet", "10.97.0.0/24", "other")
    bed.ok("run", "-d", "--name", "peer", "--network", "other", "busybox", "sleep", "300")
    bed.ok("network", "connect", "--alias", "basealias", "other", "base")
    out = bed.ok("exec", "base", "busybox", "ip", "-4", "addr")
    assert "10.97.0." in out
    assert eventually(lambda: bed.hoist("exec", "peer", "busybox", "wget", "-qO-", "http://basealias/index.html"),
                      "a connected container by alias") == "hello from the container\n"
    doc = json.loads(bed.ok("network", "inspect", "other"))[0]
    assert doc["Name"] == "other" and doc["IPAM"]["Config"] == [{"Subnet": "10.97.0.0/24", "Gateway": "10.97.0.1"}]
    assert sorted(c["Name"] for c in doc["Containers"].values()) == ["base", "peer"]
    assert all(c["MacAddress"] and c["IPv4Address"].endswith("/24") for c in doc["Containers"].values())
    bed.ok("network", "disconnect", "other", "base")
    assert "10.97.0." not in bed.ok("exec", "base", "busybox", "ip", "-4", "addr")
    assert "basealias" not in bed.ok("exec", "peer", "cat", "/etc/hosts")


def test_concurrent_runs_get_distinct_addresses(bed: Bed) -> None:
    """Six ``run -d`` at once on one network: the lock gives each its own address and port, and
    each one's hosts file ends up naming all six."""
    bed.ok("network", "create", "--subnet", "10.99.0.0/24", "busy")
    procs = [subprocess.Popen([*bed.enter(bed.host), sys.executable, "-m", "hoist.cli", "run", "-d", "--name", f"c{i}",
                               "--network", "busy", "-p", "80", IMAGE, *WEB],
                              env=bed.env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(6)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    doc = json.loads(bed.ok("network", "inspect", "busy"))[0]
    addrs = sorted(c["IPv4Address"] for c in doc["Containers"].values())
    assert len(set(addrs)) == 6 and all(a.startswith("10.99.0.") for a in addrs)
    host_ports = {bed.ok("port", f"c{i}", "80").strip() for i in range(6)}
    assert len(host_ports) == 6
    for i in range(6):
        hosts = bed.ok("exec", f"c{i}", "cat", "/etc/hosts")
        assert all(f"\tc{j} " in hosts for j in range(6)), hosts
