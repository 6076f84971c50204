"""docker's seccomp profile format: reading and checking a profile, docker's selection of its rules
for one container (``resolve``), and compiling them with libseccomp (``compile_program``).

Only needed when a container's program is not in the cache (``runtime.seccomp.for_container``):
a run whose program is cached neither imports nor compiles this module. ``runtime.seccomp``
re-exports every public name here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from runtime.seccomp import DEFAULT_PROFILE, ProfileError, _kernel_version, _read_profile_bytes, machine

MAX_RULES = 4096
MAX_NAMES = 65536

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
# Filter flags the loader accepts: TSYNC is moot for a single-threaded process.
_FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC",)


# -- reading and checking a profile ----------------------------------------------------------------

def default_profile() -> dict[str, Any]:
    return _parse(DEFAULT_PROFILE.read_bytes(), str(DEFAULT_PROFILE))


def read_profile(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a profile file; raises ProfileError naming the file and the fault."""
    return _parse(_read_profile_bytes(path), str(path))


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


# -- docker's selection of rules for one container ---------------------------------------------------

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


def with_sync_noop(resolved: dict[str, Any]) -> dict[str, Any]:
    """``resolved`` with the calls of ``SYNC_CALLS`` answered 0 without being made (the
    ERRNO action with errno 0): taken out of every rule that names them (libseccomp refuses
    two actions for one call) and given a rule of their own."""
    from runtime.seccomp import SYNC_CALLS

    rules = []
    for rule in resolved["syscalls"]:
        names = [n for n in rule["names"] if n not in SYNC_CALLS]
        if names:
            rules.append(dict(rule, names=names))
    rules.append({"names": list(SYNC_CALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": 0, "args": []})
    return dict(resolved, syscalls=rules)


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
