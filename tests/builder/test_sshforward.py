"""``--ssh`` parsing (buildx's forms and errors) and the agent relay: every byte both ways, the
socket's owner and mode, the bound on connections relayed at once, a path too long for a socket
address."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.errors import BuilderError
from builder.sshforward import MAX_CONNECTIONS, AgentRelay, SSHSource, parse_ssh


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A unix-socket server that answers each message with it reversed; (path, what it got)."""
    path = str(tmp_path / "up.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    got: list[bytes] = []
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                got.append(data)
                conn.sendall(data[::-1])

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield path, got
    stop.set()
    server.shutdown(socket.SHUT_RDWR)
    server.close()


def test_parse_ssh_forms(tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    key1, key2 = tmp_path / "k1", tmp_path / "k2"
    key1.write_text("k")
    key2.write_text("k")
    env = {"SSH_AUTH_SOCK": str(sock)}
    assert parse_ssh(["default"], env) == {"default": SSHSource("default", socket=str(sock))}
    assert parse_ssh([f"git={key1},{key2}", f"other={sock}"], env) == {
        "git": SSHSource("git", keys=(str(key1), str(key2))), "other": SSHSource("other", socket=str(sock))}
    with pytest.raises(BuilderError, match="invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set"):
        parse_ssh(["default"], {})
    with pytest.raises(BuilderError, match="no such file or socket"):
        parse_ssh([f"x={tmp_path / 'nope'}"], env)
    with pytest.raises(BuilderError, match="is a socket; give one socket or key files"):
        parse_ssh([f"x={key1},{sock}"], env)
    with pytest.raises(BuilderError, match="expected ID"):
        parse_ssh(["=x"], env)
    s.close()


def test_relay_carries_bytes_with_owner_and_mode(tmp_path: Path, upstream: tuple[str, list[bytes]]) -> None:
    path, got = upstream
    # Deeper than a socket address may name (108 bytes): bound through /proc/self/fd.
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    relay = AgentRelay(deep / "relay.sock", path, uid=1000, gid=50, mode=0o660)
    try:
        st = os.stat(relay.path)
        assert stat.S_ISSOCK(st.st_mode) and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 50, 0o660)
        with socket.socket(socket.AF_UNIX) as c:
            fd = os.open(deep, os.O_PATH)
            c.connect(f"/proc/self/fd/{fd}/relay.sock")
            os.close(fd)
            c.sendall(b"\x00\x00\x00\x01\x0b")
            assert c.recv(100) == b"\x0b\x01\x00\x00\x00"
        assert got == [b"\x00\x00\x00\x01\x0b"]
    finally:
        relay.close()
    assert not any(t.name.startswith("ssh-relay") and t.is_alive() for t in threading.enumerate())


def test_relay_bounds_connections(tmp_path: Path, upstream: tuple[str, list[bytes]]) -> None:
    relay = AgentRelay(tmp_path / "r.sock", upstream[0])
    clients = []
    try:
        for _ in range(MAX_CONNECTIONS + 4):
            c = socket.socket(socket.AF_UNIX)
            c.connect(str(relay.path))
            clients.append(c)
        answered = 0
        for c in clients:
            c.settimeout(30)
            try:
                c.sendall(b"ab")
                answered += c.recv(10) == b"ba"
            except OSError:
                pass
        assert answered == MAX_CONNECTIONS       # the others were closed unanswered
    finally:
        for c in clients:
            c.close()
        relay.close()
