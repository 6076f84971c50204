"""Connection timeouts over raw loopback sockets: idle connections and dribbled headers are
closed; a slow upload body that keeps sending is not. No timed assertions: each test waits for
the server to close (recv returns b"") with a generous safety timeout on the socket."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import routes
from tests.registry.http import ServerProcess

SAFETY = 60.0  # only so a broken server fails the test instead of hanging it


def _server(tmp_path: Path, http: str) -> ServerProcess:
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'root'}}}}}\nhttp: {http}\n")
    return ServerProcess(tmp_path / "root", config=cfg)


@pytest.fixture
def short_timeouts(tmp_path: Path) -> Iterator[ServerProcess]:
    server = _server(tmp_path, "{idletimeout: 1s, readheadertimeout: 1s}")
    yield server
    server.stop()


@pytest.fixture
def header_timeout_only(tmp_path: Path) -> Iterator[ServerProcess]:
    """A long idle timeout, so only the header-read timeout can close a dribbling client."""
    server = _server(tmp_path, "{idletimeout: 1h, readheadertimeout: 1s}")
    yield server
    server.stop()


def _connect(server: ServerProcess) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=SAFETY)
    return s


def _closed_by_server(s: socket.socket) -> bool:
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_idle_connections_are_closed(short_timeouts: ServerProcess) -> None:
    socks = [_connect(short_timeouts) for _ in range(50)]
    try:
        assert all(_closed_by_server(s) for s in socks)
    finally:
        for s in socks:
            s.close()


def test_a_kept_alive_connection_is_closed_once_idle(short_timeouts: ServerProcess) -> None:
    s = _connect(short_timeouts)
    s.sendall(f"GET {routes.base()} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    assert _closed_by_server(s)
    s.close()


def test_headers_dribbled_byte_by_byte_are_cut_off(header_timeout_only: ServerProcess) -> None:
    c = header_timeout_only.client()
    assert c.request("GET", routes.base()).status == 200
    s = _connect(header_timeout_only)
    s.settimeout(0.3)
    head = f"GET {routes.base()} HTTP/1.1\r\nHost: x\r\n" + "X-Pad: " + "a" * 200
    closed = False
    try:
        for ch in head:  # 0.3 s per byte: well past the 1 s header timeout long before the end
            try:
                s.sendall(ch.encode())
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            try:
                if s.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
    finally:
        s.close()
    assert closed
    # Not idle-closed: a connection that is between requests, not dribbling, stays open.
    quiet = _connect(header_timeout_only)
    quiet.settimeout(3)
    assert not _closed_by_server(quiet)
    quiet.sendall(f"GET {routes.base()} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert quiet.recv(65536).startswith(b"HTTP/1.1 200")
    quiet.close()


def test_a_slow_upload_body_that_keeps_sending_survives(short_timeouts: ServerProcess) -> None:
    c = short_timeouts.client()
    r = c.request("POST", routes.upload_start("slow/app"))
    assert r.status == 202
    loc = r.header("Location")
    body = b"0123456789" * 4
    s = _connect(short_timeouts)
    s.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode())
    for i in range(0, len(body), 4):  # ~3 s in all: longer than both timeouts
        s.sendall(body[i:i + 4])
        time.sleep(0.3)
    reply = s.recv(65536)
    s.close()
    assert reply.startswith(b"HTTP/1.1 202"), reply[:200]
    d = "sha256:" + hashlib.sha256(body).hexdigest()
    r = c.request("PUT", routes.upload("slow/app", loc.rsplit("/", 1)[1], digest=d))
    assert r.status == 201
