"""A real distribution through ``hoist build``: a debootstrap'd Debian bookworm (minbase) is loaded
into the local store as a docker-archive (``hoist load``), a Dockerfile installs python3 with apt
from Debian's mirror, adds a user, copies an app owned by that user and runs it as that user;
``hoist run --rm`` of the result prints what the app prints.

Slow by nature (debootstrap, then apt over the network): one base for the session, one test.
``debian_base_archive`` and ``DEBIAN_DOCKERFILE`` are also what ``bench/build_bench.py`` builds.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path


from storage.layout import ImageLayout
from storage.reference import parse_reference
from tests.cli.helpers import Hoist
from tests.peers import need_tool

MIRROR = "http://deb.debian.org/debian"
DEBIAN_REF = "debian:bookworm-hoist-test"

DEBIAN_DOCKERFILE = f"""\
FROM {DEBIAN_REF}
RUN apt-get update && apt-get install -y --no-install-recommends python3 \\
    && rm -rf /var/lib/apt/lists/*
RUN useradd -m app
COPY --chown=app:app app.py /home/app/
USER app
CMD ["python3", "/home/app/app.py"]
"""

APP_PY = """\
import getpass, os, pathlib, sys
me = pathlib.Path(__file__)
st = me.stat()
print(f"hello from python {sys.version_info.major}.{sys.version_info.minor} as {getpass.getuser()}")
print(f"uid={os.getuid()} home={os.environ.get('HOME')} app owned by {st.st_uid}:{st.st_gid}")
"""


def debootstrap(rootfs: Path, suite: str = "bookworm") -> Path:
    """``debootstrap --variant=minbase SUITE ROOTFS`` from Debian's mirror."""
    tool = need_tool("debootstrap")
    res = subprocess.run([tool, "--variant=minbase", suite, str(rootfs), MIRROR], capture_output=True,
                         text=True, timeout=1200)
    if res.returncode != 0:
        raise AssertionError(f"debootstrap failed ({res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return rootfs


def debian_base_archive(rootfs: Path, path: Path, ref: str = DEBIAN_REF) -> Path:
    """A docker-archive (``docker save`` format) of ``rootfs`` in one layer, tagged ``ref``: what
    ``docker import`` of a debootstrap'd tree would give. Device nodes, the downloaded .debs and
    apt's package lists are left out (as Debian's own images do)."""
    work = path.parent / (path.name + ".d")
    work.mkdir(parents=True, exist_ok=True)
    layer = work / "layer.tar"
    tar = need_tool("tar")
    res = subprocess.run([tar, "--numeric-owner", "--xattrs", "--sort=name", "-C", str(rootfs),
                          "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
                          "--exclude=./var/cache/apt/archives/*.deb", "--exclude=./var/lib/apt/lists/*",
                          "-cf", str(layer), "."], capture_output=True, text=True)
    if res.returncode != 0:
        raise AssertionError(f"tar failed: {res.stderr}")
    sha = hashlib.sha256()
    with open(layer, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    diff_id = "sha256:" + sha.hexdigest()
    config = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["bash"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "debootstrap --variant=minbase bookworm"}],
    }
    raw_config = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(raw_config).hexdigest() + ".json"
    layer_name = sha.hexdigest() + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]).encode()
    with tarfile.open(path, "w") as out:
        out.add(layer, arcname=layer_name)
        for name, data in ((config_name, raw_config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            out.addfile(info, io.BytesIO(data))
    shutil.rmtree(work)
    return path


def write_debian_project(ctx: Path) -> Path:
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(DEBIAN_DOCKERFILE)
    (ctx / "app.py").write_text(APP_PY)
    return ctx


def test_debian_apt_install_useradd_copy_chown_run_as_user(debian_archive: Path, tmp_path: Path) -> None:
    hoist = Hoist(tmp_path)
    assert DEBIAN_REF in hoist("load", "-i", str(debian_archive), timeout=600).out
    ctx = write_debian_project(tmp_path / "ctx")
    built = hoist("build", "--progress", "plain", "-t", "debian-app:1", str(ctx), timeout=1200)
    assert "Setting up python3" in built.err            # apt's output, streamed by the build

    out = hoist("run", "--rm", "debian-app:1", timeout=120).out
    lines = out.splitlines()
    assert lines[0] == "hello from python 3.11 as app", out
    uid = int(lines[1].split()[0].removeprefix("uid="))
    assert uid >= 1000
    assert lines[1] == f"uid={uid} home=/home/app app owned by {uid}:{uid}", out

    # The result is a Debian with python3 in a layer of its own, the user in /etc/passwd.
    layout = ImageLayout(hoist.images)
    _, manifest = layout.resolve_image(str(parse_reference("debian-app:1")))
    config = layout.config(manifest)
    assert config["config"]["User"] == "app" and config["config"]["Cmd"] == ["python3", "/home/app/app.py"]
    assert len(config["rootfs"]["diff_ids"]) == 4                      # base, apt, useradd, COPY
    listing = hoist("run", "--rm", "debian-app:1", "sh", "-c",
                    "getent passwd app; ls /var/lib/apt/lists | wc -l; dpkg -s python3 | grep Status").out
    assert listing.splitlines() == [f"app:x:{uid}:{uid}::/home/app:/bin/sh", "0",
                                    "Status: install ok installed"], listing
