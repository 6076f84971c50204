"""``hoist logs``: replay a detached container's output, stdout to stdout and stderr to stderr
(``runtime.logfile`` keeps each record with its stream and time).

``--tail N`` the last N records, ``--since/--until`` a time window (RFC 3339, a Unix time, or a
Go duration back from now such as ``10m``), ``-t`` each record's time before it, ``-f`` keep
printing what the container writes until it exits.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from hoist import paths
from hoist.errors import UserError

if TYPE_CHECKING:
    from runtime.logfile import Record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    parser.add_argument("-n", "--tail", default="all", metavar="N",
                        help='only the last N lines (default "all")')
    parser.add_argument("--since", metavar="TIME",
                        help="only output since TIME (e.g. 2024-05-01T10:00:00Z, 1714557600, or 42m back)")
    parser.add_argument("--until", metavar="TIME", help="only output before TIME (same forms as --since)")
    parser.add_argument("-t", "--timestamps", action="store_true", help="show each line's time")
    parser.add_argument("container", metavar="CONTAINER")


def parse_time(text: str, flag: str, now_ns: int | None = None) -> int:
    """docker's ``--since``/``--until`` value as nanoseconds since the epoch."""
    from storage.duration import DurationError, parse_duration

    now_ns = time.time_ns() if now_ns is None else now_ns
    try:
        return now_ns - parse_duration(text)
    except DurationError:
        pass
    try:
        return int(float(text) * 1_000_000_000)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"invalid value for {flag}: {text!r}",
                        hint="use an RFC 3339 time, a Unix time or a duration such as 10m") from None
    if when.tzinfo is None:
        when = when.astimezone()  # a time without a zone is local, as docker reads it
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def run(args: argparse.Namespace) -> int:
    from runtime import logfile
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    try:
        container = ContainerStore(paths.containers_dir()).get(args.container)
        config = logfile.LogConfig.from_json(container.spec.log)
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    if config.driver == "none":
        raise UserError(f"container {container.name} keeps no logs (--log-driver none)")
    tail = _tail_count(args.tail)
    since = parse_time(args.since, "--since") if args.since else None
    until = parse_time(args.until, "--until") if args.until else None

    def wanted(records: Iterable[logfile.Record]) -> Iterable[logfile.Record]:
        for r in records:
            if since is not None and r.ns < since:
                continue
            if until is not None and r.ns >= until:
                continue
            yield r

    def running() -> bool:
        try:
            return container.path.exists() and container.status()[0] in ("running", "created", "restarting")
        except RuntimeFailure:
            return False

    if not args.follow:
        _emit_all(wanted(logfile.read_records(container.path)), tail, args.timestamps)
    else:
        # The rotated files, then the current one through the follower, which goes on from
        # where the history ends (a record written meanwhile is neither lost nor shown twice).
        history = list(logfile.read_records(container.path, rotated_only=True))
        records = logfile.follow(container.path, running, start_at_end=False)
        for record in records:
            if record is None:
                break
            history.append(record)
        _emit_all(wanted(history), tail, args.timestamps)
        if until is None or until > time.time_ns():
            for record in wanted(r for r in records if r is not None):
                _emit(record, args.timestamps)
    _legacy_log(container.log_path)
    return 0


def _emit_all(records: Iterable[Record], tail: int | None, timestamps: bool) -> None:
    if tail is not None:
        records = collections.deque(records, maxlen=tail) if tail else ()
    for record in records:
        _emit(record, timestamps)


def _tail_count(text: str) -> int | None:
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise UserError(f"invalid --tail {text!r}: a number of lines, or all") from None
    return None if n < 0 else n


def _emit(record: Record, timestamps: bool) -> None:
    out: IO[bytes] = sys.stderr.buffer if record.stream == "stderr" else sys.stdout.buffer
    if timestamps:
        out.write(record.time.encode() + b" ")
    out.write(record.data)
    out.flush()


def _legacy_log(path: Path) -> None:
    """A container started by an older hoist wrote raw output to container.log: show it as it is."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if data and not (path.parent / "container-json.log").exists():
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
