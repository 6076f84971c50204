"""``hoist stats [--no-stream] [CONTAINER...]``: CPU, memory, network, block I/O and PIDs of
running containers from their cgroups, as ``docker stats`` computes and prints them.

CPU % is docker's: the container's CPU time over the host's, between two samples a second apart,
times the CPUs online. MEM USAGE is the cgroup's usage less its inactive file cache (cgroup v2's
``inactive_file``, v1's ``total_inactive_file``), LIMIT the cgroup's memory limit or the host's
memory. NET I/O is every interface of the container's network namespace but ``lo``; BLOCK I/O the
cgroup's read and write bytes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hoist import paths
from hoist.errors import UserError
from hoist.progress import docker_size

DEFAULT_TABLE = ("{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t"
                 "{{.PIDs}}")
HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
           "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
           "PIDs": "PIDS"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="*", metavar="CONTAINER", help="default: every running one")
    parser.add_argument("-a", "--all", action="store_true", help="stopped containers too (all zeros)")
    parser.add_argument("--no-stream", action="store_true", help="one sample, then exit")
    parser.add_argument("--no-trunc", action="store_true", help="full container ids")
    parser.add_argument("--format", metavar="TEMPLATE", help="a Go template ('table ...'), or json")


@dataclass
class Sample:
    cpu_ns: int = 0         # the container's CPU time
    system_ns: int = 0      # the host's
    memory: int = 0
    limit: int = 0
    net_rx: int = 0
    net_tx: int = 0
    blk_read: int = 0
    blk_write: int = 0
    pids: int = 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _system_ns() -> int:
    for line in _read(Path("/proc/stat")).splitlines():
        if line.startswith("cpu "):
            jiffies = sum(int(v) for v in line.split()[1:8])
            return jiffies * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))
    return 0


def _host_memory() -> int:
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def sample(cgroup_paths: list[str], pid: int) -> Sample:
    s = Sample(system_ns=_system_ns())
    seen: set[str] = set()
    for raw in cgroup_paths:
        path = Path(raw)
        if (path / "cgroup.controllers").exists():      # v2: one directory holds everything
            _sample_v2(path, s)
            seen |= {"cpu", "memory", "pids", "io"}
            continue
        controllers = path.parts[-3].split(",") if len(path.parts) >= 3 else []   # v1: ROOT/CONTROLLER/hoist/ID
        if "cpuacct" in controllers:
            s.cpu_ns = int(_read(path / "cpuacct.usage").strip() or 0)
            seen.add("cpu")
        if "memory" in controllers:
            stat = _kv(_read(path / "memory.stat"))
            s.memory = max(0, int(_read(path / "memory.usage_in_bytes").strip() or 0)
                           - stat.get("total_inactive_file", 0))
            limit_v1 = int(_read(path / "memory.limit_in_bytes").strip() or 0)
            s.limit = limit_v1 if 0 < limit_v1 < (1 << 62) else 0
            seen.add("memory")
        if "pids" in controllers:
            s.pids = int(_read(path / "pids.current").strip() or 0)
            seen.add("pids")
        if "blkio" in controllers:
            for line in _read(path / "blkio.throttle.io_service_bytes").splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] == "Read":
                    s.blk_read += int(parts[2])
                elif len(parts) == 3 and parts[1] == "Write":
                    s.blk_write += int(parts[2])
    if {"cpu", "memory", "pids"} - seen:
        # A v1 host where the container has no such cgroup (hoist makes one only for a limit):
        # the container's processes (its devices cgroup lists them) say it instead.
        _sample_processes(cgroup_paths, s, seen)
    s.limit = s.limit or _host_memory()
    if pid:
        for line in _read(Path(f"/proc/{pid}/net/dev")).splitlines()[2:]:
            name, _, rest = line.partition(":")
            counters = rest.split()
            if name.strip() != "lo" and len(counters) >= 9:
                s.net_rx += int(counters[0])
                s.net_tx += int(counters[8])
    return s


def _sample_v2(path: Path, s: Sample) -> None:
    s.cpu_ns = _kv(_read(path / "cpu.stat")).get("usage_usec", 0) * 1000
    stat = _kv(_read(path / "memory.stat"))
    s.memory = max(0, int(_read(path / "memory.current").strip() or 0) - stat.get("inactive_file", 0))
    limit = _read(path / "memory.max").strip()
    s.limit = int(limit) if limit.isdigit() else 0
    s.pids = int(_read(path / "pids.current").strip() or 0)
    for line in _read(path / "io.stat").splitlines():
        kv = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        s.blk_read += int(kv.get("rbytes", 0))
        s.blk_write += int(kv.get("wbytes", 0))


def _sample_processes(cgroup_paths: list[str], s: Sample, seen: set[str]) -> None:
    pids: set[int] = set()
    for raw in cgroup_paths[:1]:
        pids |= {int(v) for v in _read(Path(raw) / "cgroup.procs").split() if v.isdigit()}
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = rss = threads = 0
    for p in pids:
        stat = _read(Path(f"/proc/{p}/stat"))
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 20:
            cpu += sum(int(v) for v in fields[11:15]) * tick      # utime stime cutime cstime
            threads += int(fields[17])
            rss += int(fields[21]) * page
    if "cpu" not in seen:
        s.cpu_ns = cpu
    if "memory" not in seen:
        s.memory = rss
    if "pids" not in seen:
        s.pids = threads


def bytes_size(n: float) -> str:
    """go-units' ``BytesSize``: binary units, four significant digits (``1.23MiB``)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


def row(cid: str, name: str, before: Sample | None, after: Sample | None, no_trunc: bool) -> dict[str, Any]:
    cpu = 0.0
    if before and after:
        cpu_delta = after.cpu_ns - before.cpu_ns
        system_delta = after.system_ns - before.system_ns
        if cpu_delta > 0 and system_delta > 0:
            cpu = cpu_delta / system_delta * (os.cpu_count() or 1) * 100
    s = after or Sample()
    mem_perc = s.memory / s.limit * 100 if s.limit else 0.0
    fields = {"ID": cid if no_trunc else cid[:12], "Container": name, "Name": name,
            "CPUPerc": f"{cpu:.2f}%",
            "MemUsage": f"{bytes_size(s.memory)} / {bytes_size(s.limit)}" if after else "0B / 0B",
            "MemPerc": f"{mem_perc:.2f}%",
            "NetIO": f"{docker_size(s.net_rx)} / {docker_size(s.net_tx)}",
            "BlockIO": f"{docker_size(s.blk_read)} / {docker_size(s.blk_write)}",
            "PIDs": str(s.pids)}
    return dict(sorted(fields.items()))  # `{{json .}}` in key order, as docker's


def run(args: argparse.Namespace) -> int:
    from hoist import gotemplate
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    store = ContainerStore(paths.containers_dir())
    try:
        chosen = [store.get(ref) for ref in args.containers] if args.containers else store.all()
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    fmt = args.format or "table"
    if fmt == "json":
        fmt = "{{json .}}"
    while True:
        targets = []
        for c in chosen:
            try:
                status, state = c.status()
                spec = c.spec
            except (RuntimeFailure, OSError, ValueError):
                continue
            running = status == "running"
            if running or args.all or args.containers:
                targets.append((c, spec, int(state.get("pid") or 0) if running else 0))
        first = {c.id: sample(spec.cgroups, pid) for c, spec, pid in targets if pid}
        time.sleep(1.0)
        rows = []
        for c, spec, pid in targets:
            after = sample(spec.cgroups, pid) if pid else None
            rows.append(gotemplate.Struct("*formatter.containerStatsContext",
                                          row(c.id, spec.name, first.get(c.id), after, args.no_trunc)))
        try:
            text = gotemplate.format_rows(fmt, rows, HEADERS, default=DEFAULT_TABLE)
        except gotemplate.TemplateError as e:
            raise UserError(str(e)) from None
        if not args.no_stream and sys.stdout.isatty():
            sys.stdout.write("\033[2J\033[H")
        sys.stdout.write(text)
        sys.stdout.flush()
        if args.no_stream:
            return 0
