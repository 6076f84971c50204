"""Real clients against ``hoist registry serve``: skopeo, the Docker engine, and CNCF Distribution
sharing one storage root with hoist."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import blob_digests, busybox_files, manifest_of, random_layers, write_image
from tests.peers import Distribution, Dockerd, skopeo
from tests.registry.http import ServerProcess


@pytest.fixture
def hoist_registry(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "hoist-root")
    yield server
    server.stop()


@pytest.fixture
def source_layout(tmp_path: Path) -> Path:
    layout = tmp_path / "src"
    layers = random_layers(3, 300_000, seed=7) + [{"etc/hello.txt": b"hello from hoist\n"}]
    write_image(layout, "app", layers, {"Cmd": ["/bin/sh"]})
    return layout


def test_skopeo_copy_in_and_out_is_byte_identical(hoist_registry: ServerProcess, source_layout: Path,
                                                  tmp_path: Path) -> None:
    dest = f"docker://{hoist_registry.addr}/team/app:1.0"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{source_layout}:app", dest)
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", dest, f"oci:{out}:app")
    src_digest, src_raw = manifest_of(source_layout, "app")
    out_digest, out_raw = manifest_of(out, "app")
    assert out_digest == src_digest and out_raw == src_raw
    assert blob_digests(out) == blob_digests(source_layout)
    for d in blob_digests(out):
        hexd = d.split(":")[1]
        assert (out / "blobs/sha256" / hexd).read_bytes() == (source_layout / "blobs/sha256" / hexd).read_bytes()


def test_skopeo_inspect_list_tags_delete(hoist_registry: ServerProcess, source_layout: Path) -> None:
    base = f"docker://{hoist_registry.addr}/team/app"
    for tag in ("1.0", "1.1", "latest"):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{source_layout}:app", f"{base}:{tag}")
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"{base}:1.0").stdout)
    assert info["Digest"] == manifest_of(source_layout, "app")[0]
    assert len(info["Layers"]) == 4
    assert info["Os"] == "linux" and info["Architecture"] == "amd64"
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"{base}:1.0").stdout
    assert raw == manifest_of(source_layout, "app")[1]
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", base).stdout)["Tags"]
    assert sorted(tags) == ["1.0", "1.1", "latest"]
    # skopeo deletes by digest: every tag on that manifest goes with it.
    skopeo("delete", "--tls-verify=false", f"{base}:1.0")
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", base).stdout)["Tags"]
    assert tags == []


def test_docker_push_and_pull(hoist_registry: ServerProcess, dockerd: Dockerd, tmp_path: Path) -> None:
    layout = tmp_path / "bb"
    write_image(layout, "bb", [busybox_files(), {"etc/motd": b"pushed by docker\n"}], {"Cmd": ["/bin/sh"]})
    archive = tmp_path / "bb.tar"
    skopeo("copy", f"oci:{layout}:bb", f"docker-archive:{archive}:hoist-test/bb:1")
    dockerd("load", "-i", str(archive))
    ref = f"{hoist_registry.addr}/team/bb:1"
    dockerd("tag", "hoist-test/bb:1", ref)
    dockerd("push", ref)
    image_id = dockerd("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip()
    pushed_digest = dockerd("image", "inspect", "-f", "{{index .RepoDigests 0}}", ref).stdout.decode().strip()
    dockerd("rmi", ref, "hoist-test/bb:1")
    dockerd("pull", ref)
    assert dockerd("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip() == image_id
    assert dockerd("image", "inspect", "-f", "{{index .RepoDigests 0}}", ref).stdout.decode().strip() == pushed_digest
    out = dockerd("run", "--rm", "--network", "none", ref, "cat", "/etc/motd").stdout
    assert out == b"pushed by docker\n"
    dockerd("rmi", ref)


def test_distribution_root_is_served_by_hoist_and_back(source_layout: Path, tmp_path: Path) -> None:
    root = tmp_path / "shared-root"
    dist = Distribution(root, tmp_path).start()
    try:
        skopeo("copy", "--dest-tls-verify=false", f"oci:{source_layout}:app", f"docker://{dist.addr}/by/distribution:1")
    finally:
        dist.stop()
    hoist = ServerProcess(root)
    try:
        out = tmp_path / "from-hoist"
        skopeo("copy", "--src-tls-verify=false", f"docker://{hoist.addr}/by/distribution:1", f"oci:{out}:app")
        assert manifest_of(out, "app") == manifest_of(source_layout, "app")
        tags = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{hoist.addr}/by/distribution").stdout)
        assert tags["Tags"] == ["1"]
        other = tmp_path / "other"
        write_image(other, "o", random_layers(2, 50_000, seed=99))
        skopeo("copy", "--dest-tls-verify=false", f"oci:{other}:o", f"docker://{hoist.addr}/by/hoist:2")
    finally:
        hoist.stop()
    dist = Distribution(root, tmp_path).start()
    try:
        back = tmp_path / "from-distribution"
        skopeo("copy", "--src-tls-verify=false", f"docker://{dist.addr}/by/hoist:2", f"oci:{back}:o")
        assert manifest_of(back, "o") == manifest_of(other, "o")
        skopeo("copy", "--src-tls-verify=false", f"docker://{dist.addr}/by/distribution:1", f"oci:{back}:app")
        catalog = dist_catalog(dist)
        assert catalog == ["by/distribution", "by/hoist"]
    finally:
        dist.stop()


def dist_catalog(dist: Distribution) -> list[str]:
    from registry import routes
    from tests.registry.http import Client
    return Client(dist.url).request("GET", routes.catalog()).json()["repositories"]


def test_docker_and_skopeo_with_token_auth(dockerd: Dockerd, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from registry.auth.htpasswd import hash_password
    from registry.auth.tokens import generate_key

    (tmp_path / "key.pem").write_bytes(generate_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "htpasswd").write_text(f"ci:{hash_password('ci-pass', 4)}\n")
    cfg = tmp_path / "c.yml"
    cfg.write_text(json.dumps({
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}},
        "auth": {"token": {"signingkey": str(tmp_path / "key.pem"), "htpasswd": str(tmp_path / "htpasswd"),
                           "acl": [{"account": "ci", "name": "*", "actions": ["*"]},
                                   {"account": "", "name": "*", "actions": ["pull"]}]}}}))
    server = ServerProcess(tmp_path / "root", config=cfg)
    try:
        layout = tmp_path / "bb"
        write_image(layout, "bb", [busybox_files()], {"Cmd": ["/bin/sh"]})
        ref = f"{server.addr}/team/auth:1"
        # skopeo without credentials may pull but not push.
        with pytest.raises(AssertionError):
            skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:bb", f"docker://{ref}")
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "ci:ci-pass", f"oci:{layout}:bb", f"docker://{ref}")
        skopeo("inspect", "--tls-verify=false", f"docker://{ref}")
        # docker login / pull / push with the token flow.
        bad = dockerd("login", "-u", "ci", "--password-stdin", server.addr, input=b"wrong\n", check=False)
        assert bad.returncode != 0
        dockerd("login", "-u", "ci", "--password-stdin", server.addr, input=b"ci-pass\n")
        dockerd("pull", ref)
        dockerd("tag", ref, f"{server.addr}/team/auth:2")
        dockerd("push", f"{server.addr}/team/auth:2")
        tags = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{server.addr}/team/auth").stdout)
        assert sorted(tags["Tags"]) == ["1", "2"]
        dockerd("logout", server.addr)
        dockerd("rmi", ref, f"{server.addr}/team/auth:2")
    finally:
        server.stop()
