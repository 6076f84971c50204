"""The seccomp filter: a static C probe (``probes/seccomp_probe.c``) attempts what docker's
default profile refuses, inside hoist containers (and docker's, where the dockerd fixture runs),
and the profile machinery is checked directly: parsing, docker's rule selection, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from runtime import linux, seccomp
from tests.images import Entry, busybox_image
from tests.peers import Dockerd, absent
from tests.runtime.conftest import Hoist

PROBE_SRC = Path(__file__).with_name("probes") / "seccomp_probe.c"
IMAGE = "seccomp-probe:latest"

# docker's default profile, as its own tests state it: namespaces, mounts, perf and the kernel
# keyring are refused with EPERM; clone3 is ENOSYS so libcs fall back to clone.
REFUSED = {"unshare_user": "EPERM", "userns_mount": "EPERM", "clone_newuser": "EPERM",
           "clone3": "ENOSYS", "perf_event_open": "EPERM", "add_key": "EPERM", "keyctl": "EPERM",
           "personality_norandom": "EPERM"}
ORDINARY = {"personality_query": "ok", "getpid": "ok", "fork": "ok", "thread": "ok", "mkdir": "ok"}
DEFAULT_RESULTS = {**REFUSED, **ORDINARY}


@pytest.fixture(scope="session")
def probe_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        absent("gcc missing (apt-get install gcc libc6-dev)")
    out = tmp_path_factory.mktemp("probe") / "seccomp_probe"
    res = subprocess.run([gcc, "-static", "-O1", "-Wall", "-o", str(out), str(PROBE_SRC), "-lpthread"],
                         capture_output=True)
    if res.returncode != 0:
        absent(f"cannot build a static probe: {res.stderr.decode(errors='replace')[-500:]}")
    return out


@pytest.fixture
def probe(hoist: Hoist, probe_binary: Path) -> Hoist:
    busybox_image(hoist.root / "images", IMAGE,
                  extra=[Entry("bin/seccomp_probe", data=probe_binary.read_bytes(), mode=0o755)])
    return hoist


def parse(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def run_probe(hoist: Hoist, *opts: str) -> dict[str, str]:
    return parse(hoist.ok("run", "--rm", *opts, IMAGE, "seccomp_probe"))


# -- in containers -------------------------------------------------------------------------------

def test_default_filter_refuses_what_docker_refuses(probe: Hoist) -> None:
    assert run_probe(probe) == DEFAULT_RESULTS


def test_filter_holds_for_other_users_and_under_init(probe: Hoist) -> None:
    assert run_probe(probe, "-u", "1000") == DEFAULT_RESULTS
    assert run_probe(probe, "--init") == DEFAULT_RESULTS
    # The reaper is inside the container too: PID 1 is filtered as well as the command.
    status = probe.ok("run", "--rm", "--init", IMAGE, "grep", "^Seccomp:", "/proc/1/status", "/proc/self/status")
    assert [line.split()[-1] for line in status.splitlines()] == ["2", "2"], status


def test_unconfined_lets_them_through(probe: Hoist) -> None:
    try:
        userns = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except OSError:
        userns = 0
    if userns == 0:
        absent("user namespaces are disabled on this host")
    results = run_probe(probe, "--security-opt", "seccomp=unconfined")
    assert results == {name: "ok" for name in DEFAULT_RESULTS}, results
    status = probe.ok("run", "--rm", "--security-opt", "seccomp=unconfined", IMAGE,
                      "grep", "^Seccomp:", "/proc/self/status")
    assert status.split() == ["Seccomp:", "0"]


def test_exec_inherits_the_containers_filter(probe: Hoist) -> None:
    confined = probe.ok("run", "-d", IMAGE, "sleep", "60").strip()
    free = probe.ok("run", "-d", "--security-opt", "seccomp=unconfined", IMAGE, "sleep", "60").strip()
    try:
        assert parse(probe.ok("exec", confined, "seccomp_probe")) == DEFAULT_RESULTS
        assert parse(probe.ok("exec", free, "seccomp_probe", "add_key", "keyctl")) == {
            "add_key": "ok", "keyctl": "ok"}
    finally:
        probe.ok("rm", "-f", confined, free)


def test_custom_profile_denying_mkdir(probe: Hoist, tmp_path: Path) -> None:
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    }))
    results = run_probe(probe, "--security-opt", f"seccomp={profile}")
    assert results["mkdir"] == "EACCES"
    assert results["add_key"] == "ok" and results["getpid"] == "ok"
    res = probe("run", "--rm", "--security-opt", f"seccomp={profile}", IMAGE, "mkdir", "/tmp/x")
    assert res.returncode == 1 and b"Permission denied" in res.stderr


def test_last_security_opt_wins_and_others_refused(probe: Hoist, tmp_path: Path) -> None:
    results = run_probe(probe, "--security-opt", "seccomp=unconfined", "--security-opt",
                        "seccomp=default", "--security-opt", "no-new-privileges")
    assert results == DEFAULT_RESULTS
    res = probe("run", "--rm", "--security-opt", "apparmor=unconfined", IMAGE, "true")
    assert res.returncode == 125
    assert res.stderr.decode().count("\n") == 1 and "unsupported --security-opt" in res.stderr.decode()


BAD_PROFILES = [
    ("not json", "{", "not valid JSON"),
    ("a list", "[]", "must be a JSON object"),
    ("unknown action", '{"defaultAction": "SCMP_ACT_MAYBE"}', "unknown action 'SCMP_ACT_MAYBE'"),
    ("notify", '{"defaultAction": "SCMP_ACT_NOTIFY"}', "SCMP_ACT_NOTIFY is not supported"),
    ("both name and names",
     '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "names": ["write"], '
     '"action": "SCMP_ACT_ALLOW"}]}', "both 'name' and 'names'"),
    ("no names", '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}',
     "needs 'names'"),
    ("argument index",
     '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", '
     '"args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}', "argument index must be 0..5"),
    ("argument value",
     '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", '
     '"args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}', "0..2^64-1"),
    ("operator",
     '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", '
     '"args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ROUGHLY"}]}]}', "unknown operator"),
    ("architecture", '{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}',
     "unknown architecture 'SCMP_ARCH_Z80'"),
    ("both arch lists",
     '{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"], '
     '"archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}', "both 'architectures' and 'archMap'"),
    ("errno range", '{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}', "0..65535"),
    ("minKernel", '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]}', "invalid kernel version"),
    ("flags", '{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_LOG"]}',
     "not supported"),
]


@pytest.mark.parametrize("text,message", [(t, m) for _, t, m in BAD_PROFILES],
                         ids=[name for name, _, _ in BAD_PROFILES])
def test_bad_profile_is_a_one_line_error(probe: Hoist, tmp_path: Path, text: str, message: str) -> None:
    profile = tmp_path / "bad.json"
    profile.write_text(text)
    res = probe("run", "--rm", "--security-opt", f"seccomp={profile}", IMAGE, "true")
    err = res.stderr.decode()
    assert res.returncode == 125, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err and str(profile) in err, err
    assert probe.ok("ps", "-a").strip().count("\n") == 0  # nothing was created


def test_missing_and_oversized_profile_files(probe: Hoist, tmp_path: Path) -> None:
    res = probe("run", "--rm", "--security-opt", f"seccomp={tmp_path / 'none.json'}", IMAGE, "true")
    assert res.returncode == 125 and res.stderr.decode().startswith("hoist run: cannot read seccomp profile")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (seccomp.MAX_PROFILE_BYTES + 1))
    res = probe("run", "--rm", "--security-opt", f"seccomp={big}", IMAGE, "true")
    assert res.returncode == 125 and b"larger than" in res.stderr


def test_compiled_program_is_cached_per_profile(probe: Hoist, tmp_path: Path) -> None:
    probe.ok("run", "--rm", IMAGE, "true")
    cache = probe.root / "cache" / "seccomp"
    first = sorted(cache.iterdir())
    assert len(first) == 1 and first[0].stat().st_size % 8 == 0
    probe.ok("run", "--rm", IMAGE, "true")
    assert sorted(cache.iterdir()) == first
    first[0].write_bytes(b"")  # a damaged entry is rebuilt, not loaded
    assert run_probe(probe) == DEFAULT_RESULTS
    assert first[0].stat().st_size > 0


# -- against docker -------------------------------------------------------------------------------

def test_probe_agrees_with_docker(probe: Hoist, probe_binary: Path, dockerd: Dockerd, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    shutil.copy(probe_binary, context / "seccomp_probe")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY seccomp_probe /seccomp_probe\n"
                                        "CMD [\"/seccomp_probe\"]\n")
    tag = "hoist-seccomp-test/probe:1"
    dockerd("build", "-q", "-t", tag, str(context), env={"DOCKER_BUILDKIT": "0"})
    # The image has no /tmp: docker's mkdir probe would fail on the path, not on seccomp.
    theirs = parse(dockerd("run", "--rm", "--network", "none", "--tmpfs", "/tmp", tag).stdout.decode())
    ours = run_probe(probe)
    with capsys.disabled():
        print(f"\n{'probe':<22}{'hoist':<10}docker")
        for name in DEFAULT_RESULTS:
            print(f"{name:<22}{ours.get(name, '-'):<10}{theirs.get(name, '-')}")
    assert ours == theirs


# -- the profile machinery ------------------------------------------------------------------------

DEFAULT_CAPS = list(linux.DEFAULT_CAPS)


def _rules_for(resolved: dict, name: str) -> list[dict]:
    return [r for r in resolved["syscalls"] if name in r["names"]]


def test_default_caps_gate_the_namespace_calls() -> None:
    resolved = seccomp.resolve(seccomp.default_profile(), DEFAULT_CAPS, ("amd64", "SCMP_ARCH_X86_64"), (6, 1))
    assert resolved["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for name in ("mount", "unshare", "setns", "bpf", "perf_event_open", "reboot", "add_key", "keyctl"):
        assert _rules_for(resolved, name) == [], name
    (clone,) = _rules_for(resolved, "clone")
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
    (clone3,) = _rules_for(resolved, "clone3")
    assert (clone3["action"], clone3["errnoRet"]) == ("SCMP_ACT_ERRNO", 38)
    assert [r["action"] for r in _rules_for(resolved, "chroot")] == ["SCMP_ACT_ALLOW"]  # CAP_SYS_CHROOT
    assert _rules_for(resolved, "arch_prctl") and _rules_for(resolved, "modify_ldt")


def test_added_capabilities_open_their_groups() -> None:
    caps = DEFAULT_CAPS + ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_BOOT"]
    resolved = seccomp.resolve(seccomp.default_profile(), caps, ("amd64", "SCMP_ARCH_X86_64"), (6, 1))
    assert [r["args"] for r in _rules_for(resolved, "clone")] == [[]]  # unconditional
    assert _rules_for(resolved, "clone3")[0]["action"] == "SCMP_ACT_ALLOW"
    for name in ("mount", "unshare", "setns", "kcmp", "pidfd_getfd", "reboot"):
        assert _rules_for(resolved, name), name


def test_arch_and_kernel_conditions() -> None:
    profile = seccomp.default_profile()
    s390 = seccomp.resolve(profile, DEFAULT_CAPS, ("s390x", "SCMP_ARCH_S390X"), (6, 1))
    assert s390["architectures"] == ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]
    assert [r["args"][0]["index"] for r in _rules_for(s390, "clone")] == [1]
    assert _rules_for(s390, "s390_runtime_instr") and not _rules_for(s390, "arch_prctl")
    old = seccomp.resolve(profile, DEFAULT_CAPS, ("amd64", "SCMP_ARCH_X86_64"), (4, 4))
    new = seccomp.resolve(profile, DEFAULT_CAPS, ("amd64", "SCMP_ARCH_X86_64"), (4, 8))
    assert not _rules_for(old, "ptrace") and _rules_for(new, "ptrace")


def test_profile_without_rules_or_default_is_unconfined(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("{}")
    assert seccomp.for_container(str(path), DEFAULT_CAPS, None) is None
    assert seccomp.for_container(seccomp.UNCONFINED, DEFAULT_CAPS, None) is None


def test_same_index_conditions_are_ored() -> None:
    """Two conditions on one argument cannot be ANDed by libseccomp: each becomes its own rule
    (runc's rule), so the compile succeeds and either value is allowed."""
    doc = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_ALLOW"}]}
    seccomp.check_profile(doc)
    program = seccomp.compile_program(seccomp.resolve(doc, DEFAULT_CAPS))
    assert program and len(program) % 8 == 0


# -- containers written before seccomp existed ------------------------------------------------------

def _strip_seccomp(config: Path) -> None:
    doc = json.loads(config.read_text())
    del doc["seccomp"]
    config.write_text(json.dumps(doc))


def test_spec_without_seccomp_field_means_the_default_profile() -> None:
    from runtime.spec import ContainerSpec

    spec = ContainerSpec(id="a" * 64, name="old", image="i", image_id="sha256:" + "0" * 64,
                         argv=["true"], env=[])
    doc = spec.to_json()
    del doc["seccomp"]
    assert ContainerSpec.from_json(doc).seccomp == {"profile": "default"}
    # An explicit null (unconfined by choice) stays unconfined.
    doc["seccomp"] = None
    assert ContainerSpec.from_json(doc).seccomp is None
    # A filter that was never compiled is refused, never skipped.
    with pytest.raises(OSError, match="no compiled seccomp program"):
        seccomp.apply({"profile": "default"})


def test_old_container_started_by_its_monitor_gets_the_default(probe: Hoist) -> None:
    import sys

    from runtime.lifecycle import RunOptions, Runtime

    container = Runtime(probe.root).create(RunOptions(image=IMAGE, args=["seccomp_probe"], remove=True))
    _strip_seccomp(container.path / "config.json")
    res = subprocess.run([sys.executable, "-m", "runtime.init", str(container.path)], env=probe.env(),
                         capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr.decode()
    assert parse(res.stdout.decode()) == DEFAULT_RESULTS
    assert not container.path.exists()


def test_exec_into_an_old_container_gets_the_default(probe: Hoist) -> None:
    cid = probe.ok("run", "-d", IMAGE, "sleep", "60").strip()
    try:
        _strip_seccomp(probe.root / "containers" / cid / "config.json")
        assert parse(probe.ok("exec", cid, "seccomp_probe")) == DEFAULT_RESULTS
    finally:
        probe.ok("rm", "-f", cid)


def test_sync_noop_answers_the_sync_calls_and_keeps_the_rest(tmp_path: Path) -> None:
    """What build steps load (runtime.step): the default profile with fsync and its kin
    answered 0 in one rule of their own, every other rule as it was, cached apart."""
    from runtime.seccomp_profile import with_sync_noop

    resolved = seccomp.resolve(seccomp.default_profile(), DEFAULT_CAPS)
    noop = with_sync_noop(resolved)
    assert all(set(r["names"]).isdisjoint(seccomp.SYNC_CALLS) for r in noop["syscalls"][:-1])
    assert noop["syscalls"][-1] == {"names": list(seccomp.SYNC_CALLS), "action": "SCMP_ACT_ERRNO",
                                    "errnoRet": 0, "args": []}
    assert sum(len(r["names"]) for r in noop["syscalls"][:-1]) + \
        sum(n in seccomp.SYNC_CALLS for r in resolved["syscalls"] for n in r["names"]) == \
        sum(len(r["names"]) for r in resolved["syscalls"])
    plain = seccomp.for_container(seccomp.DEFAULT, DEFAULT_CAPS, tmp_path)
    quiet = seccomp.for_container(seccomp.DEFAULT, DEFAULT_CAPS, tmp_path, sync_noop=True)
    assert plain is not None and quiet is not None and plain["program"] != quiet["program"]
    assert len(list(tmp_path.iterdir())) == 2
