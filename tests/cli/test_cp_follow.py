"""``hoist cp -L`` (a source symlink followed: on the host as the host resolves it, in a container
inside its root, never the host's) and ``hoist cp`` with stopped containers (created and exited):
their upper dir, their volumes (a new one filled from the image first, as docker does at create),
docker's refusals of read-only volumes and ``--read-only`` roots, nothing left mounted."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import REPO_ROOT, Hoist, one_line
from tests.images import PASSWD, busybox_image
from tests.peers import Dockerd

# Links a stranger's image could hold: to the (container's) /etc/shadow, through .. past the
# root, relative, chained, to a directory, to itself.
LINKS = ("mkdir -p /d/sub; echo inner > /d/sub/g; echo container-shadow > /etc/shadow; "
         "ln -s /etc/shadow /d/abs; ln -s ../../../../../etc/shadow /d/dots; ln -s sub/g /d/rel; "
         "ln -s /d/abs /d/chain; ln -s /d/sub /d/dir; ln -s /d/loop /d/loop; ln -s / /d/root")


@pytest.fixture
def h(containers: Hoist) -> Iterator[Hoist]:
    busybox_image(containers.layout())
    yield containers


def _wait_for(h: Hoist, name: str, path: str) -> None:
    deadline = time.monotonic() + 30
    while h("exec", name, "test", "-e", path, ok=False).code != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _check_follow(h: Hoist, box: str, out: Path) -> None:
    out.mkdir()
    h("cp", f"{box}:/d/abs", str(out / "plain"))                       # without -L: the link itself
    assert os.readlink(out / "plain") == "/etc/shadow"
    for link in ("abs", "dots", "chain"):                              # the container's shadow, never the host's
        h("cp", "-L", f"{box}:/d/{link}", str(out / f"{link}-file"))
        assert not (out / f"{link}-file").is_symlink()
        assert (out / f"{link}-file").read_text() == "container-shadow\n"
    h("cp", "--follow-link", f"{box}:/d/rel", str(out))                # into a directory: the link's name
    assert (out / "rel").read_text() == "inner\n"
    h("cp", "-L", f"{box}:/d/dir", str(out / "tree"))                  # a link to a directory: the tree
    assert (out / "tree" / "g").read_text() == "inner\n"
    h("cp", "-L", f"{box}:/d/root/etc/passwd", str(out / "pw"))
    assert (out / "pw").read_text() == PASSWD
    one_line(h("cp", "-L", f"{box}:/d/loop", str(out / "x"), ok=False), "too many levels of symbolic links")
    assert not (out / "x").exists()
    res = subprocess.run([sys.executable, "-m", "hoist.cli", "cp", "-L", f"{box}:/d/chain", "-"],
                         capture_output=True, env=h.env, cwd=REPO_ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
        (member,) = tar.getmembers()
        assert member.name == "chain" and member.isfile()
        assert tar.extractfile(member).read() == b"container-shadow\n"  # type: ignore[union-attr]


def test_follow_link_out(h: Hoist, tmp_path: Path) -> None:
    h("run", "-d", "--name", "box", "busybox", "sh", "-c", LINKS + "; touch /ready; sleep 60")
    _wait_for(h, "box", "/ready")
    _check_follow(h, "box", tmp_path / "running")                      # through its PID 1's root
    h("stop", "-t", "0", "box")
    _check_follow(h, "box", tmp_path / "stopped")                      # through its mounted file system


def test_follow_link_in(h: Hoist, tmp_path: Path) -> None:
    h("run", "-d", "--name", "box", "busybox", "sleep", "60")
    (tmp_path / "real").write_text("host file\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "dirlink").symlink_to(tmp_path)
    h("cp", str(tmp_path / "link"), "box:/plain")
    assert h("exec", "box", "readlink", "/plain").out == f"{tmp_path / 'real'}\n"
    h("cp", "-L", str(tmp_path / "link"), "box:/")
    assert h("exec", "box", "sh", "-c", "test -L /link || cat /link").out == "host file\n"
    h("cp", "-L", str(tmp_path / "link"), "box:/renamed")
    assert h("exec", "box", "cat", "/renamed").out == "host file\n"


def test_stopped_containers(h: Hoist, tmp_path: Path) -> None:
    ro_src = tmp_path / "ro-src"
    ro_src.mkdir()
    (tmp_path / "f").write_text("from host\n")
    show = "cat /up/f /data/f /w/f 2>/dev/null; echo run"
    h("run", "--name", "ex", "-v", "vol:/data", "-v", f"{ro_src}:/ro:ro", "busybox", "sh", "-c",
      "mkdir -p /up; ln -s / /up/root; ln -s ../../../../.. /up/dots; ln -s /ro /up/rolink; "
      "echo image-run > /data/first; " + show)
    h("cp", str(tmp_path / "f"), "ex:/up/")                            # exited: into its upper dir
    h("cp", str(tmp_path / "f"), "ex:/data/")                          # and into its volume
    one_line(h("cp", str(tmp_path / "f"), "ex:/ro/", ok=False), "mounted volume is marked read-only")
    one_line(h("cp", str(tmp_path / "f"), "ex:/ro/sub/x", ok=False), "mounted volume is marked read-only")
    one_line(h("cp", str(tmp_path / "f"), "ex:/up/rolink/x", ok=False), "mounted volume is marked read-only")
    assert list(ro_src.iterdir()) == []
    # Its links to / and past it: the container's /tmp, never the host's.
    marker = f"hoist-cp-stopped-{os.getpid()}"
    for link in ("root", "dots"):
        h("cp", str(tmp_path / "f"), f"ex:/up/{link}/tmp/{marker}-{link}")
        assert not Path("/tmp", f"{marker}-{link}").exists()
        h("cp", f"ex:/tmp/{marker}-{link}", str(tmp_path / f"back-{link}"))
        assert (tmp_path / f"back-{link}").read_text() == "from host\n"
    h("cp", "ex:/data/first", str(tmp_path / "first"))                 # out of its volume
    assert (tmp_path / "first").read_text() == "image-run\n"
    assert h("start", "-a", "ex").out == "from host\nfrom host\nrun\n"  # the next run sees both

    # Created, never started: its new volume on /etc is filled from the image first (docker does
    # it at create), so a copy into it does not hide the image's files.
    from runtime.lifecycle import RunOptions, Runtime

    c = Runtime(h.root).create(RunOptions(image="busybox", name="new", volumes=["etcvol:/etc"],
                                          args=["sh", "-c", "cat /etc/added; head -1 /etc/passwd"]))
    assert h("inspect", "--format", "{{.State.Status}}", c.id).out == "created\n"
    h("cp", str(tmp_path / "f"), "new:/etc/added")
    h("cp", "new:/etc/passwd", str(tmp_path / "pw"))
    assert (tmp_path / "pw").read_text() == PASSWD
    assert h("start", "-a", "new").out == "from host\nroot:x:0:0:root:/root:/bin/sh\n"

    # --read-only: nothing outside its volumes, stopped or running.
    h("run", "--name", "rofs", "--read-only", "-v", "wvol:/w", "busybox", "sh", "-c", "echo run")
    one_line(h("cp", str(tmp_path / "f"), "rofs:/tmp/", ok=False), "container rootfs is marked read-only")
    h("cp", str(tmp_path / "f"), "rofs:/w/")
    one_line(h("cp", "-", "rofs:/tmp", ok=False, stdin="x"), "container rootfs is marked read-only")
    h("run", "-d", "--name", "rorun", "--read-only", "busybox", "sleep", "60")
    one_line(h("cp", str(tmp_path / "f"), "rorun:/", ok=False), "container rootfs is marked read-only")
    one_line(h("cp", str(tmp_path / "f"), "nosuch:/", ok=False), "nosuch")
    # Nothing of the copies' mounts is left in the host's mount table.
    with open("/proc/self/mountinfo") as f:
        assert str(h.root) not in f.read()


def _tree(top: Path) -> dict[str, str]:
    """What a copy made: each path's kind and content (a link's target)."""
    found = {}
    for path in sorted(top.rglob("*")):
        rel = str(path.relative_to(top))
        if path.is_symlink():
            found[rel] = "link " + os.readlink(path)
        elif path.is_dir():
            found[rel] = "dir"
        else:
            found[rel] = "file " + path.read_text()
    return found


def test_same_as_docker(h: Hoist, dockerd: Dockerd, tmp_path: Path) -> None:
    """cp -L, cp with an exited container and the read-only refusals, against the session's
    private dockerd: the same files, the same refusals."""
    archive = tmp_path / "box.tar"
    h("save", "-o", str(archive), "busybox")
    dockerd("load", "-i", str(archive))
    (tmp_path / "f").write_text("from host\n")
    results = {}
    try:
        for engine in ("hoist", "docker"):
            def cli(*args: str, ok: bool = True, engine: str = engine) -> tuple[int, str]:
                if engine == "hoist":
                    res = h(*args, ok=ok)
                    return res.code, res.err
                done = dockerd(*args, check=ok)
                return done.returncode, done.stderr.decode()

            out, ro = tmp_path / engine, tmp_path / f"{engine}-ro"
            out.mkdir()
            ro.mkdir()
            cli("run", "--name", "cpd", "-v", f"{ro}:/ro:ro", "busybox", "sh", "-c", LINKS)   # exited
            cli("run", "--name", "rofs", "--read-only", "busybox", "true")
            for link in ("abs", "dots", "chain", "rel", "dir"):
                cli("cp", "-L", f"cpd:/d/{link}", str(out / f"{link}-L"))
            cli("cp", "-L", "cpd:/d/rel", str(out))
            cli("cp", "cpd:/d/abs", str(out / "plain"))
            cli("cp", str(tmp_path / "f"), "cpd:/d/")
            cli("cp", "cpd:/d/f", str(out / "back"))
            refusals = [cli("cp", str(tmp_path / "f"), target, ok=False) for target in ("cpd:/ro/", "rofs:/tmp/")]
            results[engine] = (_tree(out), list(ro.iterdir()), [code for code, _ in refusals], refusals)
            cli("rm", "-f", "cpd", "rofs")
    finally:
        dockerd("rm", "-f", "cpd", "rofs", check=False)
        dockerd("rmi", "-f", "busybox", check=False)
    ours, theirs = results["hoist"], results["docker"]
    assert ours[:3] == theirs[:3]
    words_of = ("mounted volume is marked read-only", "container rootfs is marked read-only")
    for (_, our_err), (_, their_err), words in zip(ours[3], theirs[3], words_of, strict=True):
        assert words in our_err and words in their_err


def test_resolve_stays_in_the_root(tmp_path: Path) -> None:
    """``runtime.cp.resolve``, the resolver ``cp -L`` and the read-only checks use, on a plain
    directory standing in for a container's root."""
    from runtime.cp import CopyError, resolve

    root = tmp_path / "root"
    (root / "b" / "c").mkdir(parents=True)
    (root / "abs").symlink_to("/b")
    (root / "b" / "up").symlink_to("../../../../..")
    (root / "b" / "c" / "rel").symlink_to("../up/b/c")
    (root / "loop").symlink_to("loop")
    (root / "host").symlink_to(tmp_path)          # a host path: names the same path inside the root
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        cases = {"/abs": "/b", "/abs/up": "/", "/abs/up/../../b": "/b", "/b/c/rel": "/b/c",
                 "/b/c/rel/../../abs/c": "/b/c", "/missing/x/../y": "/missing/y", "/abs/missing/..": "/b",
                 "": "/", "/..": "/", str(tmp_path / "x"): str(tmp_path / "x"),
                 "/host/root": str(tmp_path / "root")}
        assert {path: resolve(fd, path) for path in cases} == cases
        with pytest.raises(CopyError, match="too many levels of symbolic links"):
            resolve(fd, "/loop")
    finally:
        os.close(fd)
