"""Uploads against the real server: two copies of one chunk sent at once (to two processes on
one root) leave one copy and a 416; a full disk answers the spec's JSON error and corrupts
nothing; a manifest whose layer data is gone is refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import routes
from tests.registry.http import Response, ServerProcess, digest_of, image

# Under the filesystem driver's 1 MiB write buffer: while the first copy streams, the stored
# upload still looks empty, which is what let a second copy at offset 0 through before.
CHUNK = b"c" * (512 << 10)


def _start_patch(server: ServerProcess, location: str, body: bytes, held_back: int) -> socket.socket:
    """Send a PATCH but keep its last ``held_back`` bytes: the request stays in progress."""
    path = location[len(server.url):] if location.startswith("http") else location
    s = socket.create_connection(("127.0.0.1", server.port))
    head = (f"PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\nContent-Range: 0-{len(body) - 1}\r\n\r\n").encode()
    s.sendall(head + body[:len(body) - held_back])
    return s


def _finish(s: socket.socket, rest: bytes) -> int:
    s.sendall(rest)
    status = int(s.makefile("rb").readline().split()[1])
    s.close()
    return status


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    a = ServerProcess(tmp_path / "root")
    b = ServerProcess(tmp_path / "root")
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_duplicate_concurrent_patches_give_one_copy_and_a_416(two_servers: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = two_servers
    ca, cb = a.client(), b.client()
    loc = ca.request("POST", routes.upload_start("dup/app")).header("Location")
    first = _start_patch(a, loc, CHUNK, held_back=10)
    # Make it likely the first copy is being written when the second arrives (the outcome
    # below does not depend on it: the lock and the offset check decide, not timing).
    for _ in range(200):
        if ca.request("GET", loc).status == 204:
            break
    time.sleep(0.3)
    result: dict[str, Response] = {}
    second = threading.Thread(target=lambda: result.setdefault(
        "r", cb.request("PATCH", loc, CHUNK, {"Content-Range": f"0-{len(CHUNK) - 1}",
                                             "Content-Type": "application/octet-stream"})))
    second.start()
    time.sleep(0.3)
    assert _finish(first, CHUNK[-10:]) == 202
    second.join(60)
    assert result["r"].status == 416, result["r"].body
    assert result["r"].error_codes() == ["BLOB_UPLOAD_INVALID"]
    assert ca.request("GET", loc).header("Range") == f"0-{len(CHUNK) - 1}"
    r = cb.request("PUT", f"{loc}?digest={digest_of(CHUNK)}")
    assert r.status == 201, r.body
    got = ca.request("GET", routes.blob("dup/app", digest_of(CHUNK)))
    assert got.status == 200 and got.body == CHUNK


def test_a_patch_repeated_after_it_landed_gets_416(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "root")
    try:
        c = server.client()
        loc = c.request("POST", routes.upload_start("dup/seq")).header("Location")
        hdrs = {"Content-Range": "0-3", "Content-Type": "application/octet-stream"}
        assert c.request("PATCH", loc, b"abcd", hdrs).status == 202
        assert c.request("PATCH", loc, b"abcd", hdrs).status == 416
        assert c.request("GET", loc).header("Range") == "0-3"
    finally:
        server.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)]).returncode:
        from tests.peers import absent
        absent("mounting a tmpfs needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_disk_full_answers_json_and_corrupts_nothing(small_disk: Path) -> None:
    server = ServerProcess(small_disk / "root")
    try:
        c = server.client()
        _, d, raw = image(c, "full/app", "v1")
        big = os.urandom(3 << 20)
        r = c.request("POST", routes.upload_start("full/app", digest=digest_of(big)), big,
                      {"Content-Type": "application/octet-stream"})
        assert r.status >= 500 and r.header("Content-Type", ).startswith("application/json"), r.body
        assert r.error_codes() == ["UNKNOWN"]
        # A chunked upload: the failed chunk is rolled back, the upload stays at its offset.
        loc = c.request("POST", routes.upload_start("full/app")).header("Location")
        hdrs = {"Content-Type": "application/octet-stream"}
        assert c.request("PATCH", loc, b"x" * 1000, {**hdrs, "Content-Range": "0-999"}).status == 202
        r = c.request("PATCH", loc, big, {**hdrs, "Content-Range": f"1000-{1000 + len(big) - 1}"})
        assert r.status >= 500 and r.error_codes() == ["UNKNOWN"]
        status = c.request("GET", loc)
        if status.status == 204:
            assert status.header("Range") == "0-999"
        # Reads keep working and what was stored is intact.
        m = c.request("GET", routes.manifest("full/app", "v1"),
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert m.status == 200 and m.body == raw
        for desc in [json.loads(raw)["config"], *json.loads(raw)["layers"]]:
            b = c.request("GET", routes.blob("full/app", desc["digest"]))
            assert b.status == 200 and digest_of(b.body) == desc["digest"]
        assert not list((small_disk / "root").rglob(".tmp-*"))
    finally:
        server.stop()


def test_manifest_whose_layer_data_is_gone_is_400(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "root")
    try:
        c = server.client()
        doc, _, _ = image(c, "gone/app", "v1")
        layer = doc["layers"][0]["digest"]
        hexd = layer.split(":")[1]
        data = tmp_path / f"root/docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"
        data.unlink()  # the link in the repository stays: what a gc killed mid-sweep leaves
        r = c.push_manifest("gone/app", "v2", dict(doc, annotations={"again": "1"}))
        assert r.status == 400 and r.error_codes() == ["MANIFEST_BLOB_UNKNOWN"]
        assert c.request("GET", routes.manifest("gone/app", "v2")).status == 404
    finally:
        server.stop()
