"""TTYs: the container's console, the monitor's relay and the attach client (``-t``, ``attach``).

Who holds what (runc's console socket and conmon's relay, in Python)::

    caller's terminal ── hoist run -it / attach (raw mode) ──unix socket── monitor ──master── pty
                                                            (attach.sock)   (log, relay)    slave:
                                                                                            PID 1's
                                                                                            0, 1, 2

- PID 1 opens the pty in the container's own devpts instance (``/dev/ptmx`` after the pivot, the
  peer by ``TIOCGPTPEER``), so ``tty`` inside prints ``/dev/pts/N`` of its own ``/dev``; it makes
  the slave its controlling terminal (it leads its own session) and its stdio, and passes the
  master to the monitor over a socket pair (``SCM_RIGHTS``) before it execs.
- The monitor copies the master's output to the container's log and to every attached client,
  client input to the master, and sets the window size a client reports. It serves
  ``<container dir>/attach.sock`` for as long as it lives (bound through ``/proc/self/fd/N`` so
  the 108-byte limit of socket paths never applies).
- A client (``hoist run -it``, ``start -ai``, ``attach``) puts the caller's terminal in raw mode
  and restores it however it leaves, reports the window size at once and on every SIGWINCH, and
  detaches on docker's keys (ctrl-p ctrl-q: "read escape sequence", exit 1, as docker).

Frames on the socket are ``kind (1 byte) + length (4 bytes, big-endian) + payload``: the client
sends ``i`` (input), ``w`` (rows, cols: two 16-bit numbers); the monitor sends ``o`` (output) and
``x`` (the exit code, as decimal text) when the command ends, then closes the connection.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import selectors
import signal
import socket
import struct
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

from runtime.errors import Detached  # defined there, light, for callers that only catch it

SOCKET_NAME = "attach.sock"
DETACH_KEYS = b"\x10\x11"   # ctrl-p ctrl-q
MAX_FRAME = 1 << 20
MAX_CLIENT_BACKLOG = 4 << 20  # bytes queued for one slow client before it is dropped
MAX_INPUT_BACKLOG = 1 << 20   # bytes of input queued for a container that does not read
TIOCGPTPEER = 0x5441          # _IO('T', 0x41)
TIOCSPTLCK = 0x40045431       # _IOW('T', 0x31, int); not in every termios module
_HEADER = struct.Struct(">cI")


_CTRL = ["ctrl-@"] + [f"ctrl-{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + \
    ["ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^", "ctrl-_"]


def parse_detach_keys(text: str) -> bytes:
    """docker's ``--detach-keys``: comma-separated single characters or ``ctrl-<x>``."""
    out = bytearray()
    for key in text.split(","):
        if len(key) == 1:
            out += key.encode()
        elif key in _CTRL:
            out.append(_CTRL.index(key))
        else:
            what = "sequence" if key.startswith("ctrl-") else "character"
            raise ValueError(f"Invalid detach keys ({text}) provided: Unknown {what}: '{key}'")
    return bytes(out)


# -- framing --------------------------------------------------------------------------------------

def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Frames out of a byte stream; a frame longer than MAX_FRAME is a protocol error."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += data
        out = []
        while len(self.buf) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self.buf)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes")
            if len(self.buf) < _HEADER.size + length:
                break
            out.append((kind, bytes(self.buf[_HEADER.size:_HEADER.size + length])))
            del self.buf[:_HEADER.size + length]
        return out


# -- window sizes ---------------------------------------------------------------------------------

def get_size(fd: int) -> tuple[int, int] | None:
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return rows, cols


def set_size(fd: int, rows: int, cols: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def size_frame(size: tuple[int, int]) -> bytes:
    return frame(b"w", struct.pack(">HH", *size))


def parse_size(payload: bytes) -> tuple[int, int] | None:
    """A client's window size; None for a malformed frame and for 0 x 0 (no terminal)."""
    if len(payload) != 4:
        return None
    rows, cols = struct.unpack(">HH", payload)
    return (rows, cols) if rows and cols else None


# -- the container side (PID 1, after the pivot, still root) ---------------------------------------

def setup_console(sock_fd: int, size: tuple[int, int] | None) -> None:
    """Open a pty in the container's devpts, make the slave this session's controlling terminal
    and stdio, and send the master to the monitor on ``sock_fd``."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
        if size is not None:
            set_size(slave, *size)
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for target in (0, 1, 2):
            os.dup2(slave, target)
        os.close(slave)
        sock = socket.socket(fileno=sock_fd)
        try:
            socket.send_fds(sock, [b"m"], [master])
        finally:
            sock.detach()
            os.close(sock_fd)
    finally:
        os.close(master)


def receive_master(sock: socket.socket) -> int | None:
    """The monitor's half of ``setup_console``: the master, or None if PID 1 failed before."""
    try:
        _, fds, _, _ = socket.recv_fds(sock, 16, 1)
    except OSError:
        return None
    return fds[0] if fds else None


# -- the monitor's relay --------------------------------------------------------------------------

class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader()
        self.out = bytearray()


class ConsoleServer:
    """The monitor's listening socket and attached clients, across the container's restarts."""

    def __init__(self, cdir: Path) -> None:
        self.dir_fd = os.open(cdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.path = f"/proc/self/fd/{self.dir_fd}/{SOCKET_NAME}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)   # a monitor that was killed (a reboot) left it behind
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self.listener.listen(16)
        self.clients: list[_Client] = []
        self.size: tuple[int, int] | None = None

    def fileno_keep(self) -> tuple[int, ...]:
        return (self.dir_fd, self.listener.fileno())

    def await_first_client(self, timeout: float) -> None:
        """``run -it``: the caller's client connects before the command starts, so it misses
        nothing; its first frame is the window size the console starts with."""
        self.listener.settimeout(timeout)
        try:
            sock, _ = self.listener.accept()
        except (TimeoutError, OSError):
            return
        finally:
            self.listener.settimeout(None)
        client = _Client(sock)
        sock.settimeout(timeout)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                frames = client.reader.feed(data)
                if frames:
                    for kind, payload in frames:
                        if kind == b"w":
                            self.size = parse_size(payload) or self.size
                    break
        except (TimeoutError, OSError, ValueError):
            sock.close()
            return
        sock.settimeout(None)
        self.clients.append(client)

    def relay(self, master: int, pidfd: int, log_fd: int, interactive: bool) -> None:
        """Copy until the command (``pidfd``) exits, then drain the master."""
        os.set_blocking(master, False)
        if self.size is not None:
            set_size(master, *self.size)
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, "listen")
        sel.register(master, selectors.EVENT_READ, "master")
        sel.register(pidfd, selectors.EVENT_READ, "exit")
        for client in self.clients:
            client.sock.setblocking(False)
            sel.register(client.sock, selectors.EVENT_READ, client)
        pending_input = bytearray()
        master_open = True
        try:
            while True:
                for key, events in sel.select():
                    what = key.data
                    if what == "listen":
                        self._accept(sel)
                    elif what == "master":
                        if events & selectors.EVENT_WRITE and pending_input:
                            self._write_input(master, pending_input)
                            if not pending_input:
                                sel.modify(master, selectors.EVENT_READ, "master")
                        if events & selectors.EVENT_READ and not self._pump_output(sel, master, log_fd):
                            sel.unregister(master)
                            master_open = False
                    elif what == "exit":
                        if master_open:
                            self._drain(sel, master, log_fd)
                        return
                    else:
                        self._client_event(sel, what, events, master, pending_input, interactive,
                                           master_open)
        finally:
            sel.close()

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        client = _Client(sock)
        self.clients.append(client)
        sel.register(sock, selectors.EVENT_READ, client)

    def _pump_output(self, sel: selectors.BaseSelector, master: int, log_fd: int) -> bool:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return True
        except OSError as e:
            if e.errno == errno.EIO:   # every slave descriptor closed
                return False
            raise
        if not data:
            return False
        self._output(sel, data, log_fd)
        return True

    def _drain(self, sel: selectors.BaseSelector, master: int, log_fd: int) -> None:
        """What the command wrote just before it ended (every slave is closed now: EIO ends it)."""
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:   # EAGAIN or EIO
                return
            if not data:
                return
            self._output(sel, data, log_fd)

    def _output(self, sel: selectors.BaseSelector, data: bytes, log_fd: int) -> None:
        with contextlib.suppress(OSError):
            _write_all(log_fd, data)
        for client in list(self.clients):
            self._send(sel, client, frame(b"o", data))

    def _send(self, sel: selectors.BaseSelector, client: _Client, data: bytes) -> None:
        client.out += data
        if len(client.out) > MAX_CLIENT_BACKLOG:
            self._drop(sel, client)
            return
        try:
            sent = client.sock.send(client.out)
            del client.out[:sent]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(sel, client)
            return
        with contextlib.suppress(KeyError, ValueError):
            sel.modify(client.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0), client)

    def _client_event(self, sel: selectors.BaseSelector, client: _Client, events: int, master: int,
                      pending_input: bytearray, interactive: bool, master_open: bool) -> None:
        if events & selectors.EVENT_WRITE:
            self._send(sel, client, b"")
        if not events & selectors.EVENT_READ:
            return
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sel, client)
            return
        try:
            frames = client.reader.feed(data)
        except ValueError:
            self._drop(sel, client)
            return
        for kind, payload in frames:
            if kind == b"w":
                size = parse_size(payload)
                if size is not None:
                    self.size = size
                    set_size(master, *size)
            elif kind == b"i" and interactive and master_open:
                if len(pending_input) + len(payload) > MAX_INPUT_BACKLOG:
                    continue   # a container that does not read its input loses what overflows
                pending_input += payload
                self._write_input(master, pending_input)
                if pending_input:
                    sel.modify(master, selectors.EVENT_READ | selectors.EVENT_WRITE, "master")

    @staticmethod
    def _write_input(master: int, pending: bytearray) -> None:
        try:
            n = os.write(master, pending)
            del pending[:n]
        except BlockingIOError:
            pass
        except OSError:
            pending.clear()

    def _drop(self, sel: selectors.BaseSelector, client: _Client) -> None:
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(client.sock)
        client.sock.close()
        if client in self.clients:
            self.clients.remove(client)

    def finish_run(self, exit_code: int) -> None:
        """The command ended: each client gets the exit code and is disconnected (docker's attach
        ends with the container, restart policy or not)."""
        for client in self.clients:
            try:
                client.sock.setblocking(True)
                client.sock.settimeout(2.0)
                client.sock.sendall(bytes(client.out) + frame(b"x", str(exit_code).encode()))
            except OSError:
                pass
            client.sock.close()
        self.clients = []

    def close(self) -> None:
        if self.clients:
            self.finish_run(255)
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.listener.close()
        os.close(self.dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# -- the caller's side --------------------------------------------------------------------------

@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal on ``fd`` in raw mode, restored on the way out (an error included); nothing
    when ``fd`` is not a terminal."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        import tty

        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class DetachScanner:
    """docker's escape proxy: input that begins the detach sequence is held until it either
    completes it (Detached) or does not (then it is passed on)."""

    def __init__(self, keys: bytes = DETACH_KEYS) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            b = bytes([byte])
            if b == self.keys[len(self.held):len(self.held) + 1]:
                self.held += b
                if self.held == self.keys:
                    self.held = b""
                    raise Detached
                continue
            if self.held:
                out += self.held
                self.held = b""
                if b == self.keys[:1]:
                    self.held = b
                    continue
            out += b
        return bytes(out)


def connect(cdir: Path) -> socket.socket:
    dir_fd = os.open(cdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(f"/proc/self/fd/{dir_fd}/{SOCKET_NAME}")
        except OSError:
            sock.close()
            raise
        return sock
    finally:
        os.close(dir_fd)


def _leave(sig: int, _frame: object) -> None:
    """SIGTERM or SIGHUP to a client: unwind, so the terminal is restored on the way out."""
    raise SystemExit(128 + sig)


def attach_client(sock: socket.socket, interactive: bool, stdin: int = 0, stdout: int = 1,
                  detach_keys: bytes = DETACH_KEYS) -> int | None:
    """Relay the caller's terminal and the monitor until the command ends; returns its exit code
    (None when the monitor went away without one). Raises Detached on ctrl-p ctrl-q."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous_wakeup = signal.set_wakeup_fd(wake_w)
    previous_winch = signal.signal(signal.SIGWINCH, lambda _s, _f: None)
    previous_leave = {sig: signal.signal(sig, _leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    scanner = DetachScanner(detach_keys)
    reader = FrameReader()
    size_fd = stdin if os.isatty(stdin) else stdout

    def send(data: bytes) -> None:
        sock.sendall(data)

    try:
        with raw_terminal(stdin) if interactive else contextlib.nullcontext():
            size = get_size(size_fd)
            if size is not None:
                send(size_frame(size))
            sel = selectors.DefaultSelector()
            sel.register(sock, selectors.EVENT_READ, "sock")
            sel.register(wake_r, selectors.EVENT_READ, "wake")
            if interactive:
                sel.register(stdin, selectors.EVENT_READ, "stdin")
            while True:
                for key, _ in sel.select():
                    if key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_r, 512)
                        size = get_size(size_fd)
                        if size is not None:
                            send(size_frame(size))
                    elif key.data == "stdin":
                        data = os.read(stdin, 65536)
                        if not data:
                            sel.unregister(stdin)   # input ended; output still flows
                            continue
                        data = scanner.feed(data)
                        if data:
                            send(frame(b"i", data))
                    else:
                        data = sock.recv(65536)
                        if not data:
                            return None
                        for kind, payload in reader.feed(data):
                            if kind == b"o":
                                _write_all(stdout, payload)
                            elif kind == b"x":
                                return int(payload or b"255")
    finally:
        for sig, handler in previous_leave.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGWINCH, previous_winch)
        signal.set_wakeup_fd(previous_wakeup)
        os.close(wake_r)
        os.close(wake_w)
        sock.close()


def relay_local(master: int, child_pid: int, interactive: bool, stdin: int = 0, stdout: int = 1) -> int:
    """``exec -t``: the caller holds the master itself; relay until ``child_pid`` exits, then
    return its wait status."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous_wakeup = signal.set_wakeup_fd(wake_w)
    previous_winch = signal.signal(signal.SIGWINCH, lambda _s, _f: None)
    previous_leave = {sig: signal.signal(sig, _leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    pidfd = os.pidfd_open(child_pid)
    size_fd = stdin if os.isatty(stdin) else stdout
    try:
        with raw_terminal(stdin) if interactive else contextlib.nullcontext():
            size = get_size(size_fd)
            if size is not None:
                set_size(master, *size)
            sel = selectors.DefaultSelector()
            sel.register(master, selectors.EVENT_READ, "master")
            sel.register(wake_r, selectors.EVENT_READ, "wake")
            sel.register(pidfd, selectors.EVENT_READ, "exit")
            if interactive:
                sel.register(stdin, selectors.EVENT_READ, "stdin")
            master_open = True
            while True:
                for key, _ in sel.select():
                    if key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_r, 512)
                        size = get_size(size_fd)
                        if size is not None:
                            set_size(master, *size)
                    elif key.data == "stdin":
                        data = os.read(stdin, 65536)
                        if not data:
                            sel.unregister(stdin)
                            continue
                        with contextlib.suppress(OSError):
                            _write_all(master, data)
                    elif key.data == "master":
                        try:
                            data = os.read(master, 65536)
                        except OSError:
                            data = b""
                        if not data:
                            sel.unregister(master)
                            master_open = False
                            continue
                        _write_all(stdout, data)
                    else:
                        os.set_blocking(master, False)
                        while master_open:
                            try:
                                data = os.read(master, 65536)
                            except OSError:
                                break
                            if not data:
                                break
                            _write_all(stdout, data)
                        _, status = os.waitpid(child_pid, 0)
                        return status
    finally:
        for sig, handler in previous_leave.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGWINCH, previous_winch)
        signal.set_wakeup_fd(previous_wakeup)
        os.close(wake_r)
        os.close(wake_w)
        os.close(pidfd)


def open_console_in_namespace() -> tuple[int, int]:
    """(master, slave) of a new pty in the devpts of the mount namespace the caller has joined
    (``exec -t``: the exec helper, after setns, still root)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    return master, slave


def become_console(slave: int) -> None:
    """In a process that leads a new session: ``slave`` as controlling terminal and stdio."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


def send_fd(sock_fd: int, fd: int) -> None:
    sock = socket.socket(fileno=sock_fd)
    try:
        socket.send_fds(sock, [b"m"], [fd])
    finally:
        sock.detach()


def stdin_is_tty() -> bool:
    return os.isatty(sys.stdin.fileno()) if sys.stdin is not None else False

