"""A detached container's log: docker's json-file format, with rotation.

The monitor gives PID 1 two pipes for stdout and stderr (``LogPump``) and a process of its own
turns what arrives into records, one JSON object a line, as docker's json-file driver writes
them::

    {"log":"hello\\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"}

A record is one line of output (its newline included), or 16 KiB of a longer one (the rest
follows in further records, as docker splits them). Bytes that are not UTF-8 are kept
(``surrogateescape``, written as ``\\udcXX`` escapes), so ``hoist logs`` replays exactly what
the container wrote, to the stream it wrote it to.

Rotation is json-file's: once ``container-json.log`` would pass ``max-size``, it becomes
``container-json.log.1`` (the older ones move up to ``.2`` ...) and a new one starts; with
``max-file`` files in all, the oldest is dropped. Unlike docker's json-file (no limit by
default), every container gets a cap: ``DEFAULT_MAX_SIZE`` x ``DEFAULT_MAX_FILE`` (docker's
``local`` driver defaults), so a chatty container cannot fill the disk. ``--log-driver none``
keeps nothing.

Readers (``read_records``) go through the rotated files oldest first; ``follow`` keeps reading
the current file across rotations until asked to stop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import SetupError

LOG_NAME = "container-json.log"
DEFAULT_MAX_SIZE = 20 << 20
DEFAULT_MAX_FILE = 5
RECORD_BYTES = 16 << 10     # docker's split for one long line
READ_BYTES = 64 << 10
DRIVERS = ("json-file", "none")


@dataclass(frozen=True)
class LogConfig:
    driver: str = "json-file"
    max_size: int = DEFAULT_MAX_SIZE
    max_file: int = DEFAULT_MAX_FILE

    def to_json(self) -> dict[str, Any]:
        return {"driver": self.driver, "max_size": self.max_size, "max_file": self.max_file}

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> LogConfig:
        return cls(**doc) if doc else cls()


def parse_log_options(driver: str | None, options: list[str],
                      parse_size: Callable[[str], int]) -> LogConfig:
    """``--log-driver`` and ``--log-opt KEY=VALUE`` (max-size, max-file) as docker checks them."""
    driver = driver or "json-file"
    if driver not in DRIVERS:
        raise SetupError(f"unsupported log driver {driver!r} (use json-file or none)")
    opts: dict[str, str] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or key not in ("max-size", "max-file"):
            raise SetupError(f"unknown log opt {item!r} for log driver {driver} (max-size=SIZE, max-file=N)")
        opts[key] = value
    if driver == "none":
        if opts:
            raise SetupError("log opts are not supported with --log-driver none")
        return LogConfig(driver="none")
    max_size = parse_size(opts["max-size"]) if "max-size" in opts else DEFAULT_MAX_SIZE
    if max_size <= 0:
        raise SetupError(f"invalid max-size {opts['max-size']!r}: it must be positive")
    try:
        max_file = int(opts.get("max-file", DEFAULT_MAX_FILE))
    except ValueError:
        raise SetupError(f"invalid max-file {opts['max-file']!r}: a whole number") from None
    if max_file < 1:
        raise SetupError(f"invalid max-file {max_file}: it must be at least 1")
    if "max-file" in opts and "max-size" not in opts and max_file > 1:
        raise SetupError("max-file cannot be set without max-size (as docker)")
    return LogConfig(max_size=max_size, max_file=max_file)


def timestamp(ns: int | None = None) -> str:
    """RFC 3339 with nanoseconds in UTC (now, or ``ns`` since the epoch), as docker writes ``time``."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def parse_timestamp(text: str) -> int:
    """Nanoseconds since the epoch of a record's ``time``."""
    base, _, frac = text.rstrip("Z").partition(".")
    secs = dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC).timestamp()
    return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


class LogWriter:
    """Appends records to ``dir/container-json.log``, rotating as the config says."""

    def __init__(self, directory: Path, config: LogConfig) -> None:
        self.path = directory / LOG_NAME
        self.config = config
        self._f = open(self.path, "ab")
        self._size = self._f.tell()

    def write(self, stream: str, data: bytes) -> None:
        record = json.dumps({"log": data.decode("utf-8", "surrogateescape"), "stream": stream,
                             "time": timestamp()}, separators=(",", ":")).encode() + b"\n"
        if self._size and self._size + len(record) > self.config.max_size:
            self._rotate()
        self._f.write(record)
        self._f.flush()
        self._size += len(record)

    def _rotate(self) -> None:
        self._f.close()
        keep = self.config.max_file
        if keep <= 1:
            os.truncate(self.path, 0)
        else:
            for i in range(keep - 1, 0, -1):
                older = self.path.with_name(f"{LOG_NAME}.{i}")
                if older.exists():
                    if i == keep - 1:
                        older.unlink()
                    else:
                        os.replace(older, self.path.with_name(f"{LOG_NAME}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{LOG_NAME}.1"))
        self._f = open(self.path, "ab")
        self._size = 0

    def close(self) -> None:
        self._f.close()


class LogPump:
    """The monitor's side: pipes for PID 1's stdout and stderr, and a process that records what
    comes through them. ``start()`` forks that process (before the monitor unshares its PID
    namespace: after that, a new thread or process would be inside the container's);
    ``child_side()`` runs in the container's PID 1, ``parent_side()`` in the monitor once PID 1
    is forked, and ``finish()`` waits until every writer has closed and every record is written."""

    def __init__(self, directory: Path, config: LogConfig) -> None:
        self.directory, self.config = directory, config
        self._out = os.pipe()
        self._err = os.pipe()
        self._pid = 0

    def start(self) -> None:
        self._pid = os.fork()
        if self._pid == 0:
            code = 0
            try:
                # Only the two read ends: nothing else of the monitor's (the network namespace,
                # the caller's ready pipe) is held open by the pump.
                keep = {self._out[0], self._err[0]}
                for name in os.listdir("/proc/self/fd"):
                    if int(name) > 2 and int(name) not in keep:
                        with contextlib.suppress(OSError):
                            os.close(int(name))
                self._run()
            except BaseException:
                code = 1
            finally:
                os._exit(code)

    def child_side(self) -> None:
        os.dup2(self._out[1], 1)
        os.dup2(self._err[1], 2)
        for fd in (*self._out, *self._err):
            os.close(fd)

    def stdout_fd(self) -> int:
        """The write end of the stdout pipe (a ``-t`` container's console relay writes there)."""
        return self._out[1]

    def parent_side(self) -> None:
        for fd in (*self._out, *self._err):
            os.close(fd)

    def finish(self) -> None:
        if self._pid:
            try:
                os.waitpid(self._pid, 0)
            except ChildProcessError:
                pass
            self._pid = 0

    def _run(self) -> None:
        import select

        writer = LogWriter(self.directory, self.config) if self.config.driver != "none" else None
        streams = {self._out[0]: ("stdout", bytearray()), self._err[0]: ("stderr", bytearray())}
        try:
            while streams:
                ready, _, _ = select.select(list(streams), [], [])
                for fd in ready:
                    name, pending = streams[fd]
                    chunk = os.read(fd, READ_BYTES)
                    if not chunk:
                        if pending and writer:
                            writer.write(name, bytes(pending))
                        os.close(fd)
                        del streams[fd]
                        continue
                    pending += chunk
                    if writer:
                        _write_lines(writer, name, pending)
                    else:
                        pending.clear()
        finally:
            if writer:
                writer.close()


def _write_lines(writer: LogWriter, stream: str, pending: bytearray) -> None:
    """Write every complete line in ``pending`` (and 16 KiB pieces of a longer one); keep the rest."""
    while pending:
        end = pending.find(b"\n", 0, RECORD_BYTES)
        if end >= 0:
            cut = end + 1
        elif len(pending) >= RECORD_BYTES:
            cut = RECORD_BYTES
        else:
            return
        writer.write(stream, bytes(pending[:cut]))
        del pending[:cut]


# -- reading --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    stream: str
    data: bytes
    time: str       # as written (RFC 3339, nanoseconds)
    ns: int         # the same, in nanoseconds since the epoch


def log_files(directory: Path) -> list[Path]:
    """The log's files, oldest first (``.N`` ... ``.1``, then the current one)."""
    rotated = []
    for p in directory.glob(f"{LOG_NAME}.*"):
        suffix = p.name[len(LOG_NAME) + 1:]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    return [p for _, p in sorted(rotated, reverse=True)] + [directory / LOG_NAME]


def parse_record(line: bytes) -> Record | None:
    try:
        doc = json.loads(line)
        text, stream, when = doc["log"], doc["stream"], doc["time"]
        return Record(stream, text.encode("utf-8", "surrogateescape"), when, parse_timestamp(when))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a line cut by a crash, or not ours: skipped, as docker skips it


def read_records(directory: Path, rotated_only: bool = False) -> Iterator[Record]:
    """Every record, oldest first (only the rotated files' with ``rotated_only``)."""
    for path in log_files(directory)[:-1] if rotated_only else log_files(directory):
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            continue
        with f:
            for line in f:
                if line.endswith(b"\n") and (record := parse_record(line)):
                    yield record


def follow(directory: Path, keep_going: Callable[[], bool], start_at_end: bool = True,
           poll: float = 0.1) -> Iterator[Record | None]:
    """The current file's records (from its end when ``start_at_end``), then those appended,
    across rotations, while ``keep_going()``; a last read once it says stop. ``None`` comes
    once, the first time the reader has caught up with the writer (what was there before)."""
    path = directory / LOG_NAME
    f = None
    buf = b""
    stopping = False
    caught_up = False
    while True:
        if f is None:
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                f = None
            else:
                if start_at_end:
                    f.seek(0, os.SEEK_END)
                start_at_end = False
        if f is not None:
            chunk = f.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if record := parse_record(line):
                        yield record
                continue
            try:
                rotated = os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                rotated = True
            if rotated:  # the rest of the old file was read above; go on with the new one
                f.close()
                f, buf = None, b""
                continue
        if not caught_up:
            caught_up = True
            yield None
        if stopping:
            if f is not None:
                f.close()
            return
        if not keep_going():
            stopping = True  # one more pass: the container may have written just before it exited
            continue
        time.sleep(poll)


class LogReader:
    """A container's records as they are written, without blocking: each ``read()`` returns what
    was appended since the last one (the first: the current file from its start), following the
    log across rotations. For readers of several containers at once (``hoist compose logs``)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOG_NAME
        self._f: Any = None
        self._buf = b""

    def read(self) -> list[Record]:
        out: list[Record] = []
        while True:
            if self._f is None:
                try:
                    self._f = open(self.path, "rb")
                except FileNotFoundError:
                    return out
            chunk = self._f.read()
            if chunk:
                self._buf += chunk
                *lines, self._buf = self._buf.split(b"\n")
                out += [r for r in map(parse_record, lines) if r is not None]
                continue
            try:
                rotated = os.stat(self.path).st_ino != os.fstat(self._f.fileno()).st_ino
            except FileNotFoundError:
                rotated = True
            if not rotated:
                return out
            self.close()    # the old file is read to its end; go on with the new one
            if not self.path.exists():
                return out

    def hold(self) -> None:
        """Open the log now (made empty if there is none yet), so what is written to it stays
        readable here even once the file is removed."""
        if self._f is None:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640))
            self._f = open(self.path, "rb")

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
        self._f, self._buf = None, b""
