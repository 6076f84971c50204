"""Seccomp filters from profiles in docker's JSON format, compiled with libseccomp.

A profile (``runtime/seccomp_default.json``, or the file of ``--security-opt seccomp=FILE``)
becomes a filter in three steps:

1. ``read_profile`` / ``default_profile``: parse and check the JSON (types, bounds, names of
   actions, operators and architectures), so a bad file is a one-line ``ProfileError``;
2. ``resolve``: docker's selection for this container (moby/profiles ``setupSeccomp``): the
   architectures of the machine's ``archMap`` entry, and the rules whose ``includes`` /
   ``excludes`` (capabilities in the container's bounding set, the machine's architecture,
   ``minKernel``) hold;
3. ``compile_program``: libseccomp (through ``pyseccomp``, ctypes over the system's libseccomp2)
   turns that into a BPF program, with runc's rules for building it: rules whose action is the
   default are left out, names this libseccomp does not know are skipped, conditions on one
   argument index ANDed, several on the same index added as separate (ORed) rules.

The program is built once when the container is created (and cached by the resolved profile's
hash under ``$HOIST_ROOT/cache/seccomp``, so a run does not pay for loading libseccomp) and kept
in the container's spec. ``apply`` loads it with ``prctl(PR_SET_SECCOMP)``, the last thing
before execve, after the capabilities are dropped and no_new_privs is set: it needs only libc,
so it works after pivot_root and inside ``hoist exec``.

Steps 1-3 are ``runtime/seccomp_profile.py``, imported only when a program is not cached (its
names are re-exported here); this module holds the cache, ``for_container`` and ``apply``.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runtime.errors import SetupError
from runtime.linux import DEFAULT_CAPS
from storage.fsutil import atomic_write

DEFAULT_PROFILE = Path(__file__).with_name("seccomp_default.json")
UNCONFINED = "unconfined"
DEFAULT = "default"
# Bounds on a profile file: docker's default is ~17 KB with ~60 rules.
MAX_PROFILE_BYTES = 1 << 20
# Bumped when the way a profile becomes a program changes, so old cache entries are not reused.
_PROGRAM_FORMAT = 1
# The profile format's names (check_profile, resolve, compile_program...) live in
# runtime.seccomp_profile, imported on first use: a cached program needs none of them.
_PROFILE_NAMES = ("MAX_RULES", "MAX_NAMES", "ACTIONS", "OPERATORS", "ARCHES", "default_profile",
                  "read_profile", "check_profile", "resolve", "compile_program")

# uname's machine -> (the name docker's includes/excludes use (Go's GOARCH, as moby spells it),
# the architecture of the archMap entry).
_MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"), "i686": ("x86", "SCMP_ARCH_X86"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"), "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"), "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}

# What ``sync_noop`` turns into no-ops (names this libseccomp or machine lacks are skipped).
SYNC_CALLS = ("fsync", "fdatasync", "sync_file_range", "sync_file_range2", "arm_sync_file_range",
              "syncfs", "sync")

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_libc = ctypes.CDLL(None, use_errno=True)


class ProfileError(SetupError):
    """A seccomp profile that cannot be read, parsed or compiled; the message is one line."""


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _read_profile_bytes(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as e:
        raise ProfileError(f"cannot read seccomp profile {path}: {e.strerror}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(f"seccomp profile {path} is larger than {MAX_PROFILE_BYTES} bytes")
    return raw


def _kernel_version(text: Any, where: str = "kernel") -> tuple[int, int]:
    parts = str(text).split("-", 1)[0].split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ProfileError(f"{where}: invalid kernel version {text!r} (use e.g. 4.8)") from None


def machine() -> tuple[str, str]:
    """(docker's name for this machine's architecture, the matching SCMP_ARCH_ name)."""
    try:
        return _MACHINES[platform.machine()]
    except KeyError:
        raise ProfileError(f"seccomp: unsupported machine {platform.machine()}") from None


def __getattr__(name: str) -> Any:
    if name in _PROFILE_NAMES:
        from runtime import seccomp_profile

        return getattr(seccomp_profile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- a container's filter ---------------------------------------------------------------------------

def for_container(choice: str, caps: Iterable[str], cache_dir: str | os.PathLike[str] | None, *,
                  sync_noop: bool = False) -> dict[str, str] | None:
    """What a container's spec keeps for ``--security-opt seccomp=CHOICE`` (``default``,
    ``unconfined`` or a profile file): None when unconfined, else the profile's source and the
    compiled program (base64). Raises ProfileError for a bad profile.

    ``sync_noop`` (build steps only, ``runtime.step``): fsync, fdatasync, sync_file_range,
    syncfs and sync succeed without doing anything (``SYNC_CALLS``, ``seccomp_profile.
    with_sync_noop``). A step's files are worth nothing until the step is committed, and a
    step a crash interrupts is run again, so flushing them to the disk one by one only
    costs (dpkg flushes every file it unpacks); this is the reasoning of the
    ``force-unsafe-io`` that Debian's official docker images set for dpkg.

    The cache is keyed by the profile's bytes and everything ``resolve`` selects on (the
    capabilities, the machine, the kernel version): a run whose program is cached reads the
    file and the cache entry, and neither parses the profile nor loads libseccomp."""
    if choice == UNCONFINED:
        return None
    if choice == DEFAULT:
        raw, where, source = DEFAULT_PROFILE.read_bytes(), str(DEFAULT_PROFILE), DEFAULT
    else:
        raw, where, source = _read_profile_bytes(choice), str(choice), os.path.abspath(choice)
    caps = sorted(set(caps))
    arch = machine()
    kernel = _kernel_version(os.uname().release)
    fields: list[Any] = [_PROGRAM_FORMAT, hashlib.sha256(raw).hexdigest(), caps, list(arch), list(kernel)]
    if sync_noop:
        fields.append("sync-noop")
    key = hashlib.sha256(json.dumps(fields).encode()).hexdigest()
    path = Path(cache_dir) / f"{key}.bpf" if cache_dir is not None else None
    program = _read_cached(path)
    if program is None:
        from runtime.seccomp_profile import _parse, compile_program, resolve, with_sync_noop

        resolved = resolve(_parse(raw, where), caps, arch, kernel)
        if resolved is None:
            return None
        if sync_noop:
            resolved = with_sync_noop(resolved)
        try:
            program = compile_program(resolved)
        except ProfileError as e:
            raise ProfileError(f"seccomp profile {source}: {e}") from None
        if path is not None:
            _write_atomic(path, program)
    return {"profile": source, "program": base64.b64encode(program).decode()}


def _read_cached(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        program = path.read_bytes()
    except OSError:
        return None
    # A damaged entry (empty, or not whole sock_filter records) is rebuilt, not loaded.
    return program if program and len(program) % 8 == 0 else None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, data)


def complete(filt: dict[str, str] | None, cache_dir: str | os.PathLike[str] | None) -> dict[str, str] | None:
    """A spec's filter with its program: one recorded without a program (a container created
    before seccomp existed: ``{"profile": "default"}``) is compiled now, from the host's files,
    so it must be called before the process enters the container's mount namespace."""
    if filt is None or filt.get("program"):
        return filt
    return for_container(filt.get("profile") or DEFAULT, DEFAULT_CAPS, cache_dir)


_loaded: str | None = None   # the program this process has loaded (forked children inherit both)


def apply(filt: dict[str, str] | None) -> None:
    """Load a container's filter into this process (inherited by everything it execs and forks).
    Needs no_new_privs (or CAP_SYS_ADMIN); raises OSError if the kernel refuses the program."""
    global _loaded
    if filt is None:
        return
    if _loaded is not None and _loaded == filt.get("program"):
        # Loaded already, early (a container without no_new_privs loads it while it still has
        # CAP_SYS_ADMIN, as runc does); inherited by this process's children as by execve.
        return
    if not filt.get("program"):
        # Never quietly unconfined: a filter must be compiled (``complete``) before it is applied.
        raise OSError(22, f"no compiled seccomp program for profile {filt.get('profile')!r}")
    program = base64.b64decode(filt["program"])
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    res = _libc.prctl(ctypes.c_int(_PR_SET_SECCOMP), ctypes.c_ulong(_SECCOMP_MODE_FILTER),
                      ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0))
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"loading the seccomp filter: {os.strerror(err)}")
    _loaded = filt["program"]
