"""The context's COPY/ADD sources selected and hashed ahead of their steps.

A COPY from the context is keyed by the content of its sources, so before it can look in the
cache its step reads and hashes every file it copies (into the ``HashCache``, which makes the
next build's digest a walk). BuildKit transfers the context as a source of its own while the
steps before the COPY run; hoist does the same with the part of it that is work: as soon as the
stage graph is known, one thread walks the sources of each COPY/ADD the target needs (in build
order) and hashes them, while the client starts, the caches are imported and the steps before
the COPY run. The COPY step then takes that walk (``take``: waiting for it if it is still going)
when it selected what the step would select, and its digest finds every file in the HashCache.

Only what the step would read anyway is read: the sources of the stages the target needs, as
the Dockerfile writes them when no ARG or ENV can change them (no ``$`` and no escape in a
source or ``--exclude``), never a URL or a git source, never a file ``.dockerignore`` hides.
Whatever goes wrong here (a source missing, a file changing) is left for the step to find and
report: a prehash that failed is only no help. ``stop`` ends the walk between files.

The walk and the hashing are Python work, and the build's main thread is busy with its own
(imports, the registry client, the cache import) at the same time: in one process the two take
turns on the GIL, and the walk of 3,000 files (0.3 s alone) took 0.6-0.9 s beside start-up.
So when the build has no other thread yet, the work is done by a forked child (``_Child``)
instead, on the other core, which sends back each job's selection and the digests it added to
its copy of the HashCache (``HashCache.changes``); a thread of the build only receives them.
The child keys each digest by what it read, exactly as the thread would; it writes nothing
(the build saves the HashCache), stops between files once the build is gone, and its failure
is only no help."""

from __future__ import annotations

import os
import pickle
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from builder.copy import CopyError, HashCache, Matcher, Selection, select_sources
from builder.instructions import Add, Copy, Instruction

# ADD sources hoist fetches rather than reads from the context (builder.remote's classify says
# the same at the step; anything that might be one is simply not hashed ahead).
_REMOTE_MARKS = ("://", "git@")


@dataclass
class _Job:
    sources: tuple[str, ...]
    excludes: tuple[str, ...]
    parents: bool
    done: threading.Event = field(default_factory=threading.Event)
    selection: Selection | None = None


def _literal(words: Iterable[str]) -> bool:
    return all("$" not in w and "\\" not in w for w in words)


def _job_for(instr: Instruction) -> _Job | None:
    if isinstance(instr, Copy):
        if instr.from_stage is not None or not instr.sources:
            return None
        parents = instr.parents
    elif isinstance(instr, Add):
        if not instr.sources or any(mark in s for s in instr.sources for mark in _REMOTE_MARKS):
            return None
        parents = False
    else:
        return None
    if not _literal(instr.sources) or not _literal(instr.excludes):
        return None
    return _Job(tuple(instr.sources), tuple(instr.excludes), parents)


class ContextPrehash:
    """The walk and hashing of the context sources of ``instructions`` (``(stage index,
    instruction)`` in build order), in a thread of its own once ``start`` is called."""

    def __init__(self, context: Path, ignore: Matcher | None, hash_cache: HashCache,
                 instructions: Iterable[tuple[int, Instruction]]) -> None:
        self.context, self.ignore, self.hash_cache = context, ignore, hash_cache
        self._jobs: dict[tuple[int, int], _Job] = {}
        for stage, instr in instructions:
            job = _job_for(instr)
            if job is not None:
                self._jobs[(stage, instr.line)] = job
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: _Child | None = None

    def __bool__(self) -> bool:
        return bool(self._jobs)

    def start(self, fork: bool = True) -> None:
        """Start the work: in a forked child when ``fork`` and this process has no other thread
        (a fork copies only the thread that calls it), else in a thread."""
        if not self._jobs or self._thread is not None:
            return
        if fork and threading.active_count() == 1:
            try:
                self._child = _Child.fork(self)
            except OSError:
                self._child = None
        target = self._receive if self._child is not None else self._run
        self._thread = threading.Thread(target=target, name="context-prehash", daemon=True)
        self._thread.start()

    def _select(self, job: _Job) -> Selection | None:
        try:
            selection = select_sources(self.context, list(job.sources), ignore=self.ignore,
                                       excludes=job.excludes, what="context", parents=job.parents,
                                       hash_cache=self.hash_cache)
            selection.hash_contents(self.hash_cache, self._stop)
        except (CopyError, OSError):
            return None         # the step meets it again, and says so
        return None if self._stop.is_set() else selection

    def _run(self) -> None:
        try:
            for job in self._jobs.values():
                if self._stop.is_set():
                    return
                try:
                    job.selection = self._select(job)
                finally:
                    job.done.set()
        finally:
            for job in self._jobs.values():
                job.done.set()

    def _receive(self) -> None:
        """The child's answers, as they come (each job's, in build order)."""
        child = self._child
        assert child is not None
        try:
            for key, selection, changes in child.answers():
                job = self._jobs.get(key)
                if job is None or self._stop.is_set():
                    return
                self.hash_cache.merge(changes)
                job.selection = selection
                job.done.set()
        finally:
            child.end()
            for job in self._jobs.values():
                job.done.set()

    def take(self, stage: int, line: int, sources: Iterable[str], excludes: Iterable[str],
             parents: bool) -> Selection | None:
        """The selection walked ahead for the step at ``line`` of ``stage``, once its files are
        hashed, if it was made from these (expanded) arguments; else None (the step selects)."""
        job = self._jobs.get((stage, line))
        if job is None or self._thread is None:
            return None
        if (job.sources, job.excludes, job.parents) != (tuple(sources), tuple(excludes), parents):
            return None
        job.done.wait()
        if all(j.done.is_set() for j in self._jobs.values()):
            # The walk is over: its thread is gone before the step goes on, so a build with no
            # other thread still forks its RUN monitors (runtime.lifecycle).
            self._thread.join()
        selection, job.selection = job.selection, None      # taken once: a step walks its own after
        return selection

    def stop(self) -> None:
        """End the walk (between two files, or the child) and wait for its thread."""
        self._stop.set()
        if self._child is not None:
            self._child.kill()
        if self._thread is not None:
            self._thread.join()
        for job in self._jobs.values():
            job.selection = None        # walks no step took


class _ParentGone(threading.Event):
    """The child's stop: set once the build that forked it is gone (hash_contents asks between
    files; a write to the pipe of a build that is gone fails, which ends the child too)."""

    def __init__(self, parent: int) -> None:
        super().__init__()
        self.parent = parent

    def is_set(self) -> bool:
        return os.getppid() != self.parent


class _Child:
    """The forked child that walks and hashes for a ``ContextPrehash``, and its pipe."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid, self.fd = pid, fd
        self._lock = threading.Lock()

    @classmethod
    def fork(cls, prehash: ContextPrehash) -> _Child:
        r, w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            raise
        if pid == 0:                        # the child: never returns
            code = 1
            try:
                os.close(r)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                prehash._stop = _ParentGone(parent)
                with os.fdopen(w, "wb") as out:
                    for key, job in prehash._jobs.items():
                        since = prehash.hash_cache.mark()
                        selection = prehash._select(job)
                        pickle.dump((key, selection, prehash.hash_cache.changes(since)), out,
                                    protocol=pickle.HIGHEST_PROTOCOL)
                        out.flush()
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        return cls(pid, r)

    def answers(self) -> Iterable[tuple[tuple[int, int], Selection | None, dict[str, list]]]:
        """What the child sends, until it ends (a child that died mid-answer ends them)."""
        with os.fdopen(os.dup(self.fd), "rb") as f:
            while True:
                try:
                    key, selection, changes = pickle.load(f)
                except Exception:       # the end, or a child that died mid-answer: no more help
                    return
                yield key, selection, changes

    def kill(self) -> None:
        with self._lock:
            if self.pid > 0:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def end(self) -> None:
        """Reap the child (killed if it is still going) and close the pipe."""
        self.kill()
        with self._lock:
            if self.pid > 0:
                try:
                    os.waitpid(self.pid, 0)
                except ChildProcessError:
                    pass
                self.pid = 0
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
