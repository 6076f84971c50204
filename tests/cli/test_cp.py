"""``hoist cp`` both ways with a running container (stopped ones: test_cp_follow.py): docker's naming rules,
owners (-a), and a container's symlinks (absolute, to ``/``, through ``..``) resolved inside it, never on the host."""

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

SETUP = ("mkdir -p /d/sub; echo a > /d/f; echo b > /d/sub/g; ln -s /etc/shadow-none /d/evil; ln -s / /d/up; "
         "ln -s ../../../../../../.. /d/dots; chown 1000:50 /d/f; touch /ready; sleep 60")


@pytest.fixture
def h(containers: Hoist) -> Iterator[Hoist]:
    hoist = containers
    busybox_image(hoist.layout())
    hoist("run", "-d", "--name", "box", "busybox", "sh", "-c", SETUP)
    deadline = time.monotonic() + 30
    while hoist("exec", "box", "test", "-e", "/ready", ok=False).code != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield hoist


def test_from_the_container(h: Hoist, tmp_path: Path) -> None:
    h("cp", "box:/d", str(tmp_path / "out"))                          # a dir onto a missing path: becomes it
    assert (tmp_path / "out" / "f").read_text() == "a\n" and (tmp_path / "out" / "sub" / "g").read_text() == "b\n"
    assert os.readlink(tmp_path / "out" / "evil") == "/etc/shadow-none"      # links stay links
    assert os.stat(tmp_path / "out" / "f").st_uid == 0                       # the caller's, without -a
    h("cp", "box:/d", str(tmp_path / "out"))                          # onto a directory: goes inside
    assert (tmp_path / "out" / "d" / "f").exists()
    (tmp_path / "contents").mkdir()
    h("cp", "box:/d/.", str(tmp_path / "contents"))                   # SRC/. copies what is inside
    assert (tmp_path / "contents" / "sub" / "g").exists()
    h("cp", "-a", "box:/d/f", str(tmp_path / "renamed"))              # a file onto a missing path
    st = os.stat(tmp_path / "renamed")
    assert (tmp_path / "renamed").read_text() == "a\n" and (st.st_uid, st.st_gid) == (1000, 50)
    # Through the container's links to / and to ../../..: its /etc/passwd, not the host's.
    for link in ("up", "dots"):
        h("cp", f"box:/d/{link}/etc/passwd", str(tmp_path / f"pw-{link}"))
        assert (tmp_path / f"pw-{link}").read_text() == PASSWD
    one_line(h("cp", "box:/nope", str(tmp_path / "x"), ok=False), "could not find the file /nope")
    one_line(h("cp", "box:/d/f", str(tmp_path / "missing") + "/", ok=False), "does not exist")


def test_into_the_container(h: Hoist, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "file").write_text("host\n")
    (src / "deep" / "x").write_text("x\n")
    os.chown(src / "file", 1234, 1234)
    h("cp", str(src / "file"), "box:/d/")
    assert h("exec", "box", "sh", "-c", "cat /d/file; stat -c %u /d/file").out == "host\n0\n"   # root's, without -a
    h("cp", "-a", str(src / "file"), "box:/d/kept")
    assert h("exec", "box", "stat", "-c", "%u", "/d/kept").out == "1234\n"
    h("cp", str(src), "box:/tree")
    assert h("exec", "box", "cat", "/tree/deep/x").out == "x\n"
    # Writing through the container's link to /: lands in the container's /tmp, never the host's.
    marker = f"hoist-cp-test-{os.getpid()}"
    h("cp", str(src / "file"), f"box:/d/up/tmp/{marker}")
    assert h("exec", "box", "cat", f"/tmp/{marker}").out == "host\n"
    assert not Path("/tmp", marker).exists()
    h("cp", str(src / "file"), f"box:/d/dots/tmp/{marker}-2")
    assert not Path("/tmp", f"{marker}-2").exists()
    one_line(h("cp", str(src / "file"), "box:/no/such/dir/", ok=False), "does not exist")
    one_line(h("cp", str(src), str(tmp_path / "y"), ok=False), "must be CONTAINER:PATH")
    h("stop", "-t", "0", "box")
    h("cp", str(src / "file"), "box:/d/into-stopped")   # into a stopped one: its upper dir (test_cp_follow)
    # Out of a stopped one: its merged file system, its links still resolved inside it.
    h("cp", "box:/d/up/etc/passwd", str(tmp_path / "pw-stopped"))
    assert (tmp_path / "pw-stopped").read_text() == PASSWD
    h("cp", "box:/d/file", str(tmp_path / "after-stop"))
    assert (tmp_path / "after-stop").read_text() == "host\n"
    h("cp", "box:/d/into-stopped", str(tmp_path / "into-stopped"))
    assert (tmp_path / "into-stopped").read_text() == "host\n"


def _run_cp(h: Hoist, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hoist.cli", "cp", *args], input=stdin, capture_output=True,
                          env=h.env, cwd=REPO_ROOT, timeout=120)


def test_tar_streams(h: Hoist, tmp_path: Path) -> None:
    out = _run_cp(h, "box:/d", "-")
    assert out.returncode == 0, out.stderr
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {"d", "d/f", "d/sub", "d/sub/g", "d/evil"} <= set(members)
    assert members["d/evil"].issym() and members["d/evil"].linkname == "/etc/shadow-none"
    assert members["d/f"].uid == 1000

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("in/a", b"A"), ("../../../escaped", b"E"), ("/abs", b"B")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("in/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/"
        tar.addfile(link)
    res = _run_cp(h, "-", "box:/d", stdin=buf.getvalue())
    assert res.returncode == 0, res.stderr
    listing = h("exec", "box", "sh", "-c", "cat /d/in/a /d/escaped /d/abs; readlink /d/in/link").out
    assert listing == "AEB/\n"                      # .. and / stay under the destination
    # A member under the symlink just made: refused, nothing written through it.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("in/link/tmp/through-link")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    res = _run_cp(h, "-", "box:/d", stdin=buf.getvalue())
    assert res.returncode != 0 and b"not a directory (links are not followed)" in res.stderr
    assert b"Traceback" not in res.stderr
    assert h("exec", "box", "sh", "-c", "ls /tmp/through-link 2>/dev/null || echo absent").out == "absent\n"
    res = _run_cp(h, "-", "box:/d", stdin=b"not a tar" * 100)
    assert res.returncode != 0 and b"not a readable tar" in res.stderr and len(res.stderr.splitlines()) == 1
