"""The cgroup v2 device filter: a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program built from device rules.

cgroup v2 has no devices controller; the kernel runs a BPF program attached to the cgroup on
every open and mknod of a device node and denies the access when it returns 0 (runc does the
same). The program is a straight list of rules, checked in order; the first that matches the
device's type, major and minor and covers every requested access allows it; nothing matching
denies. There is no BPF library for this in Python's ecosystem worth a dependency: the program
is a dozen instructions per rule, written here.

The program reads ``struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }``
where ``access_type`` is ``(access << 16) | type``.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_TYPES = {"b": DEV_BLOCK, "c": DEV_CHAR}
_ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}

# Opcodes (linux/bpf_common.h, linux/bpf.h).
_LDX_MEM_W = 0x61
_ALU64_AND_K = 0x57
_ALU64_RSH_K = 0x77
_ALU64_MOV_K = 0xB7
_ALU64_MOV_X = 0xBF
_JMP_JNE_K = 0x55
_JMP_JNE_X = 0x5D
_EXIT = 0x95
_R0, _R1, _R2, _R3, _R4, _R5, _R6 = range(7)

Rule = tuple[str, int, int, str]   # (type, major, minor, access); -1 is the wildcard


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def access_mask(access: str) -> int:
    mask = 0
    for ch in access:
        if ch not in _ACCESS:
            raise ValueError(f"invalid device access {access!r} (use r, w and m)")
        mask |= _ACCESS[ch]
    return mask


def program(rules: tuple[Rule, ...] | list[Rule]) -> bytes:
    """The filter as BPF bytecode: allow what a rule covers, deny the rest."""
    head = [
        _insn(_LDX_MEM_W, _R2, _R1, 0),        # r2 = access_type
        _insn(_ALU64_AND_K, _R2, imm=0xFFFF),  # r2 = type
        _insn(_LDX_MEM_W, _R3, _R1, 0),
        _insn(_ALU64_RSH_K, _R3, imm=16),      # r3 = requested access
        _insn(_LDX_MEM_W, _R4, _R1, 4),        # r4 = major
        _insn(_LDX_MEM_W, _R5, _R1, 8),        # r5 = minor
    ]
    body: list[bytes] = []
    for kind, major, minor, access in rules:
        if kind not in _TYPES:
            raise ValueError(f"invalid device type {kind!r} (use b or c)")
        mask = access_mask(access)
        checks: list[tuple[int, int, int, int]] = [(_JMP_JNE_K, _R2, 0, _TYPES[kind])]
        block: list[bytes] = []
        if mask != ACC_MKNOD | ACC_READ | ACC_WRITE:
            # The requested access must be a subset of the rule's: (r3 & mask) == r3.
            block += [_insn(_ALU64_MOV_X, _R6, _R3), _insn(_ALU64_AND_K, _R6, imm=mask)]
            checks.append((_JMP_JNE_X, _R6, _R3, 0))
        if major >= 0:
            checks.append((_JMP_JNE_K, _R4, 0, major))
        if minor >= 0:
            checks.append((_JMP_JNE_K, _R5, 0, minor))
        # Layout: type check, [mov, and], remaining checks, r0 = 1, exit. Each jump skips to
        # the end of this rule's block.
        total = len(checks) + len(block) + 2
        out: list[bytes] = []
        pos = 0
        for i, (code, dst, src, imm) in enumerate(checks):
            if i == 1 and block:
                out += block
                pos += len(block)
            out.append(_insn(code, dst, src, off=total - pos - 1, imm=imm))
            pos += 1
        out += [_insn(_ALU64_MOV_K, _R0, imm=1), _insn(_EXIT)]
        body += out
    tail = [_insn(_ALU64_MOV_K, _R0, imm=0), _insn(_EXIT)]
    return b"".join(head + body + tail)


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    nr = _BPF_SYSCALL.get(platform.machine())
    if nr is None:
        raise OSError(38, f"bpf: unsupported machine {platform.machine()}")
    res = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf: {os.strerror(err)}")
    return int(res)


def load(rules: tuple[Rule, ...] | list[Rule]) -> int:
    """Load the filter; returns the program's fd."""
    code = program(rules)
    insns = ctypes.create_string_buffer(code, len(code))
    license = ctypes.create_string_buffer(b"Apache-2.0")   # not GPL: no GPL-only helpers are used
    log = ctypes.create_string_buffer(65536)
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license), 1, len(log),
                     ctypes.addressof(log))
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        detail = log.value.decode(errors="replace").strip().splitlines()
        raise OSError(e.errno, f"cannot load the device filter: {e.strerror}"
                      + (f" ({detail[-1]})" if detail else "")) from None


def attach(cgroup: Path | str, rules: tuple[Rule, ...] | list[Rule]) -> None:
    """Attach a filter allowing ``rules`` to the v2 cgroup at ``cgroup``. Raises OSError."""
    prog = load(rules)
    try:
        target = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            attr = ctypes.create_string_buffer(128)
            struct.pack_into("<IIII", attr, 0, target, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
            _bpf(BPF_PROG_ATTACH, attr)
        finally:
            os.close(target)
    finally:
        os.close(prog)
