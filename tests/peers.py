"""Third-party peers the tests drive (Debian packages), and how their absence is reported.

Outside CI a missing peer skips the test with the reason; under CI (``CI=true``) it fails,
because ``.ci/run`` installs every peer and a missing one means the set-up is broken.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def absent(reason: str) -> NoReturn:
    """Fail under CI, skip visibly elsewhere."""
    if IN_CI:
        pytest.fail(f"required peer missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def need_tool(name: str, package: str | None = None) -> str:
    """The path of an executable, or absent() naming the Debian package that provides it."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    absent(f"{name} not found (apt-get install {package or name})")
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """Terminate a child process, killing it if it does not exit within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def remove_scratch(base: Path) -> None:
    """Remove a fixture's scratch folder under /tmp once its server is stopped, all but what is
    mounted (dockerd leaves its exec root's netns file mounted): nothing is deleted through a
    mount, and the rest (a dockerd data root: ~450 MB after a run) goes."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            mounts = {line.split()[1].replace("\\040", " ") for line in f if line.strip()}
    except OSError:
        return

    def remove(path: Path) -> None:
        text = str(path)
        if text in mounts:
            return
        if not any(m.startswith(text + "/") for m in mounts):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            return
        for child in path.iterdir():
            remove(child)
        with contextlib.suppress(OSError):
            path.rmdir()

    with contextlib.suppress(OSError):
        remove(base.resolve())


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None,
                  host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout}s")


class Dockerd:
    """A private Docker engine: its own socket, data root and exec root; no iptables, no bridge."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "docker.sock"
        self.proc: subprocess.Popen | None = None
        # Debian's client, matching its engine (its DOCKER_BUILDKIT=1 build is BuildKit without
        # buildx); a newer client elsewhere on PATH would want a buildx plugin.
        self.docker = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else need_tool("docker", "docker.io")
        self.dockerd = need_tool("dockerd", "docker.io")

    def start(self, timeout: float = 60.0) -> Dockerd:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            [self.dockerd, "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--host", f"unix://{self.socket}", "--data-root", str(self.base / "root"),
             "--exec-root", str(self.base / "exec"), "--pidfile", str(self.base / "dockerd.pid")],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(self.base / 'dockerd.log').read_text()[-2000:]}")
            if self.socket.exists() and self("info", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError("dockerd did not come up")

    def __call__(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
                 timeout: float = 600, input: bytes | None = None) -> subprocess.CompletedProcess:
        # A private client config too, so `docker login` in a test never touches ~/.docker.
        full_env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}",
                        DOCKER_CONFIG=str(self.base / "client-config"), **(env or {}))
        res = subprocess.run([self.docker, *args], capture_output=True, env=full_env,
                             timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({res.returncode}): "
                                 f"{res.stderr.decode(errors='replace')}")
        return res

    def stop(self) -> None:
        stop_process(self.proc, 30)


class Distribution:
    """CNCF Distribution (Debian's docker-registry) on a free loopback port over ``root``."""

    def __init__(self, root: Path, workdir: Path) -> None:
        self.binary = need_tool("docker-registry")
        self.root, self.workdir = root, workdir
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.addr}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Distribution:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / f"distribution-{self.port}.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: error, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {self.addr}}}\n"
        )
        log = open(self.workdir / f"distribution-{self.port}.log", "wb")
        self.proc = subprocess.Popen([self.binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 30, self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc)


def skopeo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run skopeo with TLS verification off for loopback registries; raise with its stderr on failure."""
    binary = need_tool("skopeo")
    res = subprocess.run([binary, *args], capture_output=True, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {res.stderr.decode(errors='replace')}")
    return res


class MotoS3:
    """moto in server mode: a real S3 API endpoint on loopback (pip package moto[server])."""

    def __init__(self, workdir: Path) -> None:
        import sys
        candidate = Path(sys.executable).parent / "moto_server"
        binary = str(candidate) if candidate.exists() else shutil.which("moto_server")
        if not binary:
            absent("moto_server not found (pip install 'moto[server]')")
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MotoS3:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "moto.log", "wb")
        self.proc = subprocess.Popen([self.binary, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 60, self.proc)
        return self

    def create_bucket(self, name: str) -> None:
        import urllib.request
        req = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        urllib.request.urlopen(req, timeout=30).read()

    def stop(self) -> None:
        stop_process(self.proc)


class NetnsHost:
    """A test host: a network namespace this test run creates, joined to the root namespace by
    a veth pair on a private /30. Traffic stays inside this machine's own sandbox; it is how a
    test reaches a registry at an address that is not loopback (so clients verify TLS)."""

    def __init__(self) -> None:
        import os as _os
        import random
        if _os.geteuid() != 0:
            absent("network namespaces need root")
        self.ip_tool = need_tool("ip", "iproute2")
        tag = f"{_os.getpid() % 10000}{random.randrange(100, 999)}"
        self.name = f"hoist-{tag}"
        self.veth_host, self.veth_ns = f"hh{tag}", f"hn{tag}"
        subnet = random.randrange(1, 250)
        self.host_addr, self.addr = f"10.251.{subnet}.1", f"10.251.{subnet}.2"
        self._created = False

    def _ip(self, *args: str) -> None:
        res = subprocess.run([self.ip_tool, *args], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")

    def start(self) -> NetnsHost:
        self._ip("netns", "add", self.name)
        self._created = True
        self._ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns)
        self._ip("link", "set", self.veth_ns, "netns", self.name)
        self._ip("addr", "add", f"{self.host_addr}/30", "dev", self.veth_host)
        self._ip("link", "set", self.veth_host, "up")
        self._ip("-n", self.name, "addr", "add", f"{self.addr}/30", "dev", self.veth_ns)
        self._ip("-n", self.name, "link", "set", self.veth_ns, "up")
        self._ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def command(self, *args: str) -> list[str]:
        return [self.ip_tool, "netns", "exec", self.name, *args]

    def stop(self) -> None:
        if self._created:
            subprocess.run([self.ip_tool, "link", "del", self.veth_host], capture_output=True)
            subprocess.run([self.ip_tool, "netns", "del", self.name], capture_output=True)
            self._created = False
