"""``hoist ps``: list containers as ``docker ps`` does.

Running ones by default; ``-a`` all, ``-n N`` the N created last (any state), ``-l`` the last
one. ``--filter`` (repeatable; the same key ORs, different keys AND, as docker):
``status=created|restarting|running|removing|paused|exited|dead`` (implies ``-a``), ``name=``
(a regular expression searched in the name), ``label=KEY`` or ``label=KEY=VALUE``,
``ancestor=IMAGE`` (the image, by name or id, or one built on it: its layers a prefix of the
container's), ``exited=CODE``, ``health=starting|healthy|unhealthy|none`` (the last Health
status, whatever the container's state, as docker's). STATUS carries the health of a running
container: ``Up 3 seconds (healthy)``, ``(health: starting)``, ``(unhealthy)``. ``--format`` is
docker's: a Go template over the fields ``.ID
.Image .Command .CreatedAt .RunningFor .Ports .State .Status .Size .Names .Labels .Mounts
.Networks``, a ``table`` prefix for a header and aligned columns, or ``json``. ``-s`` adds the
SIZE column: the container's own writes, and with the image's unpacked size ("virtual").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

from hoist import filters, paths
from runtime import health
from hoist.errors import UserError
from hoist.progress import docker_size, human_duration

STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
FILTERS = ("status", "name", "label", "ancestor", "exited", "id", "health")
DEFAULT_TABLE = "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
           "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS",
           "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS",
           "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    parser.add_argument("-q", "--quiet", action="store_true", help="print ids only")
    parser.add_argument("-s", "--size", action="store_true", help="show each container's disk use")
    parser.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    parser.add_argument("-n", "--last", type=int, default=-1, metavar="N",
                        help="the N containers created last (any state)")
    parser.add_argument("-l", "--latest", action="store_true", help="the container created last")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="status=, name=, label=, ancestor=, exited=, id=, health=")
    parser.add_argument("--format", metavar="TEMPLATE",
                        help="a Go template ('table ...' for columns with a header), or json")


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    out = filters.parse_filters(items, FILTERS)
    for value in out.get("status", []):
        if value not in STATES:
            raise UserError(f"invalid filter 'status={value}'",
                            hint=f"one of {', '.join(STATES)}")
    for value in out.get("health", []):
        if value not in health.STATUSES:
            raise UserError(f"Unrecognised filter value for health: {value}")
    for value in out.get("exited", []):
        if not value.lstrip("-").isdigit():
            raise UserError(f"invalid filter 'exited={value}'", hint="an exit code")
    for value in out.get("name", []):
        try:
            re.compile(value)
        except re.error as e:
            raise UserError(f"invalid filter 'name={value}': {e}") from None
    return out


def match_labels(wanted: list[str], labels: dict[str, str]) -> bool:
    """docker's MatchKVList: every ``KEY`` or ``KEY=VALUE`` holds."""
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def run(args: argparse.Namespace) -> int:
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    filters = parse_filters(args.filter)
    limit = 1 if args.latest else args.last
    show_all = args.all or limit > 0 or "status" in filters
    fmt = args.format or "table"
    if fmt == "json":
        fmt = "{{json .}}"
    if args.quiet and fmt == "table":  # docker: -q overrides the table format, not a custom one
        fmt = "{{.ID}}"
    want_size = args.size or ".Size" in fmt or "json ." in fmt
    ancestors = _ancestor_matcher(filters.get("ancestor", []))

    rows: list[dict[str, Any]] = []
    for c in ContainerStore(paths.containers_dir()).all():  # newest first, as docker lists
        if limit > 0 and len(rows) >= limit:
            break
        try:
            status, state = c.status()
            spec = c.spec
            doc = spec.to_json()
        except (RuntimeFailure, OSError, ValueError):
            continue
        if state.get("paused") and status == "running":
            status = "paused"   # docker's State for a frozen container (its STATUS says Up ... (Paused))
        if status not in ("running", "restarting", "paused") and not show_all:
            continue
        if not _matches(filters, c.id, spec.name, status, state, doc, ancestors):
            continue
        rows.append(_context(c, status, state, doc, args.no_trunc, want_size))
    _print(fmt, rows, args.size)
    return 0


def _matches(filters: dict[str, list[str]], cid: str, name: str, status: str, state: dict[str, Any],
             doc: dict[str, Any], ancestors: Callable[[dict[str, Any]], bool]) -> bool:
    if "status" in filters and status not in filters["status"]:
        return False
    if "id" in filters and not any(cid.startswith(v) for v in filters["id"]):
        return False
    if "name" in filters and not any(re.search(v, name) or re.search(v, "/" + name) for v in filters["name"]):
        return False
    if "label" in filters and not match_labels(filters["label"], doc.get("labels") or {}):
        return False
    if "health" in filters and health.status_of(state) not in filters["health"]:
        return False
    if "exited" in filters:
        if status != "exited" or str(state.get("exit_code")) not in {str(int(v)) for v in filters["exited"]}:
            return False
    return not filters.get("ancestor") or ancestors(doc)


def _ancestor_matcher(values: list[str]) -> Callable[[dict[str, Any]], bool]:
    """The containers whose image is one of ``values`` or built on one (docker's ancestor=)."""
    if not values:
        return lambda doc: True
    from hoist.config import local_store
    from storage.errors import StorageError

    layout = local_store()
    bases: list[tuple[str, list[str]]] = []   # (image id, diff_ids)
    for text in values:
        try:
            _, manifest = layout.platform_image(layout.find(text).descriptor)
            config = layout.config(manifest)
        except (StorageError, ValueError):
            continue  # docker: an unknown image matches nothing
        if manifest.config is not None:
            bases.append((str(manifest.config.digest), list((config.get("rootfs") or {}).get("diff_ids") or [])))
    chains: dict[str, list[str]] = {}

    def diff_ids(image_id: str) -> list[str]:
        if image_id not in chains:
            try:
                from storage.digest import Digest

                config = json.loads(layout.read_blob(Digest.parse(image_id)))
                chains[image_id] = list((config.get("rootfs") or {}).get("diff_ids") or [])
            except (StorageError, ValueError):
                chains[image_id] = []
        return chains[image_id]

    def match(doc: dict[str, Any]) -> bool:
        image_id = str(doc.get("image_id") or "")
        for base_id, base_chain in bases:
            if image_id == base_id:
                return True
            mine = diff_ids(image_id)
            if base_chain and len(mine) > len(base_chain) and mine[:len(base_chain)] == base_chain:
                return True
        return False

    return match


def _context(c: Any, status: str, state: dict[str, Any], doc: dict[str, Any], no_trunc: bool,
             want_size: bool) -> dict[str, Any]:
    """The fields of docker's ContainerContext, as strings."""
    now = time.time()
    argv = list(doc.get("argv") or [])
    # docker's daemon: the path, then each argument, one with a space in single quotes
    command = " ".join(argv[:1] + [f"'{a}'" if " " in a else a for a in argv[1:]])
    if not no_trunc and len(command) > 20:
        command = command[:19] + "…"
    created = float(doc.get("created") or now)
    labels = doc.get("labels") or {}
    volumes = doc.get("volumes") or []
    mounts = [v.get("name") or v.get("source", "") for v in volumes]
    if not no_trunc:
        mounts = [m if len(m) <= 15 else m[:14] + "…" for m in mounts]
    network = doc.get("network") or "none"
    networks = doc.get("networks") or ([network] if network not in ("", "none") else ["none"])
    fields = {
        "ID": c.id if no_trunc else c.id[:12],
        "Image": _image_name(str(doc.get("image", ""))),
        "Command": f'"{command}"',
        "CreatedAt": _go_time(created),
        "RunningFor": f"{human_duration(now - created)} ago",
        "Ports": format_ports(doc.get("ports") or []),
        "State": status,
        "Status": status_text("running" if status == "paused" else status, state, now),
        "Size": _size_text(c.path / "upper", doc) if want_size else "",
        "Names": doc.get("name", ""),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": ",".join(mounts),
        "Networks": ",".join(networks),
        "LocalVolumes": str(sum(1 for v in volumes if v.get("name"))),
        "Platform": None,  # docker 20.10+ lists it (null for a local container)
    }
    return dict(sorted(fields.items()))  # `{{json .}}` lists them in key order, as docker's map


def _image_name(ref: str) -> str:
    """The image as docker users name it: ``busybox``, ``registry.local:5000/team/app:1``."""
    from storage.errors import StorageError
    from storage.reference import parse_reference

    try:
        return parse_reference(ref).familiar().removesuffix(":latest")
    except StorageError:
        return ref


def health_suffix(state: dict[str, Any]) -> str:
    """What docker's State.String adds for a running container's Health: `` (healthy)``,
    `` (unhealthy)``, `` (health: starting)``, or nothing."""
    check = health.status_of(state)
    if check == health.NONE:
        return ""
    return " (health: starting)" if check == health.STARTING else f" ({check})"


def status_text(status: str, state: dict[str, Any], now: float) -> str:
    if status == "running":
        up = f"Up {human_duration(now - state.get('started_at', now))}"
        return f"{up} (Paused)" if state.get("paused") else up + health_suffix(state)
    if status == "restarting":
        return f"Restarting ({state.get('exit_code', 0)}) {human_duration(now - state.get('finished_at', now))} ago"
    if status == "exited":
        return f"Exited ({state.get('exit_code', 255)}) {human_duration(now - state.get('finished_at', now))} ago"
    return status.capitalize()


def _go_time(when: float) -> str:
    """Go's ``time.Time.String()`` in the local zone: ``2024-05-01 10:00:00 +0000 UTC``."""
    local = dt.datetime.fromtimestamp(int(when)).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %z ") + (local.tzname() or "")


def format_ports(bindings: list[dict[str, Any]]) -> str:
    """docker's PORTS: ``0.0.0.0:8080->80/tcp`` for a published port, ``80/tcp`` for one only
    exposed; consecutive ports with the same address and protocol as one range."""
    published: dict[tuple[str, str], list[tuple[int, int]]] = {}
    exposed: dict[str, list[int]] = {}
    for b in bindings:
        proto, ctr = str(b.get("proto", "tcp")), int(b.get("container_port", 0))
        host = int(b.get("host_port") or 0)
        if host:
            published.setdefault((str(b.get("host_ip") or "0.0.0.0"), proto), []).append((host, ctr))
        else:
            exposed.setdefault(proto, []).append(ctr)
    out = []
    for (ip, proto), pairs in sorted(published.items()):
        for run_ in _runs(sorted(set(pairs)), lambda a, b: b[0] == a[0] + 1 and b[1] == a[1] + 1):
            out.append(f"{ip}:{_span(run_[0][0], run_[-1][0])}->{_span(run_[0][1], run_[-1][1])}/{proto}")
    for proto, ports in sorted(exposed.items()):
        for run_ in _runs(sorted(set(ports)), lambda a, b: b == a + 1):
            out.append(f"{_span(run_[0], run_[-1])}/{proto}")
    return ", ".join(out)


def _runs(items: list[Any], follows: Callable[[Any, Any], bool]) -> list[list[Any]]:
    runs: list[list[Any]] = []
    for item in items:
        if runs and follows(runs[-1][-1], item):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _size_text(upper: Any, doc: dict[str, Any]) -> str:
    """docker's ``12B (virtual 4.3MB)``: bytes the container wrote, and with its image's."""
    from hoist.commands.images import unpacked_size

    rw = tree_size(str(upper))
    image = unpacked_size(str(doc.get("image_id") or ""))
    return f"{docker_size(rw)} (virtual {docker_size(rw + image)})" if image else docker_size(rw)


def tree_size(root: str) -> int:
    """Bytes of the regular files under ``root`` (each inode once), never following a link."""
    total, seen = 0, set()
    todo = [root]
    while todo:
        top = todo.pop()
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if e.is_dir(follow_symlinks=False):
                todo.append(e.path)
            elif (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size if e.is_file(follow_symlinks=False) else 0
    return total


def _print(fmt: str, rows: list[dict[str, Any]], size: bool) -> None:
    print_rows(fmt, rows, "*formatter.ContainerContext", HEADERS, DEFAULT_TABLE + ("\t{{.Size}}" if size else ""))


def print_rows(fmt: str, rows: list[dict[str, Any]], type_name: str, headers: dict[str, str], default: str) -> None:
    """A list verb's ``--format``: the Go template over each row (a struct named ``type_name``
    in its errors, as docker's), a bad template one line."""
    from hoist import gotemplate

    try:
        text = gotemplate.format_rows(fmt, [gotemplate.Struct(type_name, r) for r in rows], headers, default=default)
    except gotemplate.TemplateError as e:
        raise UserError(f"template: {e}" if not str(e).startswith("template") else str(e)) from None
    print(text, end="")
