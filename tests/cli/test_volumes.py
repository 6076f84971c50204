"""Volumes as docker's: -v creating a missing host directory, named and anonymous volumes
(``hoist volume create|ls|inspect|rm|prune``, filled from the image when new), --mount
bind|volume|tmpfs, --tmpfs (bounded), --read-only, --volumes-from, :z/:Z accepted."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import Hoist, one_line
from tests.images import PASSWD, Entry, busybox_image


@pytest.fixture
def h(containers: Hoist) -> Iterator[Hoist]:
    hoist = containers
    busybox_image(hoist.layout(), extra=[Entry("srv/app", "dir", mode=0o750, uid=1000, gid=1000),
                                         Entry("srv/app/conf", data=b"image-conf\n", mode=0o640, uid=1000),
                                         Entry("srv/app/sub", "dir"),
                                         Entry("srv/app/sub/link", "symlink", link="/etc/shadow-nowhere"),
                                         Entry("data", "symlink", link="/etc")])
    yield hoist


def _volumes(h: Hoist) -> list[str]:
    return h("volume", "ls", "-q").out.split()


def test_bind_creates_a_missing_host_directory(h: Hoist, tmp_path: Path) -> None:
    host = tmp_path / "made" / "here"
    h("run", "--rm", "-v", f"{host}:/out:z", "busybox", "sh", "-c", "echo hi > /out/f")
    assert (host / "f").read_text() == "hi\n"
    h("run", "--rm", "-v", f"{host}:/out:ro,Z", "busybox", "cat", "/out/f")
    res = h("run", "--rm", "-v", f"{host}:/out:ro", "busybox", "touch", "/out/g", ok=False)
    assert res.code != 0 and not (host / "g").exists()


def test_named_volume_lifecycle_and_copy_from_the_image(h: Hoist) -> None:
    assert h("volume", "create", "--label", "team=a", "conf").out.strip() == "conf"
    assert h("volume", "create", "conf").out.strip() == "conf"        # exists: the same one
    info = json.loads(h("volume", "inspect", "conf").out)[0]
    assert info["Name"] == "conf" and info["Driver"] == "local" and info["Labels"] == {"team": "a"}
    data = Path(info["Mountpoint"])
    assert data.is_dir() and list(data.iterdir()) == []
    assert h("volume", "inspect", "-f", "{{.Name}} {{.Scope}}", "conf").out == "conf local\n"

    # New and empty: filled with what the image has at /srv/app, owners and modes kept.
    out = h("run", "--name", "first", "-v", "conf:/srv/app", "busybox", "sh", "-c",
            "cat /srv/app/conf; echo written > /srv/app/new").out
    assert out == "image-conf\n"
    st = os.stat(data / "conf")
    assert (st.st_uid, st.st_mode & 0o777) == (1000, 0o640)
    assert os.stat(data).st_uid == 1000 and os.readlink(data / "sub" / "link") == "/etc/shadow-nowhere"
    # Not empty any more: a second container sees the first one's writes, nothing re-copied.
    assert h("run", "--rm", "-v", "conf:/srv/app", "busybox", "cat", "/srv/app/new").out == "written\n"

    listed = h("volume", "ls").out.splitlines()
    assert listed[0].split() == ["DRIVER", "VOLUME", "NAME"] and listed[1].split() == ["local", "conf"]
    assert h("volume", "ls", "--filter", "label=team=a", "-q").out.split() == ["conf"]
    assert h("volume", "ls", "--filter", "dangling=true", "-q").out.split() == []
    assert h("volume", "ls", "--format", "{{.Name}}:{{.Driver}}").out == "conf:local\n"

    one_line(h("volume", "rm", "conf", ok=False), "volume is in use")
    assert data.is_dir()
    h("rm", "first")
    assert h("volume", "ls", "--filter", "dangling=true", "-q").out.split() == ["conf"]
    assert h("volume", "rm", "conf").out.strip() == "conf"
    assert _volumes(h) == [] and not data.exists()
    one_line(h("volume", "rm", "conf", ok=False), "no such volume: conf")
    assert h("volume", "rm", "-f", "conf").code == 0


def test_copy_resolves_inside_the_image_and_nocopy(h: Hoist) -> None:
    # /data in the image is a symlink to /etc: the copy is of the image's /etc, never the host's.
    h("run", "--rm", "-v", "etcvol:/data", "busybox", "true")
    data = Path(json.loads(h("volume", "inspect", "etcvol").out)[0]["Mountpoint"])
    assert (data / "passwd").read_text() == PASSWD
    h("run", "--rm", "-v", "empty:/srv/app:nocopy", "busybox", "true")
    assert list(Path(json.loads(h("volume", "inspect", "empty").out)[0]["Mountpoint"]).iterdir()) == []
    h("run", "--rm", "--mount", "type=volume,source=empty2,target=/srv/app,volume-nocopy", "busybox", "true")
    assert list(Path(json.loads(h("volume", "inspect", "empty2").out)[0]["Mountpoint"]).iterdir()) == []


def test_anonymous_volumes_and_prune(h: Hoist) -> None:
    h("run", "--rm", "-v", "/scratch", "busybox", "sh", "-c", "echo x > /scratch/f")
    assert _volumes(h) == []                                # --rm took its anonymous volume along
    h("run", "--name", "keep", "-v", "/scratch", "busybox", "true")
    anon = _volumes(h)
    assert len(anon) == 1 and len(anon[0]) == 64
    h("volume", "create", "named")
    out = h("volume", "prune", "-f").out
    assert "Total reclaimed space" in out and sorted(_volumes(h)) == sorted(anon + ["named"])  # in use
    h("rm", "-v", "keep")
    assert _volumes(h) == ["named"]
    h("run", "--name", "again", "-v", "/scratch", "busybox", "true")
    h("rm", "again")                                        # without -v the volume stays...
    assert len(_volumes(h)) == 2
    out = h("volume", "prune", "-f").out                    # ...until pruned (anonymous only)
    assert "Deleted Volumes:" in out and _volumes(h) == ["named"]
    h("volume", "prune", "-a", "-f")
    assert _volumes(h) == []


def test_mount_tmpfs_read_only_and_volumes_from(h: Hoist, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("bound\n")
    assert h("run", "--rm", "--mount", f"type=bind,source={src},target=/b,readonly", "busybox",
             "sh", "-c", "cat /b/f; touch /b/g 2>/dev/null || echo ro").out == "bound\nro\n"
    one_line(h("run", "--rm", "--mount", f"type=bind,source={tmp_path}/nope,target=/b", "busybox", "true",
                ok=False), "bind source path does not exist")
    assert not (tmp_path / "nope").exists()

    # --tmpfs: noexec,nosuid,nodev and a bounded size by default; --mount type=tmpfs with a size.
    out = h("run", "--rm", "--tmpfs", "/t", "busybox", "sh", "-c",
            "mount | grep ' /t '; printf '#!/bin/sh\\necho ran\\n' > /t/x; chmod +x /t/x; /t/x || echo noexec").out
    assert "noexec" in out and "nosuid" in out and "nodev" in out and "size=65536k" in out
    assert out.rstrip().endswith("noexec")
    out = h("run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "busybox", "sh", "-c",
            "dd if=/dev/zero of=/t/big bs=1024 count=2048 2>&1; ls -l /t/big").out
    assert "No space left on device" in out
    assert h("run", "--rm", "--tmpfs", "/t:exec,size=2m", "busybox", "sh", "-c",
             "printf '#!/bin/sh\\necho ran\\n' > /t/x; chmod +x /t/x; /t/x").out == "ran\n"

    res = h("run", "--rm", "--read-only", "--tmpfs", "/tmp", "busybox", "sh", "-c",
            "touch /tmp/ok && echo tmp-ok; touch /root-file || echo root-ro")
    assert res.out == "tmp-ok\nroot-ro\n", res

    h("run", "--name", "owner", "-v", "shared:/data2", "-v", f"{src}:/host", "busybox", "sh", "-c",
      "echo from-owner > /data2/f")
    out = h("run", "--rm", "--volumes-from", "owner:ro", "busybox", "sh", "-c",
            "cat /data2/f /host/f; touch /data2/g 2>/dev/null || echo ro").out
    assert out == "from-owner\nbound\nro\n"
    assert h("run", "--rm", "--volumes-from", "owner", "busybox", "sh", "-c",
             "touch /data2/g && echo rw").out == "rw\n"


def test_bad_mounts_are_one_line_and_leave_no_volume(h: Hoist) -> None:
    for flags, words in ((["-v", "bad!name:/x"], ["invalid characters for a local volume name"]),
                         (["-v", "/anon", "-v", "a:/x:sideways"], ["invalid mode 'sideways'"]),
                         (["-v", "/anon", "--mount", "type=nfs,target=/x"], ["invalid --mount type"]),
                         (["-v", "/anon", "-v", "named:/anon"], ["duplicate mount point: /anon"]),
                         (["--mount", "type=volume,source=v"], ["target is required"]),
                         (["--tmpfs", "/t:size=lots"], ["invalid size"]),
                         (["--tmpfs", "relative"], ["absolute path"]),
                         (["-v", "/proc/x"], ["mounting into /proc is not allowed"]),
                         (["--volumes-from", "nosuch"], ["no such container"])):
        res = h("run", "--rm", *flags, "busybox", "true", ok=False)
        one_line(res, *words)
        assert res.code == 125
        assert _volumes(h) == [], flags
    assert not (h.root / "containers").exists() or list((h.root / "containers").iterdir()) == []
