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
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any
from collections.abc import Iterable

from runtime.errors import SetupError
from runtime.linux import DEFAULT_CAPS
from storage.fsutil import atomic_write

DEFAULT_PROFILE = Path(__file__).with_name("seccomp_default.json")
UNCONFINED = "unconfined"
DEFAULT = "default"
# Bounds on a profile file: docker's default is ~17 KB with ~60 rules.
MAX_PROFILE_BYTES = 1 << 20
MAX_RULES = 4096
MAX_NAMES = 65536
# Bumped when the way a profile becomes a program changes, so old cache entries are not reused.
_PROGRAM_FORMAT = 1

ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
# libseccomp's architecture tokens: AUDIT_ARCH values (ELF machine | 64-bit | little-endian).
_LE, _B64, _N32 = 0x40000000, 0x80000000, 0x20000000
ARCHES = {
    "SCMP_ARCH_X86": 3 | _LE, "SCMP_ARCH_X86_64": 62 | _B64 | _LE, "SCMP_ARCH_X32": 62 | _LE,
    "SCMP_ARCH_ARM": 40 | _LE, "SCMP_ARCH_AARCH64": 183 | _B64 | _LE,
    "SCMP_ARCH_MIPS": 8, "SCMP_ARCH_MIPS64": 8 | _B64, "SCMP_ARCH_MIPS64N32": 8 | _B64 | _N32,
    "SCMP_ARCH_MIPSEL": 8 | _LE, "SCMP_ARCH_MIPSEL64": 8 | _B64 | _LE,
    "SCMP_ARCH_MIPSEL64N32": 8 | _B64 | _LE | _N32,
    "SCMP_ARCH_PPC": 20, "SCMP_ARCH_PPC64": 21 | _B64, "SCMP_ARCH_PPC64LE": 21 | _B64 | _LE,
    "SCMP_ARCH_S390": 22, "SCMP_ARCH_S390X": 22 | _B64,
    "SCMP_ARCH_PARISC": 15, "SCMP_ARCH_PARISC64": 15 | _B64,
    "SCMP_ARCH_RISCV64": 243 | _B64 | _LE, "SCMP_ARCH_LOONGARCH64": 258 | _B64 | _LE,
}
# uname's machine -> (the name docker's includes/excludes use (Go's GOARCH, as moby spells it),
# the architecture of the archMap entry).
_MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"), "i686": ("x86", "SCMP_ARCH_X86"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"), "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"), "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}
# Filter flags the loader accepts: TSYNC is moot for a single-threaded process.
_FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC",)

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_libc = ctypes.CDLL(None, use_errno=True)


class ProfileError(SetupError):
    """A seccomp profile that cannot be read, parsed or compiled; the message is one line."""


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


# -- reading and checking a profile ----------------------------------------------------------------

def default_profile() -> dict[str, Any]:
    return _parse(DEFAULT_PROFILE.read_bytes(), str(DEFAULT_PROFILE))


def read_profile(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a profile file; raises ProfileError naming the file and the fault."""
    return _parse(_read_profile_bytes(path), str(path))


def _read_profile_bytes(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as e:
        raise ProfileError(f"cannot read seccomp profile {path}: {e.strerror}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(f"seccomp profile {path} is larger than {MAX_PROFILE_BYTES} bytes")
    return raw


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProfileError(f"seccomp profile {where} is not valid JSON: {e}") from None
    try:
        check_profile(doc)
    except ProfileError as e:
        raise ProfileError(f"seccomp profile {where}: {e}") from None
    return doc


def check_profile(doc: Any) -> None:
    """Raise ProfileError unless ``doc`` is a profile hoist can compile."""
    if not isinstance(doc, dict):
        raise ProfileError("the profile must be a JSON object")
    default = doc.get("defaultAction", "")
    if default or doc.get("syscalls"):
        _check_action(default, "defaultAction")
    _check_errno(doc.get("defaultErrnoRet"), "defaultErrnoRet")
    arches = _list(doc.get("architectures"), "architectures")
    archmap = _list(doc.get("archMap"), "archMap")
    if arches and archmap:
        raise ProfileError("both 'architectures' and 'archMap' are given (use one)")
    for name in arches:
        _check_arch(name, "architectures")
    for entry in archmap:
        if not isinstance(entry, dict):
            raise ProfileError("each archMap entry must be an object")
        _check_arch(entry.get("architecture"), "archMap architecture")
        for sub in _list(entry.get("subArchitectures"), "subArchitectures"):
            _check_arch(sub, "subArchitectures")
    for flag in _list(doc.get("flags"), "flags"):
        if flag not in _FLAGS:
            raise ProfileError(f"filter flag {flag!r} is not supported")
    if doc.get("listenerPath"):
        raise ProfileError("listenerPath (SCMP_ACT_NOTIFY) is not supported")
    rules = _list(doc.get("syscalls"), "syscalls")
    if len(rules) > MAX_RULES:
        raise ProfileError(f"more than {MAX_RULES} syscall rules")
    total = 0
    for i, rule in enumerate(rules):
        total += _check_rule(rule, f"syscalls[{i}]")
        if total > MAX_NAMES:
            raise ProfileError(f"more than {MAX_NAMES} syscall names")


def _check_rule(rule: Any, where: str) -> int:
    if not isinstance(rule, dict):
        raise ProfileError(f"{where} must be an object")
    name, names = rule.get("name"), _list(rule.get("names"), f"{where}.names")
    if name and names:
        raise ProfileError(f"{where} has both 'name' and 'names' (use one)")
    names = [name] if name else names
    if not names or not all(isinstance(n, str) and n and len(n) < 64 for n in names):
        raise ProfileError(f"{where} needs 'names': a list of syscall names")
    _check_action(rule.get("action"), f"{where}.action")
    _check_errno(rule.get("errnoRet"), f"{where}.errnoRet")
    args = _list(rule.get("args"), f"{where}.args")
    if len(args) > 6:
        raise ProfileError(f"{where} has more than 6 argument conditions")
    for arg in args:
        if not isinstance(arg, dict):
            raise ProfileError(f"{where}.args entries must be objects")
        index = arg.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 5:
            raise ProfileError(f"{where}: argument index must be 0..5, not {index!r}")
        for key in ("value", "valueTwo"):
            value = arg.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
                raise ProfileError(f"{where}: argument {key} must be an integer in 0..2^64-1")
        if arg.get("op") not in OPERATORS:
            raise ProfileError(f"{where}: unknown operator {arg.get('op')!r}")
    for key in ("includes", "excludes"):
        cond = rule.get(key)
        if cond is None:
            continue
        if not isinstance(cond, dict):
            raise ProfileError(f"{where}.{key} must be an object")
        for field in ("caps", "arches"):
            if not all(isinstance(v, str) for v in _list(cond.get(field), f"{where}.{key}.{field}")):
                raise ProfileError(f"{where}.{key}.{field} must be a list of strings")
        if cond.get("minKernel") is not None:
            _kernel_version(cond["minKernel"], f"{where}.{key}.minKernel")
    return len(names)


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProfileError(f"{where} must be a list")
    return value


def _check_action(action: Any, where: str) -> None:
    if action == "SCMP_ACT_NOTIFY":
        raise ProfileError(f"{where}: SCMP_ACT_NOTIFY is not supported")
    if action not in ACTIONS:
        raise ProfileError(f"{where}: unknown action {action!r}")


def _check_errno(value: Any, where: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or not 0 <= value <= 0xFFFF):
        raise ProfileError(f"{where} must be an integer in 0..65535")


def _check_arch(name: Any, where: str) -> None:
    if name not in ARCHES:
        raise ProfileError(f"{where}: unknown architecture {name!r}")


def _kernel_version(text: Any, where: str = "kernel") -> tuple[int, int]:
    parts = str(text).split("-", 1)[0].split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ProfileError(f"{where}: invalid kernel version {text!r} (use e.g. 4.8)") from None


# -- docker's selection of rules for one container ---------------------------------------------------

def machine() -> tuple[str, str]:
    """(docker's name for this machine's architecture, the matching SCMP_ARCH_ name)."""
    try:
        return _MACHINES[platform.machine()]
    except KeyError:
        raise ProfileError(f"seccomp: unsupported machine {platform.machine()}") from None


def resolve(doc: dict[str, Any], caps: Iterable[str], arch: tuple[str, str] | None = None,
            kernel: tuple[int, int] | None = None) -> dict[str, Any] | None:
    """The rules that apply to a container with bounding set ``caps`` on this machine, in the
    shape runc compiles (``architectures``, ``syscalls`` with ``names``/``action``/``errnoRet``/
    ``args``). None when the profile has no default action and no rules (docker: disabled)."""
    if not doc.get("defaultAction") and not doc.get("syscalls"):
        return None
    goarch, native = arch or machine()
    kernel = kernel or _kernel_version(os.uname().release)
    capset = set(caps)
    arches = list(doc.get("architectures") or [])
    for entry in doc.get("archMap") or []:
        if entry["architecture"] == native:
            arches = [native] + list(entry.get("subArchitectures") or [])
            break
    rules = []
    for rule in doc.get("syscalls") or []:
        if _applies(rule, capset, goarch, kernel):
            rules.append({"names": [rule["name"]] if rule.get("name") else list(rule["names"]),
                          "action": rule["action"], "errnoRet": rule.get("errnoRet"),
                          "args": [{"index": a["index"], "value": a.get("value", 0),
                                    "valueTwo": a.get("valueTwo", 0), "op": a["op"]}
                                   for a in rule.get("args") or []]})
    return {"defaultAction": doc["defaultAction"], "defaultErrnoRet": doc.get("defaultErrnoRet"),
            "architectures": arches, "syscalls": rules}


def _applies(rule: dict[str, Any], caps: set[str], goarch: str, kernel: tuple[int, int]) -> bool:
    exc = rule.get("excludes") or {}
    if goarch in (exc.get("arches") or []):
        return False
    if any(c in caps for c in exc.get("caps") or []):
        return False
    if exc.get("minKernel") is not None and kernel >= _kernel_version(exc["minKernel"]):
        return False
    inc = rule.get("includes") or {}
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if not all(c in caps for c in inc.get("caps") or []):
        return False
    if inc.get("minKernel") is not None and kernel < _kernel_version(inc["minKernel"]):
        return False
    return True


# -- compiling ---------------------------------------------------------------------------------------

def compile_program(resolved: dict[str, Any]) -> bytes:
    """The BPF program (an array of struct sock_filter) libseccomp builds for ``resolved``."""
    import pyseccomp as scmp  # loads libseccomp: only when a program is not cached

    default = _action(scmp, resolved["defaultAction"], resolved.get("defaultErrnoRet"))
    filt = scmp.SyscallFilter(default)
    for name in resolved["architectures"]:
        try:
            filt.add_arch(ARCHES[name])
        except OSError as e:
            if e.errno != 17:  # EEXIST: the native architecture is always in
                raise ProfileError(f"architecture {name}: {e.strerror}") from None
    ops = {name: getattr(scmp, name[len("SCMP_CMP_"):]) for name in OPERATORS}
    for rule in resolved["syscalls"]:
        action = _action(scmp, rule["action"], rule.get("errnoRet"))
        if action == default:
            continue
        conds = [scmp.Arg(a["index"], ops[a["op"]], a["value"], a["valueTwo"]) for a in rule["args"]]
        same_index = len({a["index"] for a in rule["args"]}) < len(rule["args"])
        # libseccomp ANDs a rule's conditions but cannot AND two on one argument: runc adds
        # those as one rule each (so they are ORed), and so does hoist.
        groups = [[c] for c in conds] if same_index else [conds]
        for name in rule["names"]:
            number = _resolve_name(scmp, name)
            if number is None:
                continue
            for group in groups:
                try:
                    filt.add_rule(action, number, *group)
                except OSError as e:
                    raise ProfileError(f"cannot add the rule for {name}: {e.strerror}") from None
    import tempfile

    with tempfile.TemporaryFile() as out:
        filt.export_bpf(out)
        out.seek(0)
        return out.read()


def _resolve_name(scmp: Any, name: str) -> int | None:
    """The native number of ``name`` (negative for libseccomp's pseudo-numbers of calls that
    exist only on another architecture of the filter); None if this libseccomp does not know it."""
    number = scmp.resolve_syscall(scmp.Arch.NATIVE, name)
    return None if number == -1 else number  # -1 is __NR_SCMP_ERROR


def _action(scmp: Any, name: str, errno_ret: int | None) -> int:
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return scmp.KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return scmp.KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return scmp.TRAP
    if name == "SCMP_ACT_ERRNO":
        return scmp.ERRNO(1 if errno_ret is None else errno_ret)  # runc: EPERM unless given
    if name == "SCMP_ACT_TRACE":
        return scmp.TRACE(1 if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_LOG":
        return scmp.LOG
    return scmp.ALLOW


# -- a container's filter ---------------------------------------------------------------------------

def for_container(choice: str, caps: Iterable[str], cache_dir: str | os.PathLike[str] | None) -> dict[str, str] | None:
    """What a container's spec keeps for ``--security-opt seccomp=CHOICE`` (``default``,
    ``unconfined`` or a profile file): None when unconfined, else the profile's source and the
    compiled program (base64). Raises ProfileError for a bad profile.

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
    key = hashlib.sha256(json.dumps([_PROGRAM_FORMAT, hashlib.sha256(raw).hexdigest(), caps,
                                     list(arch), list(kernel)]).encode()).hexdigest()
    path = Path(cache_dir) / f"{key}.bpf" if cache_dir is not None else None
    program = _read_cached(path)
    if program is None:
        resolved = resolve(_parse(raw, where), caps, arch, kernel)
        if resolved is None:
            return None
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


def apply(filt: dict[str, str] | None) -> None:
    """Load a container's filter into this process (inherited by everything it execs and forks).
    Needs no_new_privs (or CAP_SYS_ADMIN); raises OSError if the kernel refuses the program."""
    if filt is None:
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
