"""``hoist registry serve``: starts with the embedded default, and bad settings are one-line errors."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _hoist(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hoist.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("args,message", [
    (["--addr", "nonsense"], "expected HOST:PORT"),
    (["--addr", "127.0.0.1:99999"], "expected HOST:PORT"),
    (["--config", "/does/not/exist.yml"], "cannot read config"),
    (["--root", "/proc/no/such/root"], "cannot use storage root /proc/no/such/root"),
    (["--tls-cert", "/etc/hostname"], "--tls-cert and --tls-key go together"),
    (["--tls-cert", "/nope.crt", "--tls-key", "/nope.key"], "http.tls: cannot read /nope.crt"),
    (["--tls-cert", "/etc/hostname", "--tls-key", "/etc/hostname"], "http.tls: cannot use /etc/hostname"),
])
def test_bad_settings_are_one_line_errors(args: list[str], message: str) -> None:
    r = _hoist("registry", "serve", *args)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    for text, message in [("storage: [1, 2", "not valid YAML"), ("storage: {s4: {}}", "unknown storage driver"),
                          ("http: {addr: x}", "expected HOST:PORT"), ("- a list", "expected a mapping")]:
        cfg.write_text(text)
        r = _hoist("registry", "serve", "--config", str(cfg))
        assert r.returncode != 0, text
        assert message in r.stderr, (text, r.stderr)
        assert "Traceback" not in r.stderr


def test_port_in_use_is_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _hoist("registry", "serve", "--addr", f"127.0.0.1:{port}", "--root", str(tmp_path))
    assert r.returncode != 0
    assert "cannot listen" in r.stderr and "Traceback" not in r.stderr


def test_serves_with_a_config_file(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"version: 0.1\nhttp: {{addr: 127.0.0.1:{port}}}\n"
                   f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'root'}}}, delete: {{enabled: false}}}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "hoist.cli", "registry", "serve", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        from registry import routes
        from tests.registry.http import Client
        c = Client(f"http://127.0.0.1:{port}")
        d = c.push_blob("a/b", b"x")
        r = c.request("DELETE", routes.blob("a/b", d))
        assert r.status == 405 and r.error_codes() == ["UNSUPPORTED"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_automatic_crossmount_can_be_turned_off(tmp_path: Path) -> None:
    from registry import routes
    from tests.registry.http import Client, ServerProcess

    cfg = tmp_path / "c.yml"
    cfg.write_text(f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'root'}}}, automaticcrossmount: false}}\n")
    server = ServerProcess(tmp_path / "root", config=cfg)
    try:
        c = Client(server.url)
        d = c.push_blob("src/repo", b"blob")
        assert c.request("POST", routes.upload_start("dst/repo", mount=d)).status == 202
        assert c.request("POST", routes.upload_start("dst/repo", mount=d, from_repo="src/repo")).status == 201
    finally:
        server.stop()
