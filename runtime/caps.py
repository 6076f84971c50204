"""Linux capabilities by name, and docker's ``--cap-add`` / ``--cap-drop`` / ``--privileged``
arithmetic over the default set (``runtime.linux.DEFAULT_CAPS``, docker's)."""

from __future__ import annotations

from collections.abc import Iterable

from runtime.errors import SetupError
from runtime.linux import DEFAULT_CAPS

# capability.h, up to Linux 5.9 (40); a name the running kernel lacks is dropped at start.
ALL_CAPS: dict[str, int] = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}


def _normal(name: str) -> str:
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    upper = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if upper not in ALL_CAPS:
        raise SetupError(f"unknown capability: {name!r}")
    return upper


def capability_set(add: Iterable[str] = (), drop: Iterable[str] = (), privileged: bool = False) -> list[str]:
    """The container's capability names, docker's way: the default set, ``--cap-drop`` taken
    out (``ALL``: all of it), then ``--cap-add`` put in (``ALL``: every capability); a
    capability both added and dropped is added (docker: add wins). ``--privileged``: all."""
    adds, drops = {_normal(c) for c in add}, {_normal(c) for c in drop}
    if privileged or "ALL" in adds:
        return sorted(ALL_CAPS, key=ALL_CAPS.__getitem__)
    caps = set() if "ALL" in drops else set(DEFAULT_CAPS) - drops
    caps |= adds
    return sorted(caps, key=ALL_CAPS.__getitem__)


def numbers(names: Iterable[str], last_cap: int) -> set[int]:
    """The numbers of ``names`` this kernel knows (up to ``last_cap``)."""
    return {ALL_CAPS[n] for n in names if n in ALL_CAPS and ALL_CAPS[n] <= last_cap}
