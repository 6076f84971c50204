"""``RUN --mount=type=ssh`` and ``hoist build --ssh``: an SSH agent forwarded into a step.

``--ssh`` takes BuildKit's (buildx's) form ``ID[=PATH[,PATH...]]``: no path means the agent
socket in ``$SSH_AUTH_SOCK``; one path that is a socket is that agent; otherwise the paths are
private key files, loaded into an agent of their own (OpenSSH's ``ssh-agent``, started for the
step and stopped after it; a key with a passphrase is refused, as BuildKit refuses it).

The step never sees the host's socket: as BuildKit's ``sshforward.MountSSHSocket`` does, a new
socket is made for each mount in a scratch directory, owned by the mount's ``uid``/``gid`` with
its ``mode`` (default 0600), and each connection to it is relayed to the agent. That socket is
bind-mounted at the mount's target (default ``/run/buildkit/ssh_agent.N``, N counting the ssh
mounts of the RUN) and ``SSH_AUTH_SOCK`` names the first one unless the step's environment sets
it. Nothing of it is in the layer (the mount point is removed) or in the cache key (only the
mount's definition is). At most ``MAX_CONNECTIONS`` connections are relayed at once, so a step
cannot make the build start threads without bound.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuilderError

MAX_CONNECTIONS = 16
_CHUNK = 65536


@dataclass(frozen=True)
class SSHSource:
    """One ``--ssh`` entry: an agent socket, or key files."""

    id: str
    socket: str | None = None
    keys: tuple[str, ...] = ()


def parse_ssh(values: list[str], environ: dict[str, str] | None = None) -> dict[str, SSHSource]:
    """``--ssh`` values by id; raises BuilderError with BuildKit's wording for a bad one."""
    env = os.environ if environ is None else environ
    out: dict[str, SSHSource] = {}
    for value in values:
        ssh_id, has_paths, rest = value.partition("=")
        if not ssh_id:
            raise BuilderError(f"invalid --ssh {value!r}: expected ID[=SOCKET|KEY[,KEY]]")
        paths = [p for p in rest.split(",") if p] if has_paths else []
        if not paths:
            sock = env.get("SSH_AUTH_SOCK", "")
            if not sock:
                raise BuilderError("invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set")
            paths = [sock]
        for path in paths:
            if not os.path.exists(path):
                raise BuilderError(f"--ssh {ssh_id}: {path}: no such file or socket")
        if len(paths) == 1 and stat.S_ISSOCK(os.stat(paths[0]).st_mode):
            out[ssh_id] = SSHSource(ssh_id, socket=os.path.abspath(paths[0]))
        else:
            for path in paths:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    raise BuilderError(f"--ssh {ssh_id}: {path} is a socket; give one socket or key files")
            out[ssh_id] = SSHSource(ssh_id, keys=tuple(os.path.abspath(p) for p in paths))
    return out


class _UnixAddress:
    """A socket address for ``path`` however long it is: sun_path holds 107 bytes, a path under
    ``$HOIST_ROOT`` may be longer, so a long one goes through ``/proc/self/fd/N`` of its
    directory (N held open for the bind or connect)."""

    def __init__(self, path: str) -> None:
        self.fd = -1
        self.address = path
        if len(path.encode()) > 100:
            self.fd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.address = f"/proc/self/fd/{self.fd}/{os.path.basename(path)}"

    def __enter__(self) -> str:
        return self.address

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


class KeyAgent:
    """``ssh-agent`` holding ``keys``, listening on ``folder/agent.sock``, until ``close``; it
    gets SIGKILL if the build dies first (``setpriv --pdeathsig``)."""

    def __init__(self, keys: tuple[str, ...], folder: Path) -> None:
        agent, add, setpriv = shutil.which("ssh-agent"), shutil.which("ssh-add"), shutil.which("setpriv")
        if agent is None or add is None or setpriv is None:
            raise BuilderError("--ssh with key files needs OpenSSH's ssh-agent and ssh-add (openssh-client) "
                               "and setpriv (util-linux)")
        self.socket = str(folder / "agent.sock")
        # A relative socket name, from the folder: the absolute one may be too long for sun_path.
        self.proc = subprocess.Popen([setpriv, "--pdeathsig", "KILL", agent, "-D", "-a", "agent.sock"], cwd=folder,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        try:
            self._wait_socket()
            env = {"SSH_AUTH_SOCK": "agent.sock", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "SSH_ASKPASS_REQUIRE": "never"}
            for key in keys:
                done = subprocess.run([add, "-q", key], env=env, stdin=subprocess.DEVNULL, cwd=folder,
                                      capture_output=True, text=True, timeout=30, start_new_session=True)
                if done.returncode != 0:
                    why = (done.stderr.strip().splitlines() or ["failed"])[-1]
                    raise BuilderError(f"--ssh: cannot load key {key}: {why}")
        except BaseException:
            self.close()
            raise

    def _wait_socket(self) -> None:
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
                raise BuilderError(f"--ssh: ssh-agent did not start{': ' + err if err else ''}")
            time.sleep(0.01)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class AgentRelay:
    """A listening socket at ``path`` (``uid``/``gid``/``mode``) relaying to ``upstream``."""

    def __init__(self, path: Path, upstream: str, uid: int = 0, gid: int = 0, mode: int = 0o600) -> None:
        self.path = path
        self.upstream = upstream
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with _UnixAddress(str(path)) as address:
            self.listener.bind(address)
        os.chown(path, uid, gid)
        os.chmod(path, mode & 0o777)
        self.listener.listen(MAX_CONNECTIONS)
        self._stop_r, self._stop_w = os.pipe()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name="ssh-relay", daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while True:
            ready: list[int] = select.select([self.listener.fileno(), self._stop_r], [], [])[0]
            if self._stop_r in ready:
                return
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            if not self._slots.acquire(blocking=False):
                conn.close()        # over the bound: refused, the step sees a closed connection
                continue
            thread = threading.Thread(target=self._relay, args=(conn,), name="ssh-relay-conn", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            with conn, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
                try:
                    with _UnixAddress(self.upstream) as address:
                        up.connect(address)
                except OSError:
                    return
                ends = {conn.fileno(): (conn, up), up.fileno(): (up, conn)}
                while True:
                    ready: list[int] = select.select([*ends, self._stop_r], [], [])[0]
                    if self._stop_r in ready:
                        return
                    for fd in ready:
                        src, dst = ends[fd]
                        data = src.recv(_CHUNK)
                        if not data:
                            return
                        dst.sendall(data)
        except OSError:
            return
        finally:
            self._slots.release()

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._accepter.join()
        for thread in self._threads:
            thread.join()
        self.listener.close()
        os.close(self._stop_r)
        os.close(self._stop_w)
