"""builder.prehash: the context sources of COPY/ADD walked and hashed ahead of their steps."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from pathlib import Path

import pytest

from builder.copy import HashCache, Selection, select_sources
from builder.dockerfile import parse_dockerfile
from builder.dockerignore import PatternMatcher
from builder.prehash import ContextPrehash
from builder.stages import build_graph

DOCKERFILE = """\
FROM scratch AS other
FROM scratch AS base
ARG SRC=app
COPY $SRC /x/
COPY --from=other / /y
ADD https://example.com/a.tar /z/
COPY <<EOF /note
hi
EOF
COPY --exclude=*.log app/ /app/
ADD --chown=1:1 data.txt /data.txt

FROM scratch AS unused
COPY unused.txt /
"""


def _context(tmp_path: Path, files: int = 5) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "app" / "sub").mkdir(parents=True)
    for i in range(files):
        (ctx / "app" / "sub" / f"f{i}.txt").write_text(f"file {i}\n")
    (ctx / "app" / "skip.log").write_text("log\n")
    (ctx / "app" / "secret.key").write_text("ignored\n")
    (ctx / "data.txt").write_text("data\n")
    (ctx / "unused.txt").write_text("unused\n")
    return ctx


def _prehash(ctx: Path, ignore: PatternMatcher | None = None, text: str = DOCKERFILE,
             target: str | None = "base") -> ContextPrehash:
    graph = build_graph(parse_dockerfile(text), target=target)
    steps = [(i, instr) for i in graph.order for instr in graph.nodes[i].stage.instructions]
    return ContextPrehash(ctx, ignore, HashCache(racy_ns=0), steps)   # the files were just written


def _hashed(cache: HashCache, path: Path) -> str | None:
    return cache.get(os.lstat(path))


def test_only_literal_context_sources_of_needed_stages_are_walked_ahead(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    prehash = _prehash(ctx, PatternMatcher(["app/secret.key"]))
    prehash.start()
    # COPY --exclude=*.log app/ (line 10) and ADD data.txt (line 11) of stage 1: nothing else.
    app = prehash.take(1, 10, ["app/"], ["*.log"], False)
    data = prehash.take(1, 11, ["data.txt"], [], False)
    prehash.stop()
    assert app is not None and data is not None
    assert sorted(e.rel for item in app.items for e in item.entries) == \
        ["", "sub", "sub/f0.txt", "sub/f1.txt", "sub/f2.txt", "sub/f3.txt", "sub/f4.txt"]
    cache = prehash.hash_cache
    for i in range(5):
        path = ctx / "app" / "sub" / f"f{i}.txt"
        assert _hashed(cache, path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert _hashed(cache, ctx / "data.txt") is not None
    # Not read: what .dockerignore hides, what --exclude leaves out, an unneeded stage's source.
    for name in ("app/secret.key", "app/skip.log", "unused.txt"):
        assert _hashed(cache, ctx / name) is None, name
    # COPY $SRC (line 4), COPY --from (5), ADD of a URL (6) and a heredoc (7) are left to the step.
    for line in (4, 5, 6, 7):
        assert prehash.take(1, line, ["app"], [], False) is None


def test_a_walk_is_taken_once_and_only_for_the_same_arguments(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    prehash = _prehash(ctx)
    prehash.start()
    # The expanded step differs from what was walked: the step selects for itself.
    assert prehash.take(1, 10, ["app/"], [], False) is None
    assert prehash.take(1, 10, ["app/"], ["*.log"], True) is None
    assert prehash.take(1, 10, ["app/"], ["*.log"], False) is not None
    assert prehash.take(1, 10, ["app/"], ["*.log"], False) is None
    prehash.stop()


def test_the_walk_gives_what_the_step_would_select(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    prehash = _prehash(ctx, PatternMatcher(["app/secret.key"]))
    prehash.start()
    ahead = prehash.take(1, 10, ["app/"], ["*.log"], False)
    prehash.stop()
    own = select_sources(ctx, ["app/"], ignore=PatternMatcher(["app/secret.key"]), excludes=["*.log"])
    assert ahead is not None
    assert ahead.cache_digest(dest="/app/") == own.cache_digest(dest="/app/")


def test_a_source_that_fails_is_left_to_the_step(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    (ctx / "data.txt").unlink()
    prehash = _prehash(ctx)
    prehash.start()
    assert prehash.take(1, 11, ["data.txt"], [], False) is None       # the step reports it
    assert prehash.take(1, 10, ["app/"], ["*.log"], False) is not None
    prehash.stop()


def test_stop_ends_the_walk_between_files(tmp_path: Path) -> None:
    ctx = _context(tmp_path, files=2000)
    prehash = _prehash(ctx)
    gate = threading.Event()
    reads = 0
    real = HashCache.put

    def slow_put(self: HashCache, *args: object, **kwargs: object) -> None:
        nonlocal reads
        reads += 1
        if reads == 10:
            gate.set()
        real(self, *args, **kwargs)   # type: ignore[arg-type]

    HashCache.put = slow_put  # type: ignore[method-assign]
    try:
        prehash.start(fork=False)       # in this process, so the puts can be watched
        assert gate.wait(30)
        prehash.stop()
        stopped_at = reads
    finally:
        HashCache.put = real  # type: ignore[method-assign]
    assert stopped_at < 2000
    assert prehash.take(1, 10, ["app/"], ["*.log"], False) is None     # unfinished: not handed out


def test_nothing_to_walk_without_context_sources(tmp_path: Path) -> None:
    assert not _prehash(tmp_path, text="FROM scratch\nCOPY --from=busybox /bin /bin\n", target=None)


def _shape(selection: Selection) -> list[tuple[object, ...]]:
    return [(g.pattern, item.name, e.rel, e.src, e.mode, e.uid, e.gid, e.size, e.mtime_ns, e.ctime_ns, e.dev, e.ino,
             e.nlink, e.link, e.xattrs, e.hardlink) for g in selection.groups for item in g.items for e in item.entries]


def _forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """start() forks only when the process has no other thread; pytest's may have some."""
    monkeypatch.setattr(threading, "active_count", lambda: 1)


def test_forked_child_walks_and_hashes_as_the_thread_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _context(tmp_path, files=300)
    ignore = PatternMatcher(["app/secret.key"])
    in_thread = _prehash(ctx, ignore)
    in_thread.start(fork=False)
    expected = in_thread.take(1, 10, ["app/"], ["*.log"], False)
    _forking(monkeypatch)
    forked = _prehash(ctx, ignore)
    forked.start()
    assert forked._child is not None
    pid = forked._child.pid
    got = forked.take(1, 10, ["app/"], ["*.log"], False)
    assert got is not None and expected is not None
    assert _shape(got) == _shape(expected)      # as walked in this process (atimes aside: the first read moved them)
    for i in range(300):
        f = ctx / "app" / "sub" / f"f{i}.txt"
        assert _hashed(forked.hash_cache, f) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert _hashed(forked.hash_cache, ctx / "data.txt") == hashlib.sha256(b"data\n").hexdigest()
    assert _hashed(forked.hash_cache, ctx / "app" / "secret.key") is None      # ignored: never read
    forked.stop()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)      # reaped


def _started_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ContextPrehash:
    """A prehash of 3,000 files, started in a child."""
    _forking(monkeypatch)
    prehash = _prehash(_context(tmp_path, files=3000))
    prehash.start()
    assert prehash._child is not None
    return prehash


def test_a_child_that_dies_is_only_no_help(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prehash = _started_child(tmp_path, monkeypatch)
    assert prehash._child is not None
    os.kill(prehash._child.pid, signal.SIGKILL)
    done = threading.Event()
    taken: list[object] = []
    threading.Thread(target=lambda: (taken.append(prehash.take(1, 10, ["app/"], ["*.log"], False)), done.set()),
                     daemon=True).start()
    assert done.wait(30), "take() waited for a dead child"
    selection = taken[0]
    if selection is not None:       # the child had answered before it was killed: a whole answer
        assert len(selection.items[0].entries) == 3000 + 3     # app/, sub/, the files, secret.key
    prehash.stop()


def test_stop_kills_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prehash = _started_child(tmp_path, monkeypatch)
    assert prehash._child is not None
    pid = prehash._child.pid
    prehash.stop()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert prehash.take(1, 10, ["app/"], ["*.log"], False) is None


def test_the_child_stops_once_its_build_is_gone() -> None:
    from builder.prehash import _ParentGone

    assert not _ParentGone(os.getppid()).is_set()               # its build is there
    assert _ParentGone(os.getppid() + 1).is_set()               # it was reparented: the build is gone
