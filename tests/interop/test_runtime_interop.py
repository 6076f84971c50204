"""Images built by buildah and by docker run under hoist exactly as under ``docker run
--network none`` and ``runc`` (bundle unpacked by umoci).

The images are ``FROM scratch`` with Debian's static busybox copied in (no network to pull a base).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import APPLETS, BUSYBOX, GROUP, PASSWD
from tests.peers import Dockerd, absent, need_tool

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = """FROM scratch
COPY rootfs/ /
ENV GREETING=hello-interop
WORKDIR /work
USER app
CMD ["sh", "-c", "echo $GREETING; id; pwd; cat /etc/message; ls /bin | wc -l; echo $HOME; ls -ld /work"]
"""
# Commands run in each image besides its CMD: (entrypoint override or None, args).
COMMANDS = [
    (None, []),
    (None, ["sh", "-c", "exit 7"]),
    (None, ["sh", "-c", "ls /sys/class/net; echo $$; hostname | wc -c; cat /proc/1/cmdline | wc -c"]),
    ("id", ["-G"]),
]


def _context(base: Path) -> Path:
    ctx = base / "context"
    rootfs = ctx / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    (rootfs / "home" / "app").mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", rootfs / "bin" / applet)
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    (rootfs / "etc" / "message").write_text("built for interop\n")
    os.chown(rootfs / "home" / "app", 1000, 1000)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


def _run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(args), capture_output=True, timeout=300, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {res.returncode}: {res.stderr.decode(errors='replace')}")
    return res


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    base = tmp_path_factory.mktemp("runtime-interop")
    root = base / "hoist"
    (root / "images").mkdir(parents=True)
    yield {"base": base, "root": root, "context": _context(base)}
    subprocess.run(["umount", "-R", str(base / "buildah-root")], capture_output=True)


def _hoist(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOIST_ROOT=str(root), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "hoist.cli", *args], capture_output=True, env=env, timeout=120)


def _build_with_buildah(stores: dict[str, Path], ref: str) -> None:
    buildah = need_tool("buildah")
    storage = ["--root", str(stores["base"] / "buildah-root"), "--runroot", str(stores["base"] / "buildah-run"),
               "--storage-driver", "vfs"]
    _run(buildah, *storage, "bud", "--isolation", "chroot", "-t", "interop:buildah", str(stores["context"]))
    _run(buildah, *storage, "push", "interop:buildah", f"oci:{stores['root'] / 'images'}:{ref}")


def _build_with_docker(stores: dict[str, Path], dockerd: Dockerd, ref: str) -> None:
    skopeo = need_tool("skopeo")
    dockerd("build", "-t", "interop:docker", str(stores["context"]), env={"DOCKER_BUILDKIT": "0"})
    _run(skopeo, "copy", "--src-daemon-host", f"unix://{dockerd.socket}", "docker-daemon:interop:docker",
         f"oci:{stores['root'] / 'images'}:{ref}")


def _load_into_docker(stores: dict[str, Path], dockerd: Dockerd, ref: str, tag: str) -> None:
    skopeo = need_tool("skopeo")
    _run(skopeo, "copy", "--dest-daemon-host", f"unix://{dockerd.socket}",
         f"oci:{stores['root'] / 'images'}:{ref}", f"docker-daemon:{tag}")


def _runc_bundle(stores: dict[str, Path], ref: str, name: str) -> Path:
    umoci = need_tool("umoci")
    bundle = stores["base"] / f"bundle-{name}"
    if not bundle.exists():
        _run(umoci, "unpack", "--image", f"{stores['root'] / 'images'}:{ref}", str(bundle))
    return bundle


def _runc(stores: dict[str, Path], bundle: Path, entrypoint: str | None, args: list[str]) -> tuple[int, str]:
    runc = need_tool("runc")
    config = json.loads((bundle / "config.json").read_text())
    process = config["process"]
    original = json.loads((bundle / "config.orig.json").read_text()) if (bundle / "config.orig.json").exists() \
        else json.loads(json.dumps(config))
    (bundle / "config.orig.json").write_text(json.dumps(original))
    image_args = original["process"]["args"]
    if entrypoint is not None:
        process["args"] = [entrypoint] + args
    elif args:
        process["args"] = args
    else:
        process["args"] = image_args
    process["terminal"] = False
    # umoci leaves the primary group out of additionalGids; docker (and hoist) put it in.
    user = process["user"]
    user["additionalGids"] = sorted({user["gid"], *user.get("additionalGids", [])})
    # runc's default hostname is "umoci-default"; docker and hoist use the short id.
    config["hostname"] = "interop"
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"hoist-interop-{os.getpid()}-{bundle.name}"
    res = subprocess.run([runc, "--root", str(stores["base"] / "runc-state"), "run", "-b", str(bundle), cid],
                         capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    subprocess.run([runc, "--root", str(stores["base"] / "runc-state"), "delete", "-f", cid], capture_output=True)
    return res.returncode, res.stdout.decode()


def _docker(dockerd: Dockerd, tag: str, entrypoint: str | None, args: list[str]) -> tuple[int, str]:
    flags = ["--entrypoint", entrypoint] if entrypoint is not None else []
    res = dockerd("run", "--rm", "--network", "none", "--hostname", "interop", *flags, tag, *args, check=False)
    return res.returncode, res.stdout.decode()


def _hoist_run(stores: dict[str, Path], ref: str, entrypoint: str | None, args: list[str]) -> tuple[int, str]:
    flags = ["--entrypoint", entrypoint] if entrypoint is not None else []
    res = _hoist(stores["root"], "run", "--rm", "--hostname", "interop", *flags, ref, *args)
    assert "Traceback" not in res.stderr.decode(), res.stderr.decode()
    return res.returncode, res.stdout.decode()


@pytest.mark.parametrize("builder", ["buildah", "docker"])
def test_same_output_as_docker_and_runc(builder: str, stores: dict[str, Path], dockerd: Dockerd) -> None:
    if os.geteuid() != 0:
        absent("needs root")
    ref = f"docker.io/library/interop:{builder}"
    if builder == "buildah":
        _build_with_buildah(stores, ref)
        _load_into_docker(stores, dockerd, ref, "interop:from-buildah")
        docker_tag = "interop:from-buildah"
    else:
        _build_with_docker(stores, dockerd, ref)
        docker_tag = "interop:docker"
    bundle = _runc_bundle(stores, ref, builder)
    for entrypoint, args in COMMANDS:
        ours = _hoist_run(stores, f"interop:{builder}", entrypoint, args)
        theirs = _docker(dockerd, docker_tag, entrypoint, args)
        assert ours == theirs, f"{entrypoint} {args}: hoist {ours!r} != docker {theirs!r}"
        if entrypoint is None and not args:
            assert ours[1].startswith("hello-interop\nuid=1000(app) gid=1000(app)")
        runc_out = _runc(stores, bundle, entrypoint, args)
        if "ls /sys/class/net" not in " ".join(args):
            assert ours == runc_out, f"{entrypoint} {args}: hoist {ours!r} != runc {runc_out!r}"
