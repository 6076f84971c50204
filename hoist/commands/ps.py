"""``hoist ps``: list running containers (all with ``-a``)."""

from __future__ import annotations

import argparse
import time

from hoist import paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    parser.add_argument("-q", "--quiet", action="store_true", help="print ids only")
    parser.add_argument("-f", "--filter", dest="filters", action="append", default=[], metavar="label=KEY[=VALUE]",
                        help="only containers with this label (repeatable: all must match)")


def _status_text(status: str, state: dict, uptime_text) -> str:
    now = time.time()
    if status == "running":
        up = f"Up {uptime_text(now - state.get('started_at', now))}"
        return f"{up} (Paused)" if state.get("paused") else up
    if status == "restarting":   # docker: the last exit, and when it was
        ago = uptime_text(now - state.get("finished_at", now))
        return f"Restarting ({state.get('exit_code', 255)}) {ago} ago"
    if status == "exited":
        ago = uptime_text(now - state.get("finished_at", now))
        return f"Exited ({state.get('exit_code', 255)}) {ago} ago"
    return "Created"


def _label_filters(filters: list[str]) -> list[tuple[str, str | None]]:
    from hoist.errors import UserError

    out: list[tuple[str, str | None]] = []
    for item in filters:
        kind, _, spec = item.partition("=")
        if kind != "label" or not spec:
            raise UserError(f"unsupported filter {item!r}", hint="use label=KEY or label=KEY=VALUE")
        key, eq, value = spec.partition("=")
        out.append((key, value if eq else None))
    return out


def run(args: argparse.Namespace) -> int:
    from runtime.containers import ContainerStore, uptime_text

    wanted = _label_filters(args.filters)
    rows = []
    for c in ContainerStore(paths.containers_dir()).all():
        try:
            status, state = c.status()
            spec = c.spec
        except Exception:
            continue
        if status not in ("running", "restarting") and not args.all:
            continue
        if any(k not in spec.labels or (v is not None and spec.labels[k] != v) for k, v in wanted):
            continue
        if args.quiet:
            print(c.id[:12])
            continue
        command = " ".join(spec.argv)
        command = f'"{command[:20]}…"' if len(command) > 20 else f'"{command}"'
        created = f"{uptime_text(time.time() - spec.created)} ago"
        rows.append((c.id[:12], spec.image, command, created, _status_text(status, state, uptime_text), spec.name))
    if not args.quiet:
        header = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        for row in [header] + rows:
            print("   ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0
