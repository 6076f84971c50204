"""A tiny synchronous HTTP client for driving a registry over loopback in tests.

Paths come from ``registry.routes``; this only sends requests and reads responses.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from registry import routes
from tests.peers import free_port, stop_process, wait_for_port


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> Any:
        return json.loads(self.body)

    def error_codes(self) -> list[str]:
        return [e["code"] for e in self.json()["errors"]]


class Client:
    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.base = base.rstrip("/")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Response:
        if path.startswith("http"):
            path = path[len(self.base):]
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, resp.headers, data)
        finally:
            conn.close()

    # -- conveniences built on the route table ---------------------------------------------------
    def push_blob(self, name: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = self.request("POST", routes.upload_start(name, digest=digest), data,
                         {"Content-Type": "application/octet-stream"})
        assert r.status == 201, (r.status, r.body)
        return digest

    def push_manifest(self, name: str, ref: str, doc: dict[str, Any] | bytes,
                      media_type: str = "application/vnd.oci.image.manifest.v1+json") -> Response:
        raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return self.request("PUT", routes.manifest(name, ref), raw, {"Content-Type": media_type})


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image(client: Client, name: str, tag: str | None = "latest", layers: int = 1,
          seed: str = "x", artifact_type: str | None = None, subject: dict[str, Any] | None = None,
          config_type: str = "application/vnd.oci.image.config.v1+json") -> tuple[dict[str, Any], str, bytes]:
    """Push a small OCI image (config + layers + manifest); return (manifest doc, digest, raw)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed,
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cdig = client.push_blob(name, config)
    layer_descs = []
    for i in range(layers):
        data = f"layer {seed} {i}".encode() * 10
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": client.push_blob(name, data), "size": len(data)})
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": config_type, "digest": cdig, "size": len(config)},
                           "layers": layer_descs}
    if artifact_type:
        doc["artifactType"] = artifact_type
    if subject:
        doc["subject"] = subject
    raw = json.dumps(doc).encode()
    d = digest_of(raw)
    r = client.push_manifest(name, tag or d, raw)
    assert r.status == 201, (r.status, r.body)
    return doc, d, raw


class ServerProcess:
    """``hoist registry serve`` as a subprocess on a free loopback port."""

    def __init__(self, root: Path, extra: list[str] | None = None, config: Path | None = None) -> None:
        self.root = root
        self.port = free_port()
        args = [sys.executable, "-m", "hoist.cli", "registry", "serve", "--no-access-log",
                "--addr", f"127.0.0.1:{self.port}"]
        if config is not None:
            args += ["--config", str(config)]
        else:
            args += ["--root", str(root)]
        self.log = open(tempfile.mktemp(prefix="hoist-registry-", suffix=".log"), "wb")
        self.proc = subprocess.Popen(args + (extra or []), stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=Path(__file__).resolve().parents[2])
        wait_for_port(self.port, 30, self.proc)
        self.url = f"http://127.0.0.1:{self.port}"
        self.addr = f"127.0.0.1:{self.port}"

    def client(self) -> Client:
        return Client(self.url)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)      # one per server started: they added up under /tmp


def htpasswd_registry(base: Path, users: dict[str, str], realm: str = "hoist-registry") -> ServerProcess:
    """``hoist registry serve`` with Basic auth for ``users`` (name -> password) over ``base/root``."""
    from registry.auth.htpasswd import hash_password
    (base / "htpasswd").write_text("".join(f"{u}:{hash_password(p, 4)}\n" for u, p in users.items()))
    cfg = base / "htpasswd-registry.yml"
    cfg.write_text(f"storage: {{filesystem: {{rootdirectory: {base / 'root'}}}}}\n"
                   f"auth: {{htpasswd: {{realm: {realm}, path: {base / 'htpasswd'}}}}}\n")
    return ServerProcess(base / "root", config=cfg)
