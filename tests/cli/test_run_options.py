"""``hoist run`` options as docker's: --cap-add/--cap-drop, --privileged, --security-opt
no-new-privileges (off by default: a setuid binary works, under seccomp and the capability set),
--device, --shm-size, --ulimit, --label, --stop-signal/--stop-timeout, --cidfile; and ``stop``
of several containers at once."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.caps import ALL_CAPS, capability_set
from runtime.linux import DEFAULT_CAPS
from tests.cli.helpers import Hoist, one_line
from tests.images import Entry, busybox_image
from tests.peers import need_tool

EUID_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("uid=%d euid=%d\n", (int)getuid(), (int)geteuid()); return 0; }
"""


@pytest.fixture(scope="module")
def euid_probe(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    gcc = need_tool("gcc", "gcc")
    d = tmp_path_factory.mktemp("euid")
    (d / "euid.c").write_text(EUID_C)
    subprocess.run([gcc, "-static", "-O1", "-o", str(d / "euid"), str(d / "euid.c")], check=True)
    return (d / "euid").read_bytes()


@pytest.fixture
def h(containers: Hoist, euid_probe: bytes) -> Iterator[Hoist]:
    hoist = containers
    busybox_image(hoist.layout(), extra=[Entry("bin/euid", data=euid_probe, mode=0o4755)],
                  config={"Labels": {"from.image": "yes", "tier": "image"}})
    yield hoist


def _status(h: Hoist, *flags: str) -> dict[str, str]:
    out = h("run", "--rm", *flags, "busybox", "cat", "/proc/self/status").out
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def _mask(names: list[str]) -> int:
    return sum(1 << ALL_CAPS[n] for n in names)


def test_capability_arithmetic() -> None:
    assert capability_set() == sorted(DEFAULT_CAPS, key=ALL_CAPS.__getitem__)
    assert "CAP_SYS_ADMIN" in capability_set(add=["sys_admin"])
    assert "CAP_NET_RAW" not in capability_set(drop=["NET_RAW"])
    assert capability_set(drop=["ALL"], add=["chown"]) == ["CAP_CHOWN"]
    assert capability_set(add=["ALL"]) == capability_set(privileged=True) == sorted(ALL_CAPS, key=ALL_CAPS.__getitem__)


def test_caps_privileged_and_no_new_privileges(h: Hoist) -> None:
    held = int(dict(line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines()
                    if ":\t" in line)["CapPrm"], 16)
    default = _status(h)
    assert int(default["CapBnd"], 16) == _mask(list(DEFAULT_CAPS))
    assert default["NoNewPrivs"].strip() == "0" and default["Seccomp"].strip() == "2"   # docker's defaults
    changed = _status(h, "--cap-add", "SYS_ADMIN", "--cap-drop", "net_raw")
    assert int(changed["CapBnd"], 16) == _mask([*DEFAULT_CAPS, "CAP_SYS_ADMIN"]) & ~_mask(["CAP_NET_RAW"])
    assert int(_status(h, "--cap-drop", "ALL")["CapEff"], 16) == 0
    assert h("run", "--rm", "--cap-drop", "CHOWN", "busybox", "sh", "-c", "chown 1 /tmp 2>/dev/null || echo no",
             ).out == "no\n"
    nnp = _status(h, "--security-opt", "no-new-privileges")
    assert nnp["NoNewPrivs"].strip() == "1" and nnp["Seccomp"].strip() == "2"
    assert _status(h, "--security-opt", "no-new-privileges:true")["NoNewPrivs"].strip() == "1"
    priv = _status(h, "--privileged")
    assert int(priv["CapBnd"], 16) == held and priv["Seccomp"].strip() == "0"
    one_line(h("run", "--rm", "--cap-add", "SUPERPOWER", "busybox", "true", ok=False), "unknown capability")
    one_line(h("run", "--rm", "--security-opt", "no-new-privileges=maybe", "busybox", "true", ok=False),
              "invalid --security-opt")


def test_setuid_binaries_work_unless_no_new_privileges(h: Hoist) -> None:
    """docker's default: a setuid-root binary in the image runs as root for a non-root user."""
    assert h("run", "--rm", "-u", "app", "busybox", "/bin/euid").out == "uid=1000 euid=0\n"
    assert h("run", "--rm", "-u", "app", "--security-opt", "no-new-privileges", "busybox", "/bin/euid").out \
        == "uid=1000 euid=1000\n"
    # and the filter still holds for that root: unshare stays refused by docker's profile.
    out = h("run", "--rm", "-u", "app", "busybox", "sh", "-c", "/bin/euid; grep Seccomp: /proc/self/status").out
    assert "euid=0" in out and "Seccomp:\t2" in out


def test_device_shm_ulimit(h: Hoist) -> None:
    assert h("run", "--rm", "--device", "/dev/null:/dev/mynull", "busybox", "sh", "-c",
             "echo x > /dev/mynull && echo ok").out == "ok\n"
    assert h("run", "--rm", "--device", "/dev/zero:/dev/z:r", "busybox", "sh", "-c",
             "head -c 3 /dev/z | wc -c").out.strip() == "3"
    one_line(h("run", "--rm", "--device", "/etc/passwd:/dev/pw", "busybox", "true", ok=False), "not a device node")
    one_line(h("run", "--rm", "--device", "/dev/nonexistent", "busybox", "true", ok=False),
              "error gathering device information")
    assert "size=8192k" in h("run", "--rm", "--shm-size", "8m", "busybox", "sh", "-c", "mount | grep /dev/shm").out
    assert h("run", "--rm", "--ulimit", "nofile=100:200", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn").out \
        == "100\n200\n"
    one_line(h("run", "--rm", "--ulimit", "nofile=300:200", "busybox", "true", ok=False), "invalid ulimit")
    one_line(h("run", "--rm", "--ulimit", "wings=1", "busybox", "true", ok=False), "invalid ulimit")


def test_labels_stop_signal_timeout_cidfile(h: Hoist, tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.write_text("# team labels\nteam=web\n")
    cidfile = tmp_path / "cid"
    h("run", "-d", "--name", "svc", "--label", "tier=front", "--label-file", str(labels), "--cidfile", str(cidfile),
      "--stop-signal", "USR1", "busybox", "sh", "-c",
      "trap 'echo got-usr1; exit 0' USR1; echo ready; while :; do sleep 0.05; done")
    cid = cidfile.read_text()
    assert len(cid) == 64 and (h.root / "containers" / cid).is_dir()
    assert h("ps", "--format", "{{.Labels}}").out.strip() == "from.image=yes,team=web,tier=front"
    _wait_log(h, "svc", "ready")
    h("stop", "svc")
    assert "got-usr1" in h("logs", "svc").out
    res = h("run", "-d", "--cidfile", str(cidfile), "busybox", "true", ok=False)
    one_line(res, "container ID file found")
    assert res.code == 125

    h("run", "-d", "--name", "stubborn", "--stop-timeout", "0.2", "busybox", "sh", "-c",
      "trap '' TERM; while :; do sleep 0.05; done")
    h("stop", "stubborn")   # its own --stop-timeout, not stop's 10 s default
    assert "Exited (137)" in h("ps", "-a", "--filter", "name=stubborn").out


def _wait_log(h: Hoist, name: str, text: str) -> None:
    deadline = time.monotonic() + 30
    while text not in h("logs", name).out:
        assert time.monotonic() < deadline, f"{text!r} never appeared"
        time.sleep(0.05)


def test_stop_stops_containers_at_once(h: Hoist) -> None:
    names = ["s1", "s2", "s3"]
    for name in names:
        h("run", "-d", "--name", name, "busybox", "sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done")
    for name in names:
        _wait_log(h, name, "up")
    # Each ignores SIGTERM and waits out its grace period. Stopped one after another, their
    # exits would be a period apart each; stopped together, all three fall within one period.
    grace = 3.0
    out = h("stop", "-t", str(grace), *names).out
    assert out.split() == names
    from runtime.containers import ContainerStore

    store = ContainerStore(h.root / "containers")
    finished = sorted(store.get(n).state()["finished_at"] for n in names)
    assert finished[-1] - finished[0] < grace
    assert all(store.get(n).state()["exit_code"] == 137 for n in names)
