"""``hoist compose`` on project networks with published ports, inside a "host" network namespace
the test makes (``tests/runtime/test_network.py``'s ``Bed``: hoist entered with ``nsenter --net``,
a "client host" namespace a veth away; nothing is made in the machine's own namespace).

A three-service app: ``db`` (busybox httpd) only on the internal network ``back`` with the alias
``database``; ``manager`` on ``back`` and the project's default network (so one of its networks
is attached at create and the other connected after start); ``web`` on the default network with
a published port in short and in long syntax. The manager reaches the db and the web front by
service name (and alias), the web front answers from the client namespace and from 127.0.0.1 of
the host; a new web image and ``up`` again recreates only web; ``down`` leaves the kernel as it
was (links, addresses, nft ruleset).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import Entry, busybox_image
from tests.runtime.conftest import need_root_and_busybox
from tests.runtime.test_network import Bed, Res, eventually

COMPOSE = """\
name: shop
services:
  db:
    image: busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo db-value > /www/value && exec httpd -f -p 80 -h /www"]
    networks:
      back:
        aliases: [database]
    stop_signal: SIGKILL
  manager:
    image: busybox:latest
    command: ["sleep", "600"]
    hostname: boss
    extra_hosts: ["printer=10.1.2.3"]
    dns: 192.0.2.53
    networks: [back, default]
    stop_signal: SIGKILL
  web:
    image: web:latest
    command: ["sh", "-c", "exec httpd -f -p 80 -h /www"]
    ports:
      - "18080:80"
      - target: 80
        published: "18081"
        host_ip: 127.0.0.1
    expose: ["80"]
    stop_signal: SIGKILL
networks:
  back:
    internal: true
    ipam:
      config:
        - subnet: 10.231.5.0/24
    labels: {tier: data}
"""

FETCH = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")
"""


def _web_image(root: Path, text: str) -> None:
    busybox_image(root / "images", "web:latest",
                  extra=[Entry("www/", "dir", mode=0o755),
                         Entry("www/index.html", data=text.encode(), mode=0o644)])


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Bed, Path]]:
    need_root_and_busybox()
    root = tmp_path / "hoist"
    busybox_image(root / "images")
    _web_image(root, "web v1\n")
    project = tmp_path / "shop"
    project.mkdir()
    (project / "compose.yaml").write_text(COMPOSE)
    bed = Bed(root).start()
    try:
        yield bed, project
    finally:
        bed.stop()


def compose(bed: Bed, project: Path, *args: str) -> Res:
    return bed.hoist("compose", "-f", str(project / "compose.yaml"), *args)


def ok(bed: Bed, project: Path, *args: str) -> Res:
    res = compose(bed, project, *args)
    assert res.code == 0, f"compose {' '.join(args)} -> {res.code}\n{res.out}\n{res.err}"
    return res


def _ids(bed: Bed) -> dict[str, str]:
    from runtime.containers import ContainerStore

    return {c.name: c.id for c in ContainerStore(bed.root / "containers").all()}


def _wget(bed: Bed, project: Path, service: str, url: str) -> str:
    # timeout: a recreated container gets the address its predecessor had, and the runtime sends no
    # gratuitous ARP, so a neighbour keeps the old MAC until its entry goes stale (up to ~45 s):
    # each try is bounded and retried rather than hanging (a runtime/network issue, reported;
    # busybox's own wget -T crashes in Debian's static build).
    return eventually(lambda: compose(bed, project, "exec", service, "busybox", "timeout", "3",
                                              "busybox", "wget", "-qO-", url),
                      f"{service} -> {url}", tries=200)


def test_services_talk_by_name_publish_ports_upgrade_and_down(shop: tuple[Bed, Path]) -> None:
    bed, project = shop
    pristine = bed.kernel_state()
    up = ok(bed, project, "up", "-d")
    assert "Network shop_default  Created" in up.err and "Network shop_back  Created" in up.err, up.err
    assert "not supported" not in up.err, up.err

    # The networks carry compose's labels and the file's options.
    back = json.loads(bed.ok("network", "inspect", "shop_back"))[0]
    assert back["Labels"] == {"tier": "data", "com.docker.compose.project": "shop",
                              "com.docker.compose.network": "back"}
    assert back["Internal"] is True and back["IPAM"]["Config"][0]["Subnet"] == "10.231.5.0/24"
    default = json.loads(bed.ok("network", "inspect", "shop_default"))[0]
    assert default["Labels"]["com.docker.compose.network"] == "default"
    assert sorted(c["Name"] for c in default["Containers"].values()) == ["shop-manager-1", "shop-web-1"]
    assert sorted(c["Name"] for c in back["Containers"].values()) == ["shop-db-1", "shop-manager-1"]

    # By service name, alias and container name, on the first network and on the connected one.
    for url in ("http://db/value", "http://database/value", "http://shop-db-1/value"):
        assert _wget(bed, project, "manager", url) == "db-value\n"
    assert _wget(bed, project, "manager", "http://web/index.html") == "web v1\n"
    assert compose(bed, project, "exec", "web", "busybox", "wget", "-qO-", "http://db/value").code != 0  # not on back
    hosts = ok(bed, project, "exec", "web", "cat", "/etc/hosts").out
    assert any("shop-manager-1" in line and "manager" in line.split()[1:] for line in hosts.splitlines()), hosts
    # hostname, extra_hosts and dns through the runtime's options.
    assert ok(bed, project, "exec", "manager", "busybox", "hostname").out == "boss\n"
    assert "10.1.2.3\tprinter" in ok(bed, project, "exec", "manager", "cat", "/etc/hosts").out
    assert "nameserver 192.0.2.53" in ok(bed, project, "exec", "manager", "cat", "/etc/resolv.conf").out

    # The published ports: from the client host and from the host's loopback (long syntax).
    client = f"http://{bed.host_addr}:18080/index.html"
    assert eventually(lambda: bed.client_sh(sys.executable, "-c", FETCH, client), client) == "web v1\n"
    loop = "http://127.0.0.1:18081/index.html"
    assert eventually(lambda: bed.host_sh(sys.executable, "-c", FETCH, loop), loop) == "web v1\n"
    assert bed.client_sh(sys.executable, "-c", FETCH, f"http://{bed.host_addr}:18081/").code != 0  # loopback only
    ps = {json.loads(line)["Service"]: json.loads(line)["Ports"]
          for line in ok(bed, project, "ps", "--format", "json").out.splitlines()}
    assert ps == {"db": "", "manager": "", "web": "0.0.0.0:18080->80/tcp, 127.0.0.1:18081->80/tcp"}

    # A stopped multi-network service started again gets both networks and its names back.
    ok(bed, project, "stop", "manager")
    ok(bed, project, "start", "manager")
    assert _wget(bed, project, "manager", "http://database/value") == "db-value\n"
    assert _wget(bed, project, "manager", "http://web/index.html") == "web v1\n"

    # Nothing changed: nothing recreated. A new web image: only web, still reachable by all.
    first = _ids(bed)
    again = ok(bed, project, "up", "-d")
    assert "Recreate" not in again.err and _ids(bed) == first, again.err
    _web_image(bed.root, "web v2\n")
    ok(bed, project, "up", "-d")
    second = _ids(bed)
    assert second["shop-web-1"] != first["shop-web-1"]
    assert {k: v for k, v in second.items() if k != "shop-web-1"} == \
        {k: v for k, v in first.items() if k != "shop-web-1"}
    assert _wget(bed, project, "manager", "http://web/index.html") == "web v2\n"
    assert eventually(lambda: bed.client_sh(sys.executable, "-c", FETCH, client), client) == "web v2\n"
    assert eventually(lambda: bed.host_sh(sys.executable, "-c", FETCH, loop), loop) == "web v2\n"

    down = ok(bed, project, "down")
    assert "Network shop_back  Removed" in down.err and "Network shop_default  Removed" in down.err, down.err
    assert _ids(bed) == {}
    assert "shop_" not in bed.ok("network", "ls")
    assert bed.kernel_state() == pristine


def test_external_networks_are_used_never_made_or_removed(shop: tuple[Bed, Path]) -> None:
    bed, project = shop
    (project / "compose.yaml").write_text(
        "name: ext\nservices:\n  a:\n    image: busybox:latest\n    command: [sleep, '600']\n"
        "    stop_signal: SIGKILL\n    networks: [outside]\n"
        "networks:\n  outside:\n    external: true\n    name: corp\n")
    pristine = bed.kernel_state()
    res = compose(bed, project, "up", "-d")
    assert res.code != 0 and res.err.strip().splitlines()[-1].endswith(
        "network corp declared as external, but could not be found"), res.err
    assert "Traceback" not in res.err
    assert _ids(bed) == {} and bed.kernel_state() == pristine
    bed.ok("network", "create", "--subnet", "10.232.0.0/24", "corp")
    ok(bed, project, "up", "-d")
    net = json.loads(bed.ok("network", "inspect", "corp"))[0]
    assert [c["Name"] for c in net["Containers"].values()] == ["ext-a-1"]
    ok(bed, project, "down")
    assert "corp" in bed.ok("network", "ls")            # external: left alone
    bed.ok("network", "rm", "corp")
    assert bed.kernel_state() == pristine


def test_bad_network_input_is_one_line_and_leaves_nothing(shop: tuple[Bed, Path]) -> None:
    bed, project = shop
    pristine = bed.kernel_state()
    cases = [
        ("networks:\n  n:\n    driver: overlay\n", "[n]", 'network "n": driver \'overlay\' is not supported'),
        ("networks:\n  n:\n    ipam:\n      config: [{subnet: not-a-subnet}]\n", "[n]", "not-a-subnet"),
        ("", "    ports: ['[::1]:8080:80']\n", "IPv6 host address ::1 is not supported"),
        ("", "    extra_hosts: ['printer=10.1.2']\n", 'service "a": extra_hosts.0: invalid IP address'),
        ("", "    dns: [example.org]\n", 'service "a": dns: example.org is not an ip address'),
        ("networks:\n  n:\n    ipam:\n      config: [{subnet: 10.233.0.0/24}]\n",
         "    networks: {n: {ipv4_address: 10.9.9.9}}\n", "10.9.9.9"),
        ("", "    ports: ['18080:80', '18080:81']\n", "18080"),
    ]
    for top, extra, message in cases:
        svc = "  a:\n    image: busybox:latest\n    command: [sleep, '600']\n"
        svc += f"    networks: {extra}\n" if extra.startswith("[") else extra
        (project / "compose.yaml").write_text(f"name: bad\nservices:\n{svc}{top}")
        res = compose(bed, project, "up", "-d")
        lines = res.err.strip().splitlines()
        assert res.code != 0 and message in lines[-1] and "Traceback" not in res.err, res.err
        assert _ids(bed) == {}
        assert "bad_" not in bed.ok("network", "ls")
        assert bed.kernel_state() == pristine


def test_a_port_taken_fails_up_and_leaves_nothing(shop: tuple[Bed, Path]) -> None:
    """The second service's port is the first's: its start fails with docker's message, and the
    rollback removes what this ``up`` made (the first container, the network, their rules)."""
    bed, project = shop
    svc = "    image: busybox:latest\n    command: [sleep, '600']\n    stop_signal: SIGKILL\n    ports: ['18090:80']\n"
    (project / "compose.yaml").write_text(f"name: taken\nservices:\n  a:\n{svc}  b:\n{svc}    depends_on: [a]\n")
    pristine = bed.kernel_state()
    res = compose(bed, project, "up", "-d")
    last = res.err.strip().splitlines()[-1]
    assert res.code != 0 and "port is already allocated" in last and "18090" in last, res.err
    assert "Traceback" not in res.err
    assert _ids(bed) == {}
    assert "taken_" not in bed.ok("network", "ls")
    assert bed.kernel_state() == pristine


def test_network_mode_service_and_run_on_the_project_network(shop: tuple[Bed, Path]) -> None:
    bed, project = shop
    (project / "compose.yaml").write_text(
        "name: side\nservices:\n"
        "  app:\n    image: web:latest\n    command: [sh, -c, 'exec httpd -f -p 127.0.0.1:80 -h /www']\n"
        "    stop_signal: SIGKILL\n"
        "  sidecar:\n    image: busybox:latest\n    command: [sleep, '600']\n    stop_signal: SIGKILL\n"
        "    network_mode: service:app\n    depends_on: [app]\n")
    pristine = bed.kernel_state()
    ok(bed, project, "up", "-d")
    # The sidecar shares app's namespace: app's loopback-only server is its own 127.0.0.1.
    assert _wget(bed, project, "sidecar", "http://127.0.0.1/index.html") == "web v1\n"
    # A one-off container joins the project network and finds app by service name (app listens
    # on its loopback only, so the name resolving to app's address is what is checked).
    run = ok(bed, project, "run", "--rm", "--no-deps", "--name", "side-once", "app", "cat", "/etc/hosts").out
    members = [line.split() for line in run.split("# hoist: members", 1)[1].splitlines()[1:]]
    assert {m[1] for m in members} == {"side-app-1", "side-once"}, run
    assert "app" in next(m for m in members if m[1] == "side-app-1")
    ok(bed, project, "down")
    assert bed.kernel_state() == pristine
