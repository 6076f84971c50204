"""``hoist logs`` of detached containers: each stream replayed to its own, --tail, --since and
--until, -t, -f, and json-file rotation with a default cap (runtime/logfile.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime import logfile
from tests.cli.helpers import REPO_ROOT, Hoist, Result
from tests.images import busybox_image


@pytest.fixture
def h(containers: Hoist) -> Hoist:
    hoist = containers
    busybox_image(hoist.layout())
    yield hoist


def _cdir(h: Hoist, name: str) -> Path:
    from runtime.containers import ContainerStore

    return ContainerStore(h.root / "containers").get(name).path


def _run_to_end(h: Hoist, name: str, script: str, *flags: str) -> Path:
    from runtime.containers import Container

    h("run", "-d", "--name", name, *flags, "busybox", "sh", "-c", script)
    cdir = _cdir(h, name)
    deadline = time.monotonic() + 60
    while Container(cdir).status()[0] != "exited":
        assert time.monotonic() < deadline, f"{name} never exited"
        time.sleep(0.05)
    return cdir


def _one_line(res: Result, *words: str) -> None:
    assert res.code != 0 and "Traceback" not in res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    for w in words:
        assert w in lines[0], lines[0]


def test_each_stream_is_replayed_to_its_own(h: Hoist) -> None:
    _run_to_end(h, "two", "echo o1; echo e1 >&2; echo o2; printf 'no newline'; printf 'bin\\377\\n' >&2")
    res = h("logs", "two")
    assert res.out == "o1\no2\nno newline"
    assert res.err.encode(errors="surrogateescape").startswith(b"e1\nbin")
    # Byte for byte, invalid UTF-8 included (the in-process runner decodes with "replace").
    proc = subprocess.run([sys.executable, "-m", "hoist.cli", "logs", "two"], capture_output=True,
                          env=h.env, cwd=REPO_ROOT)
    assert proc.stdout == b"o1\no2\nno newline" and proc.stderr == b"e1\nbin\xff\n"


def test_tail_timestamps_since_until(h: Hoist) -> None:
    cdir = _run_to_end(h, "counter", "for i in 1 2 3 4 5; do echo $i; sleep 0.01; done")
    assert h("logs", "--tail", "2", "counter").out == "4\n5\n"
    assert h("logs", "-n", "0", "counter").out == ""
    assert h("logs", "--tail", "all", "counter").out == "1\n2\n3\n4\n5\n"
    stamped = h("logs", "-t", "--tail", "1", "counter").out
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z 5\n", stamped), stamped

    records = list(logfile.read_records(cdir))
    assert [r.data for r in records] == [b"1\n", b"2\n", b"3\n", b"4\n", b"5\n"]
    third = records[2].time
    assert h("logs", "--since", third, "counter").out == "3\n4\n5\n"
    assert h("logs", "--until", third, "counter").out == "1\n2\n"
    unix = f"{records[3].ns / 1e9:.9f}"
    assert h("logs", "--since", unix, "counter").out.endswith("5\n")
    assert h("logs", "--since", "1h", "counter").out == "1\n2\n3\n4\n5\n"
    assert h("logs", "--until", "1h", "counter").out == ""
    _one_line(h("logs", "--since", "yesterday", "counter", ok=False), "invalid value for --since")
    _one_line(h("logs", "--tail", "x", "counter", ok=False), "invalid --tail")


def test_follow_prints_until_the_container_exits(h: Hoist, tmp_path: Path) -> None:
    go = tmp_path / "v"
    go.mkdir()
    h("run", "-d", "--name", "slow", "-v", f"{go}:/v", "busybox", "sh", "-c",
      "echo first; while [ ! -e /v/go ]; do sleep 0.05; done; echo second >&2; echo third")
    follower = subprocess.Popen([sys.executable, "-m", "hoist.cli", "logs", "-f", "slow"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=h.env, cwd=REPO_ROOT)
    assert follower.stdout is not None
    assert follower.stdout.readline() == b"first\n"   # printed while the container still runs
    (go / "go").touch()
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0
    assert out == b"third\n" and err == b"second\n"


def test_rotation_keeps_max_file_files_of_max_size(h: Hoist) -> None:
    cdir = _run_to_end(h, "chatty", "i=0; while [ $i -lt 400 ]; do echo line-$i-xxxxxxxxxxxxxxxx; i=$((i+1)); done",
                       "--log-opt", "max-size=2k", "--log-opt", "max-file=3")
    files = sorted(p.name for p in cdir.iterdir() if p.name.startswith(logfile.LOG_NAME))
    assert files == [logfile.LOG_NAME, f"{logfile.LOG_NAME}.1", f"{logfile.LOG_NAME}.2"]
    for name in files:
        assert (cdir / name).stat().st_size <= 2048
    lines = h("logs", "chatty").out.splitlines()
    assert lines[-1] == "line-399-xxxxxxxxxxxxxxxx"
    first = int(lines[0].split("-")[1])
    assert first > 0 and lines == [f"line-{i}-xxxxxxxxxxxxxxxx" for i in range(first, 400)]


def test_default_cap_and_bad_log_options(h: Hoist) -> None:
    cdir = _run_to_end(h, "plain", "true")
    log = json.loads((cdir / "config.json").read_text())["log"]
    assert log == {"driver": "json-file", "max_size": logfile.DEFAULT_MAX_SIZE, "max_file": logfile.DEFAULT_MAX_FILE}
    before = set((h.root / "containers").iterdir())
    for flags, words in ((["--log-opt", "colour=red"], ["unknown log opt"]),
                         (["--log-opt", "max-size=0"], ["max-size"]),
                         (["--log-opt", "max-file=3"], ["max-file cannot be set without max-size"]),
                         (["--log-driver", "syslog"], ["unsupported log driver"])):
        res = h("run", "-d", *flags, "busybox", "true", ok=False)
        _one_line(res, *words)
        assert res.code == 125
    assert set((h.root / "containers").iterdir()) == before


def test_log_driver_none_keeps_nothing(h: Hoist) -> None:
    cdir = _run_to_end(h, "quiet", "echo secret", "--log-driver", "none")
    assert not (cdir / logfile.LOG_NAME).exists() or (cdir / logfile.LOG_NAME).stat().st_size == 0
    _one_line(h("logs", "quiet", ok=False), "keeps no logs")
