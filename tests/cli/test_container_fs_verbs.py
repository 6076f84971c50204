"""``diff``, ``export``, ``import`` and ``top``: a container's file system and processes seen from
the host, and a root file system tarball made into an image (what these hosts use to make a base
image without a public registry)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import REPO_ROOT, Hoist, one_line
from tests.images import Entry, busybox_image


@pytest.fixture
def h(containers: Hoist) -> Iterator[Hoist]:
    hoist = containers
    busybox_image(hoist.layout(), extra=[Entry("escape", "symlink", link="/"),
                                         Entry("opt", "dir"), Entry("opt/keep", data=b"k")])
    yield hoist


SCRIPT = "echo x > /new; rm /bin/ls; echo extra >> /etc/passwd; mkdir -p /a/b; rm -r /opt; mkdir /opt; touch /opt/n"


def test_diff_lists_added_changed_deleted(h: Hoist) -> None:
    h("run", "--name", "changer", "busybox", "sh", "-c", SCRIPT)
    lines = h("diff", "changer").out.splitlines()
    assert lines == ["A /a", "A /a/b", "C /bin", "D /bin/ls", "C /etc", "C /etc/passwd", "A /new",
                     "C /opt", "A /opt/n"]
    one_line(h("diff", "nosuch", ok=False), "no such container")


def test_export_then_import_round_trip(h: Hoist, tmp_path: Path) -> None:
    h("run", "--name", "changer", "busybox", "sh", "-c", SCRIPT)
    out = tmp_path / "fs.tar"
    h("export", "-o", str(out), "changer")
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert {"new", "a/b", "bin/busybox", "etc/passwd", "opt/n"} <= names
        assert "bin/ls" not in names and "opt/keep" not in names
        assert tar.getmember("escape").issym() and tar.getmember("escape").linkname == "/"
        assert all(m.uname == "" for m in tar.getmembers())
    image_id = h("import", "-m", "from the test", "-c", 'CMD ["/bin/sh"]', "-c", "ENV BASE=1", str(out),
                 "team/base:1").out.strip()
    base_config = json.loads(h("inspect", "team/base:1").out)[0]["Config"]
    assert base_config["Cmd"] == ["/bin/sh"] and base_config["Env"] == ["BASE=1"]
    assert image_id.startswith("sha256:")
    assert h("run", "--rm", "team/base:1", "sh", "-c", "cat /new; tail -1 /etc/passwd; ls /bin/ls 2>&1 | head -1").out \
        .splitlines()[:2] == ["x", "extra"]
    assert h("images", "--format", "{{.ID}}", "team/base").out.strip() == image_id[7:19]
    # From stdin, compressed as a whole: the same layer, the same diff_id.
    gz = tmp_path / "fs.tgz"
    subprocess.run(["gzip", "-k", "-c", str(out)], stdout=open(gz, "wb"), check=True)
    proc = subprocess.run([sys.executable, "-m", "hoist.cli", "import", "-", "team/base:2"], stdin=open(gz, "rb"),
                          capture_output=True, text=True, env=h.env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    ids = [json.loads(h("inspect", ref).out)[0]["RootFS"]["diff_ids"] for ref in ("team/base:1", "team/base:2")]
    assert ids[0] == ids[1]


def test_import_refuses_what_is_not_a_tarball(h: Hoist, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tar archive at all" * 100)
    before = set(h.layout().blobs())
    one_line(h("import", str(bad), "x:1", ok=False), "not a tar archive")
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    one_line(h("import", str(empty), "x:1", ok=False), "empty")
    one_line(h("import", str(tmp_path / "missing.tar"), ok=False), "cannot read")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("f")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    (tmp_path / "cut.tar").write_bytes(buf.getvalue()[:600])
    one_line(h("import", str(tmp_path / "cut.tar"), ok=False), "not a tar archive")
    assert set(h.layout().blobs()) == before and [n for n, _ in h.layout().refs()] == ["docker.io/library/busybox:latest"]
    ingest = h.images / "ingest"
    assert not ingest.exists() or list(ingest.iterdir()) == []


def test_top_lists_the_container_processes(h: Hoist) -> None:
    h("run", "-d", "--name", "sleeper", "busybox", "sh", "-c", "sleep 61 & sleep 62")
    deadline = time.monotonic() + 30
    while True:
        out = h("top", "sleeper").out
        if "sleep 61" in out and "sleep 62" in out:
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.05)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["UID", "PID", "PPID"] and len(lines) == 3   # the two sleeps (sh exec'd the last)
    assert "pytest" not in out
    assert "PID" in h("top", "sleeper", "-o", "pid,comm").out.splitlines()[0]
    h("stop", "-t", "0", "sleeper")
    one_line(h("top", "sleeper", ok=False), "is not running")


def test_commit_makes_an_image_of_the_changes(h: Hoist) -> None:
    h("run", "--name", "work", "-e", "FOO=bar", "-w", "/work", "--label", "made=by-test",
      "--health-cmd", "test -e /work/x", "--health-interval", "5s", "busybox", "sh", "-c",
      "echo committed > /work/x; rm /bin/ls")
    image_id = h("commit", "-m", "my change", "-a", "Jane <jane@example.com>", "work", "team/committed:1").out.strip()
    assert image_id.startswith("sha256:")
    info = json.loads(h("inspect", "team/committed:1").out)[0]
    base = json.loads(h("inspect", "busybox").out)[0]
    assert info["Id"] == image_id
    assert info["RootFS"]["diff_ids"][:-1] == base["RootFS"]["diff_ids"] and len(info["RootFS"]["diff_ids"]) == 2
    config = info["Config"]
    assert "FOO=bar" in config["Env"] and not any(e.startswith("HOSTNAME=") for e in config["Env"])
    assert config["WorkingDir"] == "/work" and config["Labels"] == {"made": "by-test"}
    assert config["Cmd"] == ["sh", "-c", "echo committed > /work/x; rm /bin/ls"]
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "test -e /work/x"], "Interval": 5_000_000_000}
    out = h("run", "--rm", "team/committed:1", "sh", "-c", "cat /work/x; echo $FOO; pwd; ls /bin/ls 2>/dev/null || echo gone")
    assert out.out == "committed\nbar\n/work\ngone\n"
    # The init's mount points are not part of the image: a run of it makes them again.
    layer = h.layout().blob_path(json.loads(h.layout().read_blob(h.layout().find("team/committed:1").descriptor.digest))
                                 ["layers"][-1]["digest"])
    with tarfile.open(layer) as tar:
        names = set(tar.getnames())
    assert {"work/x", "bin/.wh.ls"} <= names and not names & {"etc/hosts", "etc/hostname", "etc/resolv.conf"}
    # -c: Dockerfile instructions on the new config, through the builder's dispatch.
    h("commit", "-c", 'CMD ["cat", "/work/x"]', "-c", "ENV MORE=1 FOO=baz", "-c", "WORKDIR sub",
      "-c", "EXPOSE 8080/udp", "-c", "LABEL stage=two", "work", "team/committed:2")
    config = json.loads(h("inspect", "team/committed:2").out)[0]["Config"]
    assert config["Cmd"] == ["cat", "/work/x"] and {"MORE=1", "FOO=baz"} <= set(config["Env"])
    assert config["WorkingDir"] == "/work/sub" and "8080/udp" in config["ExposedPorts"]
    assert config["Labels"] == {"made": "by-test", "stage": "two"}
    assert h("run", "--rm", "-w", "/", "team/committed:2").out == "committed\n"
    before = len(h("images", "-q").out.split())
    one_line(h("commit", "-c", "RUN rm -rf /", "work", ok=False), "RUN is not a valid change command")
    one_line(h("commit", "-c", "EXPOSE notaport", "work", ok=False), "invalid change")
    assert len(h("images", "-q").out.split()) == before
