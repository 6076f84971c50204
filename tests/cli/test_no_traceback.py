"""Everyday failures of the transfer verbs: each is one line on stderr, a non-zero exit and
nothing left behind (no temporary file, no partial download, nothing replaced that was not a
regular file). The CLI runs as a real subprocess where the failure is about its own stdout."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.layout import ImageLayout
from tests.cli.helpers import REPO_ROOT, Hoist, Result
from tests.images import busybox_image, random_layers, write_image
from tests.peers import NetnsHost, need_tool, stop_process, wait_for_port

REF = "registry.local:5000/team/app:1"


def _one_line(result: Result, *words: str) -> str:
    assert result.code != 0, result
    assert "Traceback" not in result.err, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _shell(h: Hoist, script: str, cwd: Path) -> Result:
    """``script`` in bash, with ``hoist`` meaning this test's CLI."""
    env = dict(h.env, HOIST=f"{sys.executable} -m hoist.cli")
    proc = subprocess.run(["bash", "-c", f"cd {REPO_ROOT}; hoist() {{ $HOIST \"$@\"; }}; {script}"],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def saved(hoist: Hoist) -> Hoist:
    busybox_image(hoist.layout(), REF)
    return hoist


def _leftovers(*dirs: Path) -> list[str]:
    return [p.name for d in dirs for p in d.iterdir() if p.name.startswith(".hoist-save-")]


# -- save ---------------------------------------------------------------------------------------

def test_save_into_a_pipe_closed_early(saved: Hoist, tmp_path: Path) -> None:
    res = _shell(saved, f"hoist save {REF} | head -c1 >/dev/null; echo \"exit=${{PIPESTATUS[0]}}\"", tmp_path)
    assert res.out.strip() == "exit=1", res
    res.code = 1
    _one_line(res, "broken pipe")


def test_save_to_a_directory_a_missing_directory_and_a_block_device(saved: Hoist, tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    _one_line(saved("save", "-o", str(target), REF, ok=False), f"{target} is a directory")
    assert list(target.iterdir()) == [] and _leftovers(tmp_path) == []

    missing = tmp_path / "missing" / "x.tar"
    _one_line(saved("save", "-o", str(missing), REF, ok=False), "no such directory", str(missing.parent))
    assert not missing.parent.exists()

    device = tmp_path / "disk"
    os.mknod(device, stat.S_IFBLK | 0o600, os.makedev(7, 250))
    _one_line(saved("save", "-o", str(device), REF, ok=False), "block device", "refused")
    assert stat.S_ISBLK(os.lstat(device).st_mode) and _leftovers(tmp_path) == []


def test_save_to_a_process_substitution_writes_into_the_pipe(saved: Hoist, tmp_path: Path) -> None:
    out = tmp_path / "via-pipe.tar"
    res = _shell(saved, f"hoist save -o >(cat > {out}) {REF}; code=$?; wait; exit $code", tmp_path)
    assert res.code == 0 and res.err == "", res
    with tarfile.open(out) as tar:
        assert json.loads(tar.extractfile("manifest.json").read())[0]["RepoTags"] == [REF]  # type: ignore[union-attr]


def test_save_never_replaces_a_device_fifo_or_symlink(saved: Hoist, tmp_path: Path) -> None:
    # A character device is written into, not replaced: /dev/full says the disk is full.
    _one_line(saved("save", "-o", "/dev/full", REF, ok=False), "/dev/full", "No space left on device")
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)
    assert saved("save", "-o", "/dev/null", REF).code == 0 and stat.S_ISCHR(os.lstat("/dev/null").st_mode)

    # A FIFO is written into and stays a FIFO.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = bytearray()
    reader = threading.Thread(target=lambda: got.extend(open(fifo, "rb").read()))
    reader.start()
    saved("save", "-o", str(fifo), REF)
    reader.join(60)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and got.startswith(b"blobs/")

    # A symlink to a file: the file gets the archive, the link stays a link.
    real = tmp_path / "real.tar"
    real.write_bytes(b"old")
    link = tmp_path / "link.tar"
    link.symlink_to(real)
    saved("save", "-o", str(link), REF)
    assert link.is_symlink() and tarfile.is_tarfile(real)
    # A dangling one is refused and left as it is.
    dangling = tmp_path / "dangling.tar"
    dangling.symlink_to(tmp_path / "nowhere")
    _one_line(saved("save", "-o", str(dangling), REF, ok=False), "symlink to a missing file")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()
    assert _leftovers(tmp_path) == []


def test_save_dash_is_stdout(saved: Hoist, tmp_path: Path) -> None:
    res = _shell(saved, f"hoist save -o - {REF} > {tmp_path}/std.tar", tmp_path)
    assert res.code == 0 and res.err == "", res
    assert tarfile.is_tarfile(tmp_path / "std.tar") and not (tmp_path / "-").exists()


# -- load ---------------------------------------------------------------------------------------

def test_load_of_a_truncated_stream(saved: Hoist, tmp_path: Path) -> None:
    archive = tmp_path / "img.tar"
    saved("save", "-o", str(archive), REF)
    other = Hoist(tmp_path / "other")
    half = archive.stat().st_size // 2
    for cut in (half, 1000, archive.stat().st_size - 1024 * 3):
        res = _shell(other, f"head -c {cut} {archive} | hoist load", tmp_path)
        _one_line(res, "truncated")
        assert list(other.layout().blobs()) == [] and other.layout().refs() == []
        ingest = other.images / "ingest"
        assert not ingest.exists() or list(ingest.iterdir()) == []


def test_load_of_an_oci_layout_tarred_with_dot_slash(tmp_path: Path) -> None:
    """``tar -C layout -cf x.tar .`` names members ./index.json, ./blobs/...: docker loads it."""
    layout_dir = tmp_path / "layout"
    busybox_image(ImageLayout(layout_dir).init(), "docker.io/library/dotted:1")
    archive = tmp_path / "dotted.tar"
    subprocess.run(["tar", "-C", str(layout_dir), "-cf", str(archive), "."], check=True)
    with tarfile.open(archive) as tar:
        assert "./index.json" in tar.getnames()
    h = Hoist(tmp_path / "h")
    out = h("load", "-i", str(archive)).out
    assert "Loaded image" in out
    info = json.loads(h("inspect", "dotted:1").out)[0]
    assert info["RepoTags"] == ["docker.io/library/dotted:1"]


# -- the store and the environment ----------------------------------------------------------------

def test_hoist_root_pointing_at_a_file(tmp_path: Path) -> None:
    h = Hoist(tmp_path)
    h.root.write_text("not a directory")
    for verb in (("images",), ("ps", "-a"), ("pull", "127.0.0.1:1/x:1")):
        _one_line(h(*verb, ok=False), f"HOIST_ROOT {h.root} is not a directory")
    assert h.root.read_text() == "not a directory"


def test_env_file_with_invalid_utf8(saved: Hoist, tmp_path: Path) -> None:
    bad = tmp_path / "bad.env"
    bad.write_bytes(b"A=1\nB=\xff\xfe\n")
    _one_line(saved("run", "--env-file", str(bad), REF, "true", ok=False), "not valid UTF-8", str(bad))
    containers = saved.root / "containers"
    assert not containers.exists() or list(containers.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted by this test (a private disk to fill)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_pull_onto_a_full_disk_leaves_no_partials(tmp_path: Path, small_disk: Path) -> None:
    from tests.registry.http import ServerProcess

    server = ServerProcess(tmp_path / "registry")
    try:
        src = Hoist(tmp_path / "src")
        ref = f"{server.addr}/team/big:1"
        write_image(src.images, ref, random_layers(3, 3 << 20))
        src("push", ref)
        h = Hoist(tmp_path)
        h.root = small_disk / "root"
        h.env["HOIST_ROOT"] = str(h.root)
        line = _one_line(h("pull", ref, ok=False), "no space left")
        assert "partial downloads removed" in line
        assert [p for p in h.root.rglob("*") if p.name.endswith(".partial")] == []
        assert list((h.images / "ingest").iterdir()) == []  # no partial and no blob lock
        assert h.layout().refs() == []
    finally:
        server.stop()


def test_plain_http_registry_reached_by_a_non_loopback_address(tmp_path: Path) -> None:
    need_tool("ip", "iproute2")
    host = NetnsHost().start()
    proc = None
    try:
        port = 5000
        proc = subprocess.Popen(host.command(
            sys.executable, "-m", "hoist.cli", "registry", "serve", "--no-access-log",
            "--addr", f"{host.addr}:{port}", "--root", str(tmp_path / "root")),
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port, 30, proc, host=host.addr)
        h = Hoist(tmp_path / "h")
        ref = f"{host.addr}:{port}/team/web:1.0"
        line = _one_line(h("pull", ref, ok=False), "answers plain HTTP", "--insecure", "insecure-registries",
                         str(h.root / "config.json"))
        assert "SSL" not in line
        # Marked insecure, the same registry answers (here: no such image).
        res = h("pull", "--insecure", ref, ok=False)
        assert "plain HTTP" not in res.err and "not found" in res.err.lower(), res.err
    finally:
        stop_process(proc)
        host.stop()


def test_save_on_a_file_system_without_hard_links(saved: Hoist, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """vfat and some FUSE file systems refuse link(2): the archive is renamed into place instead."""
    import errno

    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "stick" / "img.tar"
    target.parent.mkdir()
    saved("save", "-o", str(target), REF)
    assert tarfile.is_tarfile(target) and _leftovers(target.parent) == []
