"""What a container can reach through its mounts: device nodes, /sys and cgroupfs, volume targets
and the special file systems. Each test attacks from inside, as a hostile image would, and where
the private dockerd exists runs the same probe under ``docker run`` (both columns in the log)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime import cgroups
from runtime.mounts import MASKED_PATHS
from tests.images import Entry, busybox_image
from tests.peers import Dockerd
from tests.runtime.conftest import REPO, Hoist
from tests.runtime.versus import Versus

PROBE_APPLETS = ("mknod", "dd", "find", "xargs")


@pytest.fixture
def versus(hoist: Hoist, dockerd: Dockerd) -> Versus:
    busybox_image(hoist.root / "images", "probe:latest",
                  extra=[Entry(f"bin/{a}", "symlink", link="busybox", mode=0o777) for a in PROBE_APPLETS])
    return Versus(hoist, dockerd)


def _denied(output: str) -> bool:
    return "Operation not permitted" in output or "Permission denied" in output or \
        "Read-only file system" in output


# -- device nodes -----------------------------------------------------------------------------

def test_block_device_made_on_a_volume_cannot_be_read(versus: Versus, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    probe = "rm -f /vol/d; mknod /vol/d b 7 0 && head -c16 /vol/d > /dev/null"
    ours, theirs = versus.run("mknod b 7:0 on a volume, then read it", "probe",
                              ["sh", "-c", probe], ["-v", f"{vol}:/vol"])
    assert ours.code != 0 and _denied(ours.output), ours
    assert theirs is not None and theirs.code != 0 and _denied(theirs.output), theirs


@pytest.mark.parametrize("where", ["/tmp", "/dev/shm", "/dev", "/root"])
def test_device_nodes_made_anywhere_writable_are_inert(versus: Versus, where: str) -> None:
    probe = f"mknod {where}/d b 7 0 && head -c16 {where}/d > /dev/null"
    ours, theirs = versus.run(f"mknod b 7:0 in {where}, then read it", "probe", ["sh", "-c", probe])
    assert ours.code != 0 and _denied(ours.output), ours
    assert theirs is not None and theirs.code != 0, theirs


def test_the_allowed_devices_work(versus: Versus) -> None:
    probe = ("head -c4 /dev/zero | wc -c; head -c4 /dev/urandom | wc -c; echo x > /dev/null; "
             "echo x > /dev/full 2>/dev/null || echo full-is-full; ls /dev/pts/ptmx")
    ours, theirs = versus.run("null, zero, urandom, full, ptmx", "probe", ["sh", "-c", probe])
    assert ours.code == 0 and ours.output.split() == ["4", "4", "full-is-full", "/dev/pts/ptmx"], ours
    assert theirs is not None and theirs.output == ours.output


def test_device_cgroup_denies_all_but_the_default_set(hoist: Hoist) -> None:
    """The second wall behind nodev: the container's device cgroup (v1 here; v2 is the BPF
    filter tested below) holds exactly docker's default rules."""
    if cgroups.is_v2():
        pytest.skip("cgroup v2 host: the device filter is the BPF program (test_v2_device_filter)")
    if not (cgroups.CGROUP_ROOT / "devices").is_dir():
        pytest.skip("no devices controller on this host")
    cid = hoist.ok("run", "-d", "busybox", "sleep", "30").strip()
    spec = json.loads((hoist.root / "containers" / cid / "config.json").read_text())
    devices = [p for p in spec["cgroups"] if "/devices/" in p]
    assert len(devices) == 1
    rules = Path(devices[0], "devices.list").read_text().split("\n")
    assert sorted(r for r in rules if r) == sorted(cgroups.device_rule(*r) for r in cgroups.ALLOWED_DEVICES)
    pid = json.loads((hoist.root / "containers" / cid / "state.json").read_text())["pid"]
    assert f":devices:/hoist/{cid}" in Path(f"/proc/{pid}/cgroup").read_text()
    hoist.ok("rm", "-f", cid)
    assert not Path(devices[0]).exists()


_V2_FILTER_PROBE = textwrap.dedent("""
    import os, sys
    from runtime import cgroups, devfilter
    base = sys.argv[1]
    os.makedirs(base, exist_ok=True)
    os.system(f"mount -t cgroup2 none {base}") == 0 or sys.exit("cannot mount cgroup2")
    cg = os.path.join(base, "hoist-devfilter-test")
    os.mkdir(cg)
    try:
        devfilter.attach(cg, cgroups.ALLOWED_DEVICES)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            open(os.path.join(cg, "cgroup.procs"), "w").write(str(os.getpid()))
            out = []
            node = os.path.join(base + "-nodes", "blk")
            os.makedirs(base + "-nodes", exist_ok=True)
            os.mknod(node, 0o600 | 0o060000, os.makedev(7, 0))
            for path in ("/dev/null", "/dev/zero", "/dev/urandom", node):
                try:
                    os.close(os.open(path, os.O_RDONLY))
                    out.append(f"{path}:ok")
                except OSError as e:
                    out.append(f"{path}:{e.errno}")
            os.write(w, " ".join(out).encode())
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        print(os.read(r, 4096).decode())
    finally:
        os.rmdir(cg)
        os.system(f"umount {base}")
""")


def test_v2_device_filter(tmp_path: Path) -> None:
    """The BPF program, attached to a real cgroup v2 (mounted privately for the test), lets the
    default devices open and refuses a block device node (EPERM), even one the caller made."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    res = subprocess.run(["unshare", "-m", sys.executable, "-c", _V2_FILTER_PROBE,
                          str(tmp_path / "cg2")], capture_output=True, cwd=REPO, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == 0, res.stderr.decode()
    results = dict(item.rsplit(":", 1) for item in res.stdout.decode().split())
    assert results.pop(str(tmp_path / "cg2-nodes" / "blk")) == "1"     # EPERM
    assert set(results.values()) == {"ok"}, results


# -- /sys and the cgroup file system ----------------------------------------------------------

@pytest.mark.parametrize("network", ["host", "none"])
def test_sys_and_cgroupfs_are_read_only(versus: Versus, network: str) -> None:
    probe = ("echo $$ > /sys/fs/cgroup/memory/cgroup.procs 2>&1; "
             "mkdir /sys/fs/cgroup/memory/hoist-escape 2>&1; "
             "mknod /sys/fs/cgroup/hoist-node c 1 3 2>&1; "
             "echo 1 > /sys/kernel/mm/ksm/run 2>&1; "
             "echo mounts=$(grep -c ' /sys[ /]' /proc/self/mountinfo); "
             "echo writable=$(grep ' /sys[ /]' /proc/self/mountinfo | grep -vc ' ro,'); true")
    ours, theirs = versus.run(f"/sys writes with --network {network}", "probe", ["sh", "-c", probe],
                              ["--network", network, "--memory", "64m"])
    lines = ours.output.splitlines()
    assert len([ln for ln in lines if _denied(ln)]) == 4, ours
    assert "writable=0" in lines and "mounts=0" not in lines, ours   # every /sys mount is ro
    assert not Path("/sys/fs/cgroup/memory/hoist-escape").exists()
    assert not Path("/sys/fs/cgroup/hoist-node").exists()
    # docker 20.10 leaves its /sys/fs/cgroup tmpfs writable (nodev): mknod there succeeds; the
    # three writes that matter are refused by both.
    assert theirs is not None
    assert len([ln for ln in theirs.output.splitlines() if _denied(ln) and "hoist-node" not in ln]) == 3


def test_cgroup_view_shows_the_containers_own_limits(versus: Versus) -> None:
    if cgroups.is_v2():
        probe = "cat /sys/fs/cgroup/memory.max; cat /proc/self/cgroup"
    else:
        probe = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; grep memory /proc/self/cgroup"
    ours, theirs = versus.run("cgroup view with --memory 64m", "probe", ["sh", "-c", probe],
                              ["--memory", "64m"])
    assert ours.code == 0 and ours.output.splitlines()[0] == str(64 << 20), ours
    assert ours.output.splitlines()[1].endswith(":/"), ours     # its own cgroup is the root
    assert theirs is not None and theirs.output.splitlines()[0] == str(64 << 20)


# -- volumes and mount points -------------------------------------------------------------------

@pytest.mark.parametrize("target", ["/", "/proc", "/proc/sys", "/proc/self/../kcore", "//"])
def test_volume_over_special_targets_is_refused(hoist: Hoist, tmp_path: Path, target: str) -> None:
    res = hoist("run", "--rm", "-v", f"{tmp_path}:{target}", "busybox", "true")
    err = res.stderr.decode()
    assert res.returncode == 125 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "/" in err and ("can't be '/'" in err or "into /proc is not allowed" in err)


def test_volume_on_an_allowed_proc_file(hoist: Hoist, tmp_path: Path) -> None:
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal: 1 kB\n")
    out = hoist.ok("run", "--rm", "-v", f"{fake}:/proc/meminfo:ro", "busybox", "cat", "/proc/meminfo")
    assert out == "MemTotal: 1 kB\n"


def test_duplicate_volume_target_is_refused(hoist: Hoist, tmp_path: Path) -> None:
    res = hoist("run", "--rm", "-v", f"{tmp_path}:/a", "-v", f"{tmp_path}:/a/", "busybox", "true")
    assert res.returncode == 125 and b"duplicate mount point: /a" in res.stderr


def test_volume_mounts_are_nosuid(hoist: Hoist, tmp_path: Path) -> None:
    out = hoist.ok("run", "--rm", "-v", f"{tmp_path}:/vol", "busybox", "sh", "-c",
                   "grep ' /vol ' /proc/self/mountinfo")
    opts = out.split()[5].split(",")
    assert "nosuid" in opts and "nodev" in opts, out


def test_submounts_of_a_volume_are_nodev_too(hoist: Hoist, tmp_path: Path) -> None:
    """-v of a tree holding other mounts (here the host's /dev below it): every mount of it is
    nodev, so host disks bound in through a submount cannot be opened either."""
    outer = tmp_path / "outer"
    (outer / "dev").mkdir(parents=True)
    script = (f"mount --bind /dev {outer / 'dev'} && {sys.executable} -m hoist.cli run --rm "
              f"-v {outer}:/vol busybox sh -c 'grep \" /vol\" /proc/self/mountinfo; "
              f"head -c1 /vol/dev/loop0 | wc -c'")
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, env=hoist.env(), cwd=REPO, timeout=60)
    out = res.stdout.decode()
    mounts = [ln for ln in out.splitlines() if " /vol" in ln]
    assert len(mounts) >= 2, (out, res.stderr)
    assert all("nodev" in ln.split()[5].split(",") for ln in mounts), out
    assert _denied(res.stderr.decode()), res.stderr


def test_symlinked_volume_targets_resolve_inside_the_root(hoist: Hoist, tmp_path: Path) -> None:
    marks = [Path(f"/tmp/hoist-escape-{os.getpid()}-{i}") for i in range(3)]
    busybox_image(hoist.root / "images", "links", extra=[
        Entry("data", "symlink", link=str(marks[0])),
        Entry("srv/", "dir", mode=0o755),
        Entry("srv/rel", "symlink", link=f"../../../../../..{marks[1]}"),
        Entry("etc/hosts", "symlink", link=str(marks[2])),
    ])
    vol = tmp_path / "vol"
    vol.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    out = hoist.ok("run", "--rm", "-v", f"{vol}:/data", "-v", f"{other}:/srv/rel", "links", "sh", "-c",
                   "echo in > /data/f; echo rel > /srv/rel/g; cat /etc/hosts | head -1; "
                   f"ls -d {marks[0]} {marks[1]}")
    assert (vol / "f").read_text() == "in\n" and (other / "g").read_text() == "rel\n"
    assert "localhost" in out
    for mark in marks:
        assert not mark.exists(), f"{mark} was created on the host"


@pytest.mark.parametrize("special", ["proc", "sys", "dev"])
def test_special_dirs_that_are_symlinks_are_refused(hoist: Hoist, special: str) -> None:
    entries = [e for e in __import__("tests.images", fromlist=["x"]).busybox_entries()
               if e.name != f"{special}/"]
    from tests.images import add_image, layer_tar
    add_image(hoist.root / "images", "badspecial", [layer_tar(entries + [Entry(special, "symlink", link="/etc")])],
              {"Cmd": ["true"]})
    res = hoist("run", "--rm", "badspecial")
    err = res.stderr.decode()
    assert res.returncode == 125 and f"/{special} in the image is not a directory" in err, err


def test_masked_paths_are_hidden(versus: Versus) -> None:
    present = [p for p in MASKED_PATHS if os.path.exists(p)]
    assert present, "no masked path exists on this host to probe"
    probe = "; ".join(f"(cat {p} 2>/dev/null || ls {p}) | wc -c" for p in present)
    ours, theirs = versus.run("masked paths " + " ".join(present), "probe", ["sh", "-c", probe])
    assert ours.code == 0 and set(ours.output.split()) == {"0"}, ours
    assert theirs is not None and set(theirs.output.split()) == {"0"}, theirs
    for path in ("/proc/asound", "/proc/latency_stats", "/proc/timer_stats",
                 "/sys/devices/virtual/powercap"):
        assert path in MASKED_PATHS
