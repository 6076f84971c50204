"""The forms images take on the way through hoist: a docker-archive's uncompressed layers are
gzipped on push (as docker pushes them), and the README's skopeo commands read the local store
for images with OCI and with Docker media types."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from registry import routes
from storage import mediatypes as mt
from storage.digest import Digest
from tests.cli.helpers import Hoist
from tests.images import build_image, files_layer, random_layers, write_image
from tests.peers import need_tool, skopeo
from tests.registry.http import ServerProcess


def _registry_manifest(server: ServerProcess, repo: str, tag: str) -> dict:
    res = server.client().request("GET", routes.manifest(repo, tag),
                                  headers={"Accept": f"{mt.OCI_MANIFEST}, {mt.DOCKER_MANIFEST}"})
    assert res.status == 200, res.status
    return json.loads(res.body)


def test_push_of_a_loaded_docker_archive_compresses_its_layers(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "registry")
    try:
        ref = f"{server.addr}/team/loaded:1"
        src = Hoist(tmp_path / "src")
        # Compressible layers (text), as real images are; saved as docker 25+ does: uncompressed.
        write_image(src.images, ref, [{"etc/words": b"hoist compresses layers on push\n" * 20000},
                                      *random_layers(1, 1 << 20)])
        archive = tmp_path / "img.tar"
        src("save", "-o", str(archive), ref)
        h = Hoist(tmp_path / "h")
        h("load", "-i", str(archive))
        before = json.loads(h("inspect", ref).out)[0]
        local = h.layout().manifest(h.layout().find(ref).descriptor)
        assert {d.media_type for d in local.layers} == {mt.OCI_LAYER}

        out = h("push", ref).out
        pushed = _registry_manifest(server, "team/loaded", "1")
        assert [d["mediaType"] for d in pushed["layers"]] == [mt.OCI_LAYER_GZIP] * 2
        plain_sizes = [d.size for d in local.layers]
        assert pushed["layers"][0]["size"] < plain_sizes[0] // 10
        # The config (so the diff_ids and the image id) is the one loaded.
        assert pushed["config"]["digest"] == before["Id"]
        after = json.loads(h("inspect", ref).out)[0]
        assert after["Id"] == before["Id"] and after["RootFS"] == before["RootFS"]
        assert after["Descriptor"]["digest"] in out
        # The store keeps the compressed form: a second push compresses and uploads nothing.
        again = h("push", ref).out
        assert out.lower().count("pushed") >= 3  # two layers and the config went up
        assert after["Descriptor"]["digest"] in again and "pushed" not in again.lower()
        # What was pushed pulls and runs as any image: its layers unpack to the same diff_ids.
        other = Hoist(tmp_path / "other")
        other("pull", ref)
        assert json.loads(other("inspect", ref).out)[0]["RootFS"] == before["RootFS"]
        for layer in pushed["layers"]:
            assert other.layout().has_blob(Digest.parse(layer["digest"]))
    finally:
        server.stop()


def test_readme_skopeo_commands_on_the_local_store(hoist: Hoist, tmp_path: Path) -> None:
    """README: ``skopeo inspect oci:$HOIST_ROOT/images:REF`` for OCI-typed images, and
    ``hoist save -o app.tar REF && skopeo inspect docker-archive:app.tar`` for any."""
    need_tool("skopeo")
    layout = hoist.layout()
    oci_ref, docker_ref = "127.0.0.1:5000/team/app:1.4", "127.0.0.1:5000/team/dockerish:1.4"
    oci = build_image(layout, oci_ref, [files_layer({"a": b"oci"})])
    build_image(layout, docker_ref, [files_layer({"a": b"docker"})], docker_types=True)
    info = json.loads(skopeo("inspect", f"oci:{hoist.images}:{oci_ref}").stdout)
    assert info["Digest"] == str(oci.digest)
    # skopeo 1.9 refuses Docker-typed entries of an OCI layout's index (it says so):
    res = subprocess.run([need_tool("skopeo"), "inspect", f"oci:{hoist.images}:{docker_ref}"],
                         capture_output=True, text=True)
    assert res.returncode != 0
    archive = tmp_path / "app.tar"
    hoist("save", "-o", str(archive), docker_ref)
    info = json.loads(skopeo("inspect", f"docker-archive:{archive}").stdout)
    config = json.loads(hoist("inspect", docker_ref).out)[0]
    assert info["Layers"] == config["RootFS"]["diff_ids"]
