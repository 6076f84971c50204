"""``hoist build --output``: each output read by the tool it is for (``skopeo inspect oci:``,
``umoci unpack``, ``docker load``, a directory walk and ``tarfile``), and destinations that
exist and are not what the output writes refused with nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.cli.conftest import busybox_hoist
from tests.cli.helpers import REPO_ROOT, Hoist
from tests.peers import Dockerd, need_tool, skopeo

EPOCH = "1700000000"
DOCKERFILE = """\
FROM busybox
RUN mkdir -p /d && echo hi > /d/f && ln -s f /d/l && ln /d/f /d/h && chmod 600 /d/f \\
    && chown 1000:50 /d/f && rm /bin/date
COPY a.txt /a.txt
CMD ["cat", "/a.txt"]
"""


@pytest.fixture
def h(tmp_path: Path) -> Hoist:
    return busybox_hoist(tmp_path, EPOCH)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    path = tmp_path / "ctx"
    path.mkdir()
    (path / "Dockerfile").write_text(DOCKERFILE)
    (path / "a.txt").write_text("from the context\n")
    return path


def tree(root: Path) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, content or link target, hardlink group size)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                what: object = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                what = ("file", path.read_bytes(), st.st_nlink)
            else:
                what = (stat.S_IFMT(st.st_mode),)
            out[rel] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what)
    return out


def tar_tree(path: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if m.issym():
                what: object = ("link", m.linkname)
            elif m.isfile() or m.islnk():
                what = ("file", m.linkname if m.islnk() else tar.extractfile(m).read())  # type: ignore[union-attr]
            else:
                what = (m.type,)
            out[m.name] = (m.mode & 0o7777, m.uid, m.gid, what)
    return out


def check_rootfs(root: Path) -> None:
    assert (root / "a.txt").read_text() == "from the context\n"
    assert (root / "bin" / "busybox").read_bytes() == Path("/usr/bin/busybox").read_bytes()
    f = (root / "d" / "f").stat()
    assert (stat.S_IMODE(f.st_mode), f.st_uid, f.st_gid, f.st_nlink) == (0o600, 1000, 50, 2)
    assert os.readlink(root / "d" / "l") == "f"
    assert not (root / "bin" / "date").exists() and not (root / "bin" / ".wh.date").exists()


def test_local_output_is_the_root_filesystem_umoci_unpacks_from_the_oci_output(
        h: Hoist, ctx: Path, tmp_path: Path) -> None:
    umoci = need_tool("umoci")
    local, oci = tmp_path / "local", tmp_path / "oci"
    r = h("build", "-t", "out:1", "-o", f"type=local,dest={local}", "-o", f"type=oci,dest={oci},tar=false", str(ctx))
    image_id = r.out.strip()
    check_rootfs(local)
    # No type=image output: nothing is tagged in the local store (as BuildKit's exporters).
    assert h("inspect", "out:1", ok=False).code != 0
    info = json.loads(skopeo("inspect", f"oci:{oci}:1").stdout)
    assert info["Digest"].startswith("sha256:") and len(info["Layers"]) == 3
    config = json.loads(skopeo("inspect", "--config", "--raw", f"oci:{oci}:1").stdout)
    assert config["config"]["Cmd"] == ["cat", "/a.txt"]
    raw_config = skopeo("inspect", "--config", "--raw", f"oci:{oci}:1").stdout
    assert "sha256:" + hashlib.sha256(raw_config).hexdigest() == image_id
    bundle = tmp_path / "bundle"
    res = subprocess.run([umoci, "unpack", "--image", f"{oci}:1", str(bundle)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # umoci's rootfs and hoist's local output are the same tree, entry for entry.
    assert tree(local) == tree(bundle / "rootfs")


def test_tar_output_holds_the_local_tree(h: Hoist, ctx: Path, tmp_path: Path) -> None:
    local, out = tmp_path / "local", tmp_path / "rootfs.tar"
    h("build", "-o", f"type=local,dest={local}", "-o", f"type=tar,dest={out}", str(ctx))
    members = tar_tree(out)
    walked = tree(local)
    assert set(members) == set(walked)
    for name, (mode, uid, gid, what) in walked.items():
        t_mode, t_uid, t_gid, t_what = members[name]
        assert (t_mode, t_uid, t_gid) == (mode, uid, gid), name
        if what[0] == "file" and t_what[1] and isinstance(t_what[1], str):
            assert walked[t_what[1]][3][1] == what[1]          # a hardlink to the same content
        elif what[0] in ("file", "link"):
            assert t_what[:2] == what[:2], name


def test_tar_output_to_stdout(h: Hoist, ctx: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "hoist.cli", "build", "-q", "-o", "-", str(ctx)],
                          capture_output=True, env=h.env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode().strip().startswith("sha256:")       # the id moved to stderr
    out = tmp_path / "stdout.tar"
    out.write_bytes(proc.stdout)
    with tarfile.open(out) as tar:
        assert tar.extractfile("a.txt").read() == b"from the context\n"  # type: ignore[union-attr]


def test_oci_archive_output_reads_in_skopeo(h: Hoist, ctx: Path, tmp_path: Path) -> None:
    out = tmp_path / "image.tar"
    image_id = h("build", "-t", "arch:2", "-o", f"type=oci,dest={out}", str(ctx)).out.strip()
    info = json.loads(skopeo("inspect", f"oci-archive:{out}:2").stdout)
    assert len(info["Layers"]) == 3
    copied = tmp_path / "copied"
    skopeo("copy", f"oci-archive:{out}:2", f"oci:{copied}:x")      # verifies every blob's digest
    index = json.loads((copied / "index.json").read_text())
    manifest = json.loads((copied / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    assert manifest["config"]["digest"] == image_id


def test_docker_output_loads_into_docker(h: Hoist, ctx: Path, tmp_path: Path, dockerd: Dockerd) -> None:
    out = tmp_path / "docker.tar"
    image_id = h("build", "-t", "hoist-out/docker:1", "-o", f"type=docker,dest={out}", str(ctx)).out.strip()
    loaded = dockerd("load", "-i", str(out)).stdout.decode()
    try:
        assert "hoist-out/docker:1" in loaded
        assert dockerd("inspect", "--format", "{{.Id}}", "hoist-out/docker:1").stdout.decode().strip() == image_id
        run = dockerd("run", "--rm", "--network", "none", "hoist-out/docker:1")
        assert run.stdout.decode() == "from the context\n"
    finally:
        dockerd("rmi", "-f", "hoist-out/docker:1", check=False)


def test_image_output_and_push_false_is_the_default(h: Hoist, ctx: Path) -> None:
    image_id = h("build", "-t", "img:1", "-o", "type=image", str(ctx)).out.strip()
    layout = h.layout()
    assert str(layout.image_id(layout.find("img:1").descriptor)) == image_id


# -- destinations that are not what the output writes -------------------------------------------

@pytest.mark.parametrize(("kind", "output"), [
    (kind, output) for kind in ("symlink", "fifo", "device", "directory") for output in ("oci", "docker", "tar")
    if (kind, output) != ("directory", "oci")])     # type=oci into an existing directory writes a layout there
def test_file_output_refuses_what_is_not_a_regular_file(h: Hoist, ctx: Path, tmp_path: Path, kind: str,
                                                        output: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    dest = tmp_path / "dest"
    if kind == "symlink":
        dest.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(dest)
    elif kind == "device":
        os.mknod(dest, 0o600 | stat.S_IFCHR, os.makedev(1, 3))     # /dev/null's numbers
    else:
        dest.mkdir()
    r = h("build", "-o", f"type={output},dest={dest}", str(ctx), ok=False)
    assert r.code != 0
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "refusing to write over it" in lines[0], r.err
    assert "#1" not in r.err                        # refused before anything was built
    assert victim.read_text() == "keep me\n"
    assert os.path.lexists(dest) and sorted(os.listdir(tmp_path)).count("dest") == 1
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".dest.hoist-")]


@pytest.mark.parametrize("kind", ["symlink", "file", "fifo", "nonempty"])
def test_local_output_refuses_what_is_not_an_empty_directory(h: Hoist, ctx: Path, tmp_path: Path,
                                                             kind: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "dest"
    if kind == "symlink":
        dest.symlink_to(elsewhere)
    elif kind == "file":
        dest.write_text("x")
    elif kind == "fifo":
        os.mkfifo(dest)
    else:
        dest.mkdir()
        (dest / "old").write_text("old")
    r = h("build", "-o", f"type=local,dest={dest}", str(ctx), ok=False)
    assert r.code != 0 and len(r.err.strip().splitlines()) == 1, r.err
    assert os.listdir(elsewhere) == []
    if kind == "nonempty":
        assert os.listdir(dest) == ["old"]


def test_existing_empty_directory_and_regular_file_are_replaced(h: Hoist, ctx: Path, tmp_path: Path) -> None:
    local, tar, oci = tmp_path / "local", tmp_path / "out.tar", tmp_path / "oci"
    local.mkdir()
    oci.mkdir()
    tar.write_text("old")
    h("build", "-t", "x:7", "-o", f"type=local,dest={local}", "-o", f"type=tar,dest={tar}",
      "-o", f"type=oci,dest={oci}", str(ctx))
    check_rootfs(local)
    assert tarfile.is_tarfile(tar)
    assert json.loads(skopeo("inspect", f"oci:{oci}:7").stdout)["Digest"].startswith("sha256:")


@pytest.mark.parametrize(("value", "message"), [
    ("type=nope,dest=x", "type must be one of"),
    ("type=local", "needs dest=PATH"),
    ("type=image,dest=x", "has no dest"),
    ("type=tar,dest=x,color=red", "unknown option"),
    ("type=local,dest=-", "cannot go to stdout"),
    ("type=oci,dest=/nonexistent-dir/x.tar", "does not exist"),
])
def test_bad_output_values(h: Hoist, ctx: Path, value: str, message: str) -> None:
    r = h("build", "-o", value, str(ctx), ok=False)
    assert r.code != 0 and message in r.err and len(r.err.strip().splitlines()) == 1, r.err
