"""The client of docker-compose.test.yml: an image written into a fresh local store, pushed through
registry-1 with token auth, pulled through registry-2 into another store, compared by digest."""

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile

from storage import mediatypes as mt
from storage.layout import ImageLayout
from storage.reference import parse_reference

USER, PASSWORD = "ci", "ci-password"
REF = "ci/roundtrip:1"


def hoist(root, *args, stdin=None):
    env = dict(os.environ, HOIST_ROOT=root, DOCKER_CONFIG=root + "/docker")
    res = subprocess.run(["hoist", *args], env=env, input=stdin, capture_output=True, text=True)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    if res.returncode != 0:
        sys.exit(f"hoist {' '.join(args)} failed ({res.returncode})")
    return res.stdout


def make_image(root, ref):
    layout = ImageLayout(root + "/images").init()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"hello through two replicas on S3\n"
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    layer_digest = layout.put_blob(layer)
    config = layout.put_json({"architecture": "amd64", "os": "linux", "config": {},
                              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}, mt.OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config.to_json(),
                "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": str(layer_digest), "size": len(layer)}]}
    layout.tag(ref, layout.put_json(manifest, mt.OCI_MANIFEST))


def main():
    a, b = "/tmp/client-a", "/tmp/client-b"
    push_ref, pull_ref = f"registry-1:5000/{REF}", f"registry-2:5000/{REF}"
    make_image(a, str(parse_reference(push_ref)))
    for root, registry in ((a, "registry-1:5000"), (b, "registry-2:5000")):
        hoist(root, "login", registry, "--insecure", "-u", USER, "--password-stdin", stdin=PASSWORD)
    pushed = hoist(a, "push", "--insecure", "-q", push_ref).strip().splitlines()[-1]
    hoist(b, "pull", "--insecure", "-q", pull_ref)
    pulled = str(ImageLayout(b + "/images").find(pull_ref).descriptor.digest)
    if pulled != pushed:
        sys.exit(f"pulled image differs: pushed {pushed}, pulled {pulled}")
    print(f"round trip ok: {pushed}")


if __name__ == "__main__":
    main()
