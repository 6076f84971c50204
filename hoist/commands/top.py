"""``hoist top CONTAINER [ps OPTIONS]``: the container's processes, as ``docker top`` shows them
(the host's ``ps``, default ``-ef``, its lines kept for the pids in the container's cgroup)."""

from __future__ import annotations

import argparse
import subprocess

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS OPTIONS", help="default -ef")


def container_pids(cgroup_paths: list[str]) -> set[int]:
    pids: set[int] = set()
    for path in cgroup_paths[:1]:  # v2: the one cgroup; v1: any hierarchy lists them all
        try:
            with open(f"{path}/cgroup.procs") as f:
                pids |= {int(line) for line in f if line.strip()}
        except OSError:
            continue
    return pids


def run(args: argparse.Namespace) -> int:
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    try:
        container = ContainerStore(paths.containers_dir()).get(args.container)
        status, _ = container.status()
        spec = container.spec
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    if status != "running":
        raise UserError(f"container {container.name} is not running")
    pids = container_pids(spec.cgroups)
    ps_args = args.ps_args or ["-ef"]
    try:
        res = subprocess.run(["ps", *ps_args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise UserError("ps is not installed on this host (apt-get install procps)") from None
    if res.returncode != 0:
        raise UserError(f"ps {' '.join(ps_args)} failed: {res.stderr.strip()}")
    lines = res.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise UserError(f"ps {' '.join(ps_args)} printed no PID column (docker top needs one)")
    column = header.index("PID")
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            print(line)
    return 0
