"""Upgrade downtime: from ``stop`` of the old container to the first HTTP 200 of the new one,
hoist against docker (a private dockerd), in one run, on the same two images pulled in advance
from the same local CNCF Distribution (Debian's ``docker-registry``).

    sudo .venv/bin/python bench/upgrade_bench.py [--runs 5] [--skip-docker]

The script makes two network namespaces (a "host", where the registry, hoist and a private
``dockerd --iptables=true`` run, and a "client host" one veth away) and removes them at the end;
the machine's own namespace is not touched (the script itself enters the host namespace). The
images: busybox-static's ``httpd`` serving ``/www`` (``/www/index.html`` says ``1.0`` or ``1.1``:
the versions differ by that file; ``/www/data`` links to the volume at ``/srv``), run by a
shell that exits on SIGTERM, as a service does. Each repetition starts from ``web`` running 1.0
and answering, then times, with the monotonic clock, the users' sequence

    stop web; rename web web-1.0; run -d --name web --restart=always -p 8080:80 -v DATA:/srv IMAGE:1.1

followed by polling ``http://127.0.0.1:8080/`` (in this process, in the host namespace) until it
answers 200 with ``1.1``; a poller in the client namespace, started before the clock, records
when ``http://HOST_ADDR:8080/`` first answers 1.1 (the monotonic clock is system-wide, so the
two are comparable). Then the volume's file is checked through the new container, both
containers are removed and 1.0 is started again (untimed). Prints the medians (ms) of each
step and of the whole, and the ratios hoist/docker (below 1.0: hoist is faster).

``--profile`` additionally prints ``python -X importtime`` of ``hoist stop`` and the wall clock
of small verbs against a bare interpreter start, to say where hoist's time goes.
Containers are on a user network ``upnet`` (both tools) and each round uses a fresh host port.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime import linux  # noqa: E402
from storage.layout import ImageLayout  # noqa: E402
from tests.images import Entry, busybox_image  # noqa: E402

REGISTRY_PORT = 5000
PORT = random.randrange(20000, 30000)   # hoist's port claims are machine-wide (see the report)
SERVE = "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"
POLLER = """
import socket, sys, time
host, port, want, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), float(sys.argv[4])
print("ready", flush=True)
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        with socket.create_connection((host, port), timeout=0.2) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
            data = b""
            while True:
                part = s.recv(4096)
                if not part:
                    break
                data += part
        head, _, body = data.partition(b"\\r\\n\\r\\n")
        if b" 200 " in head.split(b"\\r\\n", 1)[0] and body.strip() == want:
            print(time.monotonic(), flush=True)
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.002)
sys.exit("never answered")
"""


def sh(*argv: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(argv), capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return res


def http_get(host: str, port: int, path: str = "/") -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.0 GET; (0, b"") when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            data = b""
            while True:
                part = s.recv(4096)
                if not part:
                    break
                data += part
    except OSError:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return 0, b""


def until_serves(version: str, limit: float = 60.0) -> float:
    """Poll 127.0.0.1:PORT until it answers 200 with ``version``; the monotonic time it did."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, body = http_get("127.0.0.1", PORT)
        if status == 200 and body.strip() == version.encode():
            return time.monotonic()
        time.sleep(0.002)
    raise SystemExit(f"{version} never answered on 127.0.0.1:{PORT}")


class Bench:
    def __init__(self, work: Path) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100, 999)}"
        self.host, self.client = f"hoist-uh{tag}", f"hoist-uc{tag}"
        octet = random.randrange(1, 250)
        self.host_addr, self.client_addr = f"10.251.{octet}.1", f"10.251.{octet}.2"
        self.work = work
        self.root = work / "hoist"
        self.env = dict(os.environ, HOIST_ROOT=str(self.root), PYTHONPATH=str(REPO))
        self.docker_env = dict(os.environ, DOCKER_HOST=f"unix://{work / 'docker.sock'}",
                               DOCKER_CONFIG=str(work / "docker-client"))
        self.docker_bin = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else "docker"
        self.dockerd: subprocess.Popen | None = None
        self.registry: subprocess.Popen | None = None
        self.made: list[str] = []

    def netns(self) -> None:
        for ns in (self.host, self.client):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.host, "link", "add", "ub0", "type", "veth", "peer", "name", "ub1", "netns", self.client)
        sh("ip", "-n", self.host, "addr", "add", f"{self.host_addr}/30", "dev", "ub0")
        sh("ip", "-n", self.client, "addr", "add", f"{self.client_addr}/30", "dev", "ub1")
        sh("ip", "-n", self.host, "link", "set", "ub0", "up")
        sh("ip", "-n", self.client, "link", "set", "ub1", "up")
        # From here on this process (and all it starts) lives in the host namespace.
        fd = os.open(f"/run/netns/{self.host}", os.O_RDONLY)
        try:
            linux.setns(fd, linux.CLONE_NEWNET)
        finally:
            os.close(fd)

    def start_registry(self) -> str:
        config = self.work / "registry.yml"
        config.write_text("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"
                          f"storage: {{filesystem: {{rootdirectory: {self.work / 'registry'}}}}}\n"
                          f"http: {{addr: 127.0.0.1:{REGISTRY_PORT}}}\n")
        self.registry = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", REGISTRY_PORT), timeout=0.5).close()
                return f"127.0.0.1:{REGISTRY_PORT}"
            except OSError:
                time.sleep(0.05)
        raise SystemExit("docker-registry did not start")

    def start_dockerd(self) -> None:
        log = open(self.work / "dockerd.log", "wb")
        self.dockerd = subprocess.Popen(
            [shutil.which("dockerd") or "dockerd", "--iptables=true", "--ip6tables=false", "--bip", "10.212.0.1/24",
             "--host", f"unix://{self.work / 'docker.sock'}", "--data-root", str(self.work / "docker-root"),
             "--exec-root", str(self.work / "docker-exec"), "--pidfile", str(self.work / "dockerd.pid")],
            stdout=log, stderr=subprocess.STDOUT)
        for _ in range(300):
            if self.dockerd.poll() is not None:
                raise SystemExit(f"dockerd exited: {(self.work / 'dockerd.log').read_text()[-2000:]}")
            if sh(self.docker_bin, "info", env=self.docker_env, check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit("dockerd did not come up")

    def cmd(self, who: str) -> list[str]:
        return [sys.executable, "-m", "hoist.cli"] if who == "hoist" else [self.docker_bin]

    def tool(self, who: str) -> Callable[..., str]:
        if who == "hoist":
            return lambda *args: sh(sys.executable, "-m", "hoist.cli", *args, env=self.env).stdout
        return lambda *args: sh(self.docker_bin, *args, env=self.docker_env).stdout

    def poller(self, version: str) -> subprocess.Popen:
        proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.client}", sys.executable, "-c", POLLER,
                                 self.host_addr, str(PORT), version, "60"], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("the client-namespace poller did not start")
        return proc

    def start_old(self, who: str, ref: str, data: Path) -> None:
        argv = [*self.cmd(who), "run", "-d", "--name", "web", "--network", "upnet", "--restart=always",
                "-p", f"{PORT}:80", "-v", f"{data}:/srv", f"{ref}:1.0"]
        env = self.env if who == "hoist" else self.docker_env
        deadline = time.monotonic() + 30
        while True:   # untimed; hoist's `rm -f` may not have released the port yet (see the report)
            res = sh(*argv, env=env, check=False)
            if res.returncode == 0:
                break
            if "already allocated" not in res.stderr or time.monotonic() > deadline:
                raise SystemExit(f"{who} run 1.0 failed: {res.stderr.strip()}")
            sh(*self.cmd(who), "rm", "-f", "web", env=env, check=False)
            time.sleep(0.2)
        try:
            until_serves("1.0")
        except SystemExit as e:
            logs = sh(*self.cmd(who), "logs", "web", env=self.env if who == "hoist" else self.docker_env, check=False)
            ps = sh(*self.cmd(who), "ps", "-a", env=self.env if who == "hoist" else self.docker_env, check=False)
            raise SystemExit(f"{who}: {e}\n{ps.stdout}{logs.stdout}{logs.stderr}") from None

    def upgrade(self, who: str, ref: str, data: Path) -> dict[str, float]:
        """One timed upgrade; returns the ms of each step and in all."""
        run = self.tool(who)
        poll = self.poller("1.1")
        t0 = time.monotonic()
        run("stop", "web")
        t1 = time.monotonic()
        run("rename", "web", "web-1.0")
        t2 = time.monotonic()
        run("run", "-d", "--name", "web", "--network", "upnet", "--restart=always", "-p", f"{PORT}:80",
            "-v", f"{data}:/srv", f"{ref}:1.1")
        t3 = time.monotonic()
        t4 = until_serves("1.1")
        out, _ = poll.communicate(timeout=90)
        if poll.returncode != 0:
            raise SystemExit(f"{who}: the client namespace never saw 1.1")
        t5 = float(out.strip())
        status, body = http_get("127.0.0.1", PORT, "/data/note")
        if status != 200 or body != data.joinpath("note").read_bytes():
            raise SystemExit(f"{who}: the volume's file is not served by 1.1 ({status} {body[:80]!r})")
        ms = 1000.0
        return {"stop": (t1 - t0) * ms, "rename": (t2 - t1) * ms, "run -d": (t3 - t2) * ms,
                "to 200": (t4 - t3) * ms, "total": (t4 - t0) * ms, "other netns": (t5 - t0) * ms}

    def reset(self, who: str) -> None:
        sh(*self.cmd(who), "rm", "-f", "web", "web-1.0", env=self.env if who == "hoist" else self.docker_env,
           check=False)

    def cleanup(self) -> None:
        if self.dockerd is not None:
            sh(self.docker_bin, "rm", "-f", "web", "web-1.0", env=self.docker_env, check=False)
            self.dockerd.terminate()
            try:
                self.dockerd.wait(30)
            except subprocess.TimeoutExpired:
                self.dockerd.kill()
                self.dockerd.wait()
        if self.made:
            ids = sh(sys.executable, "-m", "hoist.cli", "ps", "-aq", env=self.env, check=False).stdout.split()
            if ids:
                sh(sys.executable, "-m", "hoist.cli", "rm", "-f", *ids, env=self.env, check=False)
        if self.registry is not None:
            self.registry.terminate()
            self.registry.wait()
        for ns in self.made:
            sh("ip", "netns", "del", ns, check=False)


def make_images(layout: ImageLayout) -> None:
    for version in ("1.0", "1.1"):
        busybox_image(layout, f"v{version}", config={"Cmd": ["sh", "-c", SERVE], "ExposedPorts": {"80/tcp": {}}},
                      extra=[Entry("www/", "dir", mode=0o755),
                             Entry("www/index.html", data=f"{version}\n".encode(), mode=0o644),
                             Entry("www/data", "symlink", link="/srv", mode=0o777),
                             Entry("srv/", "dir", mode=0o755)])


def profile(bench: Bench, ref: str, data: Path) -> None:
    """Where hoist's time goes: the import time of the CLI and each verb's wall clock."""
    bench.start_old("hoist", ref, data)
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "hoist.cli", "stop", "web"], env=bench.env,
                         capture_output=True, text=True)
    rows = []
    for line in res.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    print("python -X importtime, `hoist stop` (cumulative us, top 12):")
    for us, name in rows[:12]:
        print(f"  {us:>8} {name}")
    for args in (["rename", "web", "web-1.0"], ["--version"]):
        start = time.monotonic()
        sh(sys.executable, "-m", "hoist.cli", *args, env=bench.env, check=False)
        print(f"  hoist {' '.join(args)}: {(time.monotonic() - start) * 1000:.0f} ms")
    start = time.monotonic()
    sh(sys.executable, "-c", "pass")
    print(f"  bare python start: {(time.monotonic() - start) * 1000:.0f} ms")
    bench.reset("hoist")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-docker", action="store_true")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (network namespaces, hoist's runtime, dockerd)")
    work = Path(tempfile.mkdtemp(prefix="hoist-upgradebench-", dir=os.environ.get("BENCH_DIR", "/tmp")))
    bench = Bench(work)
    try:
        source = ImageLayout(work / "source").init()
        make_images(source)
        bench.netns()
        addr = bench.start_registry()
        ref = f"{addr}/bench/web"
        for version in ("1.0", "1.1"):
            sh("skopeo", "copy", "-q", "--dest-tls-verify=false",
               f"oci:{source.root}:docker.io/library/v{version}:latest",
               f"docker://{ref}:{version}")
        whos = ["hoist"] if args.skip_docker else ["hoist", "docker"]
        if not args.skip_docker:
            bench.start_dockerd()
        bench.tool("hoist")("network", "create", "--subnet", "10.213.0.0/24", "upnet")
        if not args.skip_docker:
            bench.tool("docker")("network", "create", "--subnet", "10.214.0.0/24", "upnet")
        for who in whos:                                  # pulled in advance, both versions
            for version in ("1.0", "1.1"):
                bench.tool(who)("pull", "-q", f"{ref}:{version}")
        samples: dict[str, list[dict[str, float]]] = {who: [] for who in whos}
        global PORT
        for i in range(args.runs + 1):                    # the first round warms caches, not counted
            PORT += 1       # a fresh host port each round: hoist's `rm -f` leaks the old claim (see the report)
            for who in whos:
                data = work / f"data-{who}"
                data.mkdir(exist_ok=True)
                (data / "note").write_text(f"kept across the upgrade, round {i}\n")
                bench.start_old(who, ref, data)
                row = bench.upgrade(who, ref, data)
                print(f"round {i} {who}: {row['total']:.0f} ms", file=sys.stderr, flush=True)
                bench.reset(who)
                if i:
                    samples[who].append(row)
        keys = ["stop", "rename", "run -d", "to 200", "total", "other netns"]
        med = {who: {k: statistics.median(r[k] for r in rows) for k in keys} for who, rows in samples.items()}
        print(f"upgrade downtime (stop old .. first 200 of the new), median of {args.runs}, ms:")
        print(f"{'':13}" + "".join(f"{k:>12}" for k in keys))
        for who in whos:
            print(f"{who:13}" + "".join(f"{med[who][k]:>12.0f}" for k in keys))
            print(f"{'  runs total':13} " + ", ".join(f"{r['total']:.0f}" for r in samples[who]))
        if "docker" in med:
            print(f"{'hoist/docker':13}" + "".join(f"{med['hoist'][k] / med['docker'][k]:>12.2f}" for k in keys))
        if args.profile:
            data = work / "data-hoist"
            PORT += 1
            profile(bench, ref, data)
    finally:
        bench.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
