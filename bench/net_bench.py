"""TCP throughput through a published port: hoist against docker, in one run, on one image.

    sudo .venv/bin/python bench/net_bench.py [--mb 512] [--runs 5] [--skip-docker]

Everything happens in two network namespaces this script makes (a "host", where hoist and a
private dockerd run, and a "client host" one veth away) and removes at the end; the machine's
own namespace is not touched. The server in each container is ``bench/tcp_sink.c`` (static,
reads to EOF with a 1 MiB buffer, answers the byte count); the client, a Python process in the
host or client namespace, sends ``--mb`` MiB of zeros and waits for that answer. Paths:

- ``127.0.0.1``: from the host itself to ``127.0.0.1:PORT`` (hoist: nft DNAT with
  route_localnet; docker 20.10: its userland proxy, ``docker-proxy``);
- ``other netns``: from the client host to the host's address (both: DNAT in the kernel).

Prints the median MiB/s of ``--runs`` transfers for each, and hoist/docker ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.images import Entry, busybox_image  # noqa: E402

IMAGE = "netbench-sink:latest"
CLIENT = """
import socket, sys, time
host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunk = bytes(1 << 20)
for attempt in range(100):
    try:
        s = socket.create_connection((host, port), timeout=30)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("cannot connect")
start = time.perf_counter()
sent = 0
while sent < total:
    s.sendall(chunk)
    sent += len(chunk)
s.shutdown(socket.SHUT_WR)
answer = b""
while len(answer) < 8:
    part = s.recv(8 - len(answer))
    if not part:
        break
    answer += part
elapsed = time.perf_counter() - start
if int.from_bytes(answer, "big") != total:
    sys.exit(f"server counted {int.from_bytes(answer, 'big')} bytes of {total}")
print(elapsed)
"""


def sh(*argv: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(argv), capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return res


class Bench:
    def __init__(self, work: Path, mb: int, runs: int) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100, 999)}"
        self.host, self.client = f"hoist-bh{tag}", f"hoist-bc{tag}"
        octet = random.randrange(1, 250)
        self.host_addr, self.client_addr = f"10.253.{octet}.1", f"10.253.{octet}.2"
        self.work, self.total, self.runs = work, mb << 20, runs
        self.root = work / "hoist"
        self.env = dict(os.environ, HOIST_ROOT=str(self.root), PYTHONPATH=str(REPO))
        self.dockerd: subprocess.Popen | None = None
        self.docker_env = dict(os.environ, DOCKER_HOST=f"unix://{work / 'docker.sock'}",
                               DOCKER_CONFIG=str(work / "docker-client"))

    def netns(self) -> None:
        for ns in (self.host, self.client):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.host, "link", "add", "nb0", "type", "veth", "peer", "name", "nb1", "netns", self.client)
        sh("ip", "-n", self.host, "addr", "add", f"{self.host_addr}/30", "dev", "nb0")
        sh("ip", "-n", self.client, "addr", "add", f"{self.client_addr}/30", "dev", "nb1")
        sh("ip", "-n", self.host, "link", "set", "nb0", "up")
        sh("ip", "-n", self.client, "link", "set", "nb1", "up")

    def hoist(self, *args: str) -> str:
        return sh("nsenter", f"--net=/run/netns/{self.host}", sys.executable, "-m", "hoist.cli", *args,
                  env=self.env).stdout

    def docker(self, *args: str) -> str:
        return sh("docker", *args, env=self.docker_env).stdout

    def start_dockerd(self) -> None:
        log = open(self.work / "dockerd.log", "wb")
        self.dockerd = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.host}", shutil.which("dockerd") or "dockerd", "--iptables=true",
             "--ip6tables=false", "--bip", "10.211.0.1/24", "--host", f"unix://{self.work / 'docker.sock'}",
             "--data-root", str(self.work / "docker-root"), "--exec-root", str(self.work / "docker-exec"),
             "--pidfile", str(self.work / "dockerd.pid")], stdout=log, stderr=subprocess.STDOUT)
        for _ in range(300):
            if self.dockerd.poll() is not None:
                raise SystemExit(f"dockerd exited: {(self.work / 'dockerd.log').read_text()[-2000:]}")
            if sh("docker", "info", env=self.docker_env, check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit("dockerd did not come up")

    def measure(self, ns: str, host: str, port: int) -> float:
        """Median MiB/s of the runs (one warm-up first)."""
        samples = []
        for i in range(self.runs + 1):
            out = sh("nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c", CLIENT, host, str(port),
                     str(self.total)).stdout
            if i:
                samples.append((self.total / (1 << 20)) / float(out))
        return statistics.median(samples)

    def cleanup(self) -> None:
        if self.dockerd is not None:
            sh("docker", "rm", "-f", "sink", env=self.docker_env, check=False)
            self.dockerd.terminate()
            try:
                self.dockerd.wait(30)
            except subprocess.TimeoutExpired:
                self.dockerd.kill()
                self.dockerd.wait()
        ids = sh("nsenter", f"--net=/run/netns/{self.host}", sys.executable, "-m", "hoist.cli", "ps", "-aq",
                 env=self.env, check=False).stdout.split()
        if ids:
            sh("nsenter", f"--net=/run/netns/{self.host}", sys.executable, "-m", "hoist.cli", "rm", "-f", *ids,
               env=self.env, check=False)
        for ns in (self.host, self.client):
            sh("ip", "netns", "del", ns, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=512, help="MiB per transfer")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-docker", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (network namespaces)")
    work = Path(tempfile.mkdtemp(prefix="hoist-netbench-"))
    bench = Bench(work, args.mb, args.runs)
    try:
        sink = work / "tcp_sink"
        sh("gcc", "-static", "-O2", "-o", str(sink), str(REPO / "bench" / "tcp_sink.c"))
        busybox_image(bench.root / "images", IMAGE,
                      extra=[Entry("bin/tcp_sink", data=sink.read_bytes(), mode=0o755)])
        bench.netns()
        bench.hoist("network", "create", "--subnet", "10.210.0.0/24", "benchnet")
        bench.hoist("run", "-d", "--name", "sink", "--network", "benchnet", "-p", "5001:5001", IMAGE,
                    "tcp_sink", "5001")
        rows = {"hoist": {"127.0.0.1": bench.measure(bench.host, "127.0.0.1", 5001),
                          "other netns": bench.measure(bench.client, bench.host_addr, 5001)}}
        if not args.skip_docker:
            bench.start_dockerd()
            archive = work / "sink.tar"
            bench.hoist("save", "-o", str(archive), IMAGE)
            bench.docker("load", "-i", str(archive))
            bench.docker("run", "-d", "--name", "sink", "-p", "5002:5001", IMAGE, "tcp_sink", "5001")
            rows["docker"] = {"127.0.0.1": bench.measure(bench.host, "127.0.0.1", 5002),
                              "other netns": bench.measure(bench.client, bench.host_addr, 5002)}
        print(f"TCP throughput through a published port, {args.mb} MiB per transfer, median of {args.runs}:")
        print(f"{'':8} {'127.0.0.1':>14} {'other netns':>14}")
        for who, row in rows.items():
            print(f"{who:8} {row['127.0.0.1']:>9.0f} MiB/s {row['other netns']:>9.0f} MiB/s")
        if "docker" in rows:
            ratios = [rows["hoist"][k] / rows["docker"][k] for k in ("127.0.0.1", "other netns")]
            print(f"{'hoist/docker':8} {ratios[0]:>11.2f}x {ratios[1]:>13.2f}x")
    finally:
        bench.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
