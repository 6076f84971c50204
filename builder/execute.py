"""Execute: solve the stage graph for the target, running each step for real.

The stages the target needs (``BuildGraph.order``, dependencies first; the others are never
built) are dispatched in order by ``builder.dispatch`` with ``BuildBackend``, which:

- resolves an image FROM through the ``ImageSource`` (``builder.source``) and records its digest;
- runs RUN through ``runtime.step.run_step`` on the stage's snapshot chain, as the stage's USER
  in its WORKDIR with its ENV and declared ARGs; the step's upper dir becomes the layer
  (``builder.layers.layer_from_upper``) and, adopted under its chain id, the next snapshot;
- does COPY/ADD and WORKDIR's mkdir on an overlay of the chain (``runtime.step.on_overlay``) and
  diffs the upper dir the same way;
- looks every step up in the build cache first (``builder.cache``; keys there), so a hit runs
  nothing and reuses the layer.

Lazy layers: a step of a stage whose layers no output of the build holds (a build stage only
COPY --from'd, unless ``--cache-to mode=max`` exports it) gets no blob. Its upper dir is
hashed for its diff_id (``builder.layers.upper_diff``) and adopted as its snapshot, which is
all the next step and a COPY --from read; its cache entry names that snapshot. When an output
needs such a layer after all (a later build's target, a cache export), ``with_blobs`` writes
the blob from the snapshot, the same bytes an eager commit would have written (checked by its
diff_id), and rewrites the entry. BuildKit keeps such layers in its snapshotter only, too.

A RUN right after a COPY runs ahead of it: the COPY's layer is made in a thread
(``_defer_commit``) while the RUN starts on the COPY's upper dir; the RUN's key (which names
the COPY's diff_id) is looked up once the layer is made, and a hit kills the run
(``_run_ahead``). The stage's ``layers`` settle the pending commit whenever they are read.

This is the only module of ``builder/`` that imports ``runtime/`` to execute steps.
Independent stages run concurrently (two at a time by default), each as soon as its base and
the stages it copies from are built.
"""

from __future__ import annotations

import _thread
import contextlib
import dataclasses
import hashlib
import json
import os
import posixpath
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from builder import keywords as kw
from builder.cache import BuildCache, cache_key, mark_used
from builder.copy import (
    Chmod,
    ChownSpec,
    CopyError,
    HashCache,
    PreviousCopy,
    Selection,
    copy_into,
    copy_up,
    parse_chmod,
    parse_chown,
    plan_direct_copy,
    resolve_owner,
    select_sources,
)
from builder.dispatch import LayerRef, RunProcess, StageState, dispatch_stage, link_chown_ids, mount_target, start_stage
from builder.dockerignore import PatternMatcher
from builder.errors import BuilderError, DockerfileError, LayerError
from builder.export import layer_times, timestamp
from builder.instructions import Add, Copy, Run
from builder.mounts import Mount, ram_in_bytes
from builder.progress import Progress
from builder.platforms import (
    base_platform_warning,
    can_run,
    emulation_error,
    image_platform,
    parse_platform,
    result_platform,
)
from builder.remote import EtagCache, RemoteSources, SystemGit
from builder.remote_cache import CacheUnavailable, ImportedCache, Recorder
from builder.source import GitFetcher, ImageSource, SourceError, UrlFetcher
from builder.stages import BuildGraph
from runtime.errors import RuntimeFailure
from runtime.snapshots import SnapshotStore, chain_ids, merge_into
from storage.fsutil import atomic_write, private_dir
from storage.layered import LayeredTree
from storage.layout import ImageLayout
from storage.platform import Platform
from storage.tarlimits import Limits

if TYPE_CHECKING:
    from builder.cachemounts import CacheMounts
    from builder.prehash import ContextPrehash
    from builder.sshforward import SSHSource
    from runtime.lifecycle import WarmMonitor
    from runtime.spec import Volume
    from runtime.step import ProcessSpec, StepCancel, StepResult

# Imported where a step runs, not at start-up: a fully cached build never needs the runtime's
# step machinery, the layer writer or a thread pool (start-up is most of a cached build).

TAIL_LINES = 10
# The copy records (copy.PreviousCopy) kept: one per COPY of the context, the newest, up to
# ~300 KB each for 3,000 files (a copy of more than PreviousCopy.MAX_FILES keeps none).
MAX_COPY_RECORDS = 64
TMPFS_MAX_DEFAULT = 1 << 30


def _tmpfs_max() -> int:
    """The bound on a RUN tmpfs (and its size when none is given): ``HOIST_BUILD_TMPFS_MAX``
    (``512m``, ``2g``...), default 1 GiB. The pages of a tmpfs are memory; without a bound a
    step could take half the host's (the kernel's default)."""
    value = os.environ.get("HOIST_BUILD_TMPFS_MAX")
    if not value:
        return TMPFS_MAX_DEFAULT
    try:
        return ram_in_bytes(value)
    except DockerfileError:
        raise BuilderError(f"invalid HOIST_BUILD_TMPFS_MAX {value!r} (use e.g. 512m or 2g)") from None


@dataclass
class _CachePlan:
    cache_id: str
    origin: str
    sharing: str | None
    target: str
    readonly: bool
    mode: int
    uid: int
    gid: int
    seed: Callable[[Path], None] | None


@dataclass
class _SSHPlan:
    source: SSHSource
    target: str
    uid: int
    gid: int
    mode: int


@dataclass
class _StepMounts:
    """What a RUN mounts: binds and tmpfs (``volumes``), their definitions for the cache key
    (``keys``), secret env entries, what is taken only when the step runs (``caches``,
    ``ssh``), and what to undo after it (``closers``, last first; ``scratch`` dirs)."""

    volumes: list[Volume] = field(default_factory=list)
    keys: list[dict[str, str | None]] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    caches: list[_CachePlan] = field(default_factory=list)
    ssh: list[_SSHPlan] = field(default_factory=list)
    ssh_sock: str = ""
    closers: list[Callable[[], None]] = field(default_factory=list)
    scratch: list[Path] = field(default_factory=list)

    def close(self) -> None:
        """Undo everything, even when one undo fails (the first failure is raised after)."""
        failure: BaseException | None = None
        while self.closers:
            try:
                self.closers.pop()()
            except Exception as e:
                failure = failure or e
        for path in self.scratch:
            shutil.rmtree(path, ignore_errors=True)
        if failure is not None:
            raise failure


class StepFailed(DockerfileError):
    """A RUN exited non-zero; ``tail`` holds its last output lines."""

    def __init__(self, message: str, command: str, tail: list[str]) -> None:
        super().__init__(message)
        self.command = command
        self.tail = tail


@dataclass
class BuildOptions:
    root: Path                              # $HOIST_ROOT
    context: Path | None                    # None: no context (Dockerfile from stdin)
    ignore: PatternMatcher | None = None
    platform: Platform = field(default_factory=Platform.host)   # the target platform (--platform)
    explicit_platform: bool = False         # --platform was given: the result says it is for it
    no_cache: bool = False
    compression: str = "gzip"
    network: str = "host"                   # what RUN --network=default means
    source_date_epoch: int | None = None
    all_blobs: bool = False                 # every stage's layers as blobs (--cache-to mode=max)
    secrets: dict[str, bytes] = field(default_factory=dict)    # --secret id -> value
    ssh: dict[str, SSHSource] = field(default_factory=dict)    # --ssh id -> agent or keys
    tmpfs_max: int = field(default_factory=lambda: _tmpfs_max())    # bytes; HOIST_BUILD_TMPFS_MAX


class _PendingCommit:
    """A step's commit whose layer (its upper dir's tar hashed; for a stage an output holds,
    written as a compressed blob) is made in a thread of its own (``BuildBackend._defer_commit``).
    Called, it waits for the layer and applies it (adopted, cached, on the chain); ``probe``
    functions registered before the layer is made are called with it in that thread first.
    ``below`` is the chain under the step, ``upper`` its upper dir (a RUN may mount it read-only
    as the top of its chain meanwhile: nothing writes to it any more)."""

    def __init__(self, make: Callable[[], LayerRef], below: list[LayerRef], upper: Path,
                 apply: Callable[[LayerRef], None], close: Callable[[], None], hold: bool = False) -> None:
        self.below, self.upper = below, upper
        # ``hold`` (HOIST_BUILD_RUN_AHEAD=wait, for tests): the layer is made only once the RUN
        # ahead has printed something (``go``), or the stage settles: the RUN surely runs
        # ahead, and whatever it does before its first output happens before the lookup.
        self._go = threading.Event()
        if not hold:
            self._go.set()
        self._make, self._apply, self._close = make, apply, close
        self._lock = threading.Lock()
        self._made = False
        self._probes: list[Callable[[LayerRef], None]] = []
        self._done = threading.Event()
        self._layer: LayerRef | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="commit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _work(self) -> None:
        self._go.wait(30)
        try:
            self._layer = self._make()
        except BaseException as e:      # raised where the commit is settled
            self._error = e
        with self._lock:
            self._made = True
            probes, self._probes = self._probes, []
        try:
            if self._layer is not None:
                for probe in probes:
                    with contextlib.suppress(Exception):     # a probe only saves time
                        probe(self._layer)
        finally:
            self._done.set()

    def when_made(self, probe: Callable[[LayerRef], None]) -> bool:
        """Call ``probe(layer)`` in the commit's thread once the layer is made; False (not
        registered) if it is made already."""
        with self._lock:
            if self._made:
                return False
            self._probes.append(probe)
        return True

    def go(self) -> None:
        """A held layer (``hold``) may be made now."""
        self._go.set()

    def _wait(self) -> LayerRef:
        self._go.set()
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._layer is not None
        return self._layer

    def __call__(self) -> None:
        try:
            self._apply(self._wait())
        finally:
            self._close()

    def discard(self) -> None:
        self._go.set()
        self._done.wait()
        self._close()


class _HeldOutput:
    """A RUN's output while it runs ahead of its key (``BuildBackend._run_ahead``): held until
    the lookup is done (``looked``), then let through, and dropped once the run is cancelled
    for a hit. At most ``LIMIT`` bytes are held: past that the output goes through at once,
    so a step that prints without end while a large layer is hashed costs no memory (a hit
    found after that shows the output it printed, then CACHED)."""

    LIMIT = 1 << 20

    def __init__(self, output: Callable[[bytes], None], looked: threading.Event, cancel: StepCancel,
                 first: Callable[[], None] = lambda: None) -> None:
        self._output, self._looked, self._cancel, self._first = output, looked, cancel, first
        self._held: list[bytes] = []
        self._size = 0
        self._through = False

    def write(self, data: bytes) -> None:
        self._first()       # (the pending commit's ``go``, for HOIST_BUILD_RUN_AHEAD=wait)
        if self._cancel.cancelled:
            return
        if not self._through and not self._looked.is_set() and self._size + len(data) <= self.LIMIT:
            self._held.append(data)
            self._size += len(data)
            return
        self.release()
        self._output(data)

    def release(self) -> None:
        """Everything held, out (the run is wanted), and the rest straight through."""
        self._through = True
        held, self._held, self._size = self._held, [], 0
        for data in held:
            self._output(data)


class BuildBackend:
    """Dispatch's backend that runs steps (see the module doc)."""

    FETCHES = 4         # remote cache layers downloaded at once (materialise)

    def __init__(self, opts: BuildOptions, layout: ImageLayout, source: ImageSource, progress: Progress,
                 graph: BuildGraph, *, remote: ImportedCache | None = None, fetcher: UrlFetcher | None = None,
                 git: GitFetcher | None = None, prehash: ContextPrehash | None = None) -> None:
        self.opts = opts
        self.fetcher = fetcher          # ADD <url> (None: a URL source is an error)
        self.git = git if git is not None else SystemGit()
        self.etags = EtagCache(opts.root / "cache" / "build" / "http-etags.json")   # ADD <url> revalidation
        # --cache-from: consulted on a local miss; its layers are fetched only when needed.
        self.remote = None if opts.no_cache else remote
        self.remote_keys: dict[str, str] = {}      # remote layer digest -> its key (for the local entry)
        self.recorder = Recorder()                 # what --cache-to exports
        self.layout = layout
        self.source = source
        self.progress = progress
        self.graph = graph
        self.snapshots = SnapshotStore(opts.root / "snapshots")
        self.cache = BuildCache(opts.root / "cache", layout.root / "gc-roots")
        # Stages whose steps get a blob as they commit (the others' are lazy: module doc).
        self.eager = frozenset(range(len(graph.nodes))) if opts.all_blobs else frozenset(graph.image_stages())
        self._lazy_keys: dict[str, set[str]] = {}     # a lazy layer's chain id -> the keys naming it
        self._blobbed: dict[str, LayerRef] = {}       # chain id -> the layer with_blobs made for it
        self._lazy_lock = threading.Lock()
        self._cache_mounts: CacheMounts | None = None
        self.used_mounts: dict[tuple[str, str], Path] = {}   # (cache id, origin) -> the instance used
        self.remote_sources = False    # an ADD of a URL or git ref ran: no build memo (builder.memo)
        # What a killed build left (its overlay upper and work dirs, scratch dirs); never a
        # live build's (runtime.stepowners).
        from runtime.stepowners import clean_stale

        clean_stale(opts.root)
        # Snapshots are written unsynced, and synced once, after the build (runtime.unsynced).
        from runtime.unsynced import UnsyncedWrites

        self.unsynced = UnsyncedWrites(opts.root)
        self.unsynced.open()
        self.stages: dict[int, StageState] = {}
        self.counters: dict[int, int] = {}
        self.blob_dir = layout.root / "blobs" / "sha256"
        # Context file digests by (dev, inode), trusted only while size, mtime and ctime match;
        # the COPY steps' sources walked and hashed ahead (builder.prehash), if started.
        self.prehash = prehash
        self.hash_cache = prehash.hash_cache if prehash is not None else HashCache(context_hashes(opts.root))
        self._warm = threading.local()   # this stage thread's monitor started ahead (_prewarm)
        # A RUN after a COPY starts while the COPY's layer is made (_run_ahead); "0": it waits
        # for the layer, "wait" (for tests): the layer waits for the RUN's first output.
        mode = os.environ.get("HOIST_BUILD_RUN_AHEAD")
        self.run_ahead, self._hold_commits = mode != "0", mode == "wait"
        self._filter_ahead = False      # the steps' seccomp filter compiled ahead (_prewarm)

    # -- naming steps as BuildKit does --------------------------------------------------------
    def _name(self, state: StageState, text: str) -> str:
        stage = state.node.stage
        total = 1 + sum(1 for i in stage.instructions if i.keyword in (kw.RUN, kw.COPY, kw.ADD, kw.WORKDIR))
        k = self.counters.get(stage.index, 0) + 1
        self.counters[stage.index] = k
        prefix = f"{stage.name} " if stage.name else ""
        if len(self.graph.order) > 1 and not stage.name:
            prefix = f"stage-{stage.index} "
        return f"[{prefix}{k}/{total}] {text}"

    # -- FROM -----------------------------------------------------------------------------------
    def from_image(self, state: StageState) -> None:
        began = time.monotonic()
        name = self._name(state, f"FROM {state.node.base}")
        try:
            base = self.source.resolve(state.node.base, self.stage_platform(state))
        except SourceError as e:
            self.progress.error(self.progress.start(name), str(e))
            raise DockerfileError(str(e)) from None
        # As BuildKit shows it: the resolved digest is part of the step.
        step = self.progress.start(name.replace(f"FROM {state.node.base}", f"FROM {base.ref}@{base.digest}"),
                                   "from")
        image = dict(base.config)
        image.setdefault("config", {})
        image["config"] = dict(image["config"] or {})
        state.history = [dict(h) for h in image.pop("history", None) or []]
        image.pop("rootfs", None)
        state.image = image
        state.layers = layer_times(base.layers, base.config)
        state.base_digest = base.digest
        warning = base_platform_warning(base.ref, base.config, self.stage_platform(state), state.node.stage.line)
        if warning is not None:
            state.lint.append(warning)
            self.progress.output(step, f"{warning}\n".encode())
        self.progress.done(step, time.monotonic() - began)

    def stage_platform(self, state: StageState) -> Platform:
        """The platform a stage is built for: its FROM --platform, else the target platform."""
        return parse_platform(state.node.platform) if state.node.platform else self.opts.platform

    def _check_runnable(self, state: StageState) -> None:
        """A RUN executes the stage image's binaries: refuse one this host cannot run (BuildKit
        without emulation fails it with an exec format error)."""
        image = state.image
        wanted = image_platform(image) if image.get("architecture") and image.get("os") else self.stage_platform(state)
        if not can_run(wanted):
            raise DockerfileError(emulation_error(wanted))

    # -- the snapshot chain ----------------------------------------------------------------------
    def chain(self, layers: list[LayerRef]) -> list[Path]:
        self.materialise(layers)
        ids = chain_ids([layer.diff_id for layer in layers])
        blobs = []
        for layer, chain_id in zip(layers, ids, strict=True):
            if layer.lazy:    # only its snapshot holds it; the build's lease keeps that there
                if not self.snapshots.has(chain_id):
                    raise DockerfileError(f"the snapshot of cached layer {layer.diff_id} is gone; "
                                          "'hoist builder prune' clears the cache that names it")
                blobs.append(self.snapshots.path(chain_id))      # never read: the snapshot exists
            else:
                blobs.append(self.layout.blob_path(layer.digest))
        try:
            return self.snapshots.ensure_chain(blobs, [layer.diff_id for layer in layers])
        except RuntimeFailure as e:
            raise DockerfileError(f"cannot unpack the base layers: {e}") from None

    @staticmethod
    def chain_id(layers: list[LayerRef]) -> str:
        return chain_ids([layer.diff_id for layer in layers])[-1] if layers else ""

    def _cached(self, key: str, below: list[LayerRef], peek: bool = False) -> LayerRef | None:
        """The layer the cache has for step ``key`` on the chain ``below``: a local entry whose
        blob (or, lazy, whose snapshot on that chain) is there, else a remote cache's.
        ``peek``: only whether there is one (nothing marked used or named)."""
        if self.opts.no_cache:
            return None
        hit, snapshot = self.cache.entry(key) or (None, None)
        if hit is not None and hit.lazy:
            chain_id = self.chain_id(below + [hit])
            if snapshot == chain_id and self.snapshots.has(chain_id):
                if not peek:
                    self._name_lazy(chain_id, key)
            else:
                hit = None
        elif hit is not None and not self.layout.has_blob(hit.digest):
            hit = None
        if hit is not None:
            if not peek:
                self.cache.used.add(key)
                mark_used(self.cache.root / f"{key}.json")     # its last use, for LRU pruning
            return hit
        remote = self.remote.lookup(key) if self.remote is not None else None
        if remote is not None and not peek and not self.layout.has_blob(remote.digest):
            self.remote_keys.setdefault(remote.digest, key)
        return remote

    def materialise(self, layers: list[LayerRef]) -> None:
        """Fetch the blobs of remote cache hits that are not local yet, unless the snapshot
        they would be unpacked into exists; each becomes a local cache entry."""
        if self.remote is None:
            return
        remote = self.remote
        ids = chain_ids([layer.diff_id for layer in layers])
        wanted: dict[str, LayerRef] = {}
        for layer, chain_id in zip(layers, ids, strict=True):
            if layer.lazy or self.layout.has_blob(layer.digest) or self.snapshots.has(chain_id):
                continue
            if remote.has_source(layer.digest):     # else not ours: chain() reports the missing blob
                wanted.setdefault(layer.digest, layer)
        # The downloads at once, up to FETCHES at a time (the registry calls are safe from
        # several threads): a fresh runner's chain of a base and three RUN layers, 0.12 s one
        # after the other.
        todo = list(wanted.values())
        failures: dict[str, BaseException] = {}

        def fetch() -> None:
            while todo:
                try:
                    layer = todo.pop(0)
                except IndexError:
                    return
                try:
                    remote.fetch(layer)
                except Exception as e:     # raised below, in the build's thread
                    failures[layer.digest] = e

        helpers = [threading.Thread(target=fetch, name="cache-fetch", daemon=True)
                   for _ in range(min(self.FETCHES, len(todo)) - 1)]
        for helper in helpers:
            helper.start()
        fetch()
        for helper in helpers:
            helper.join()
        for layer in wanted.values():
            failure = failures.get(layer.digest)
            if isinstance(failure, CacheUnavailable):
                raise DockerfileError(f"cannot fetch cached layer {layer.digest}: {failure}") from None
            if failure is not None:
                raise failure
            key = self.remote_keys.get(layer.digest)
            if key is not None:
                self.cache.put(key, layer)

    def rootfs_into(self, layers: list[LayerRef], target: Path) -> None:
        """The merged root file system of ``layers`` into the empty directory ``target``."""
        chain = self.chain(layers) if layers else []
        try:
            merge_into(chain, target)
        except RuntimeFailure as e:
            raise DockerfileError(f"cannot write the root file system: {e}") from None

    def _reuse(self, state: StageState, step: int, key: str) -> bool:
        """On a cache hit: the cached layer goes onto the stage, the step shows CACHED; True."""
        hit = self._cached(key, state.layers)
        if hit is None:
            return False
        state.layers.append(hit)
        self.recorder.record(state.node.stage.index, key, hit)
        self.progress.done(step, None)
        return True

    # -- monitors started ahead of the RUN steps ------------------------------------------------
    def _prewarm(self, state: StageState) -> None:
        """A step of ``state`` runs and a RUN comes later in the stage: start that RUN's monitor
        now, so its Python start-up overlaps this step. Only in a process with threads (a
        single-threaded one forks its monitors, which costs nothing), and from the stage's own
        thread (runtime.lifecycle.WarmMonitor)."""
        if state.runs_ahead and _thread._count() and getattr(self._warm, "monitor", None) is None:
            from runtime.lifecycle import WarmMonitor

            try:
                self._warm.monitor = WarmMonitor()
            except OSError:
                self._warm.monitor = None     # the step starts its monitor itself
            if not self._filter_ahead:      # and the steps' seccomp filter, into its cache
                self._filter_ahead = True
                threading.Thread(target=self._compile_filter, name="seccomp-ahead", daemon=True).start()

    def _compile_filter(self) -> None:
        from runtime.step import step_seccomp

        with contextlib.suppress(Exception):      # the step compiles it, and says what is wrong
            step_seccomp(Path(self.opts.root))

    def _take_warm(self) -> WarmMonitor | None:
        monitor, self._warm.monitor = getattr(self._warm, "monitor", None), None
        return monitor

    def discard_warm(self) -> None:
        """End this thread's unused monitor (at the end of a stage, or when it fails)."""
        monitor = self._take_warm()
        if monitor is not None:
            monitor.discard()

    def _commit(self, state: StageState, key: str, result: StepResult) -> None:
        """The step's upper dir as a layer (lazy in a stage no output holds: module doc),
        adopted as the snapshot of the new chain."""
        self._adopt(state, key, result, self._layer_of(state, result))

    def _layer_of(self, state: StageState, result: StepResult) -> LayerRef:
        """The layer of a step's upper dir: its blob written for a stage an output holds, else
        only its diff_id (lazy). Reads nothing of ``state`` but its stage's index."""
        from builder.layers import layer_from_upper, media_type, upper_diff

        try:
            if state.node.stage.index in self.eager:
                blob = layer_from_upper(result.upper, self.blob_dir, self.opts.compression,
                                        self.opts.source_date_epoch)
                return LayerRef(str(blob.digest), str(blob.diff_id), blob.size, blob.media_type,
                                created=timestamp(time.time()))
            diff = upper_diff(result.upper, self.opts.source_date_epoch)
            return LayerRef("", str(diff.diff_id), diff.size, media_type(self.opts.compression),
                            created=timestamp(time.time()))
        except LayerError as e:
            raise DockerfileError(f"cannot write the layer: {e}") from None

    def _adopt(self, state: StageState, key: str, result: StepResult, layer: LayerRef) -> None:
        chain_id = self.chain_id(state.layers + [layer])
        self.snapshots.adopt(result.upper, chain_id)
        self._put(key, layer, chain_id)
        self.recorder.record(state.node.stage.index, key, layer)
        state.layers.append(layer)

    def _defer_commit(self, state: StageState, key: str, result: StepResult, line: int | None,
                      then: Callable[[], None] | None = None) -> bool:
        """``_commit``, its layer made in a thread while the stage goes on (the next RUN starts
        at once: ``_run_ahead``); the stage's next read of its layers settles it, and then
        runs ``then``. ``result`` is closed by the pending commit; its failure is the step's
        at ``line``, wherever it is settled. False (nothing pending) if no thread could start."""
        def make() -> LayerRef:
            try:
                return self._layer_of(state, result)
            except DockerfileError as e:
                raise e.at(line) from None

        def apply(layer: LayerRef) -> None:
            self._adopt(state, key, result, layer)
            if then is not None:
                then()

        pending = _PendingCommit(make, list(state.layers), result.upper,
                                 apply, result.close, hold=self._hold_commits)
        try:
            pending.start()
        except RuntimeError:        # no thread to be had: the caller commits in line
            return False
        state.pending = pending
        return True

    @staticmethod
    def drop_pending(state: StageState) -> None:
        """A stage that failed: the commit it left pending is waited for and thrown away."""
        pending, state.pending = state.pending, None
        if isinstance(pending, _PendingCommit):
            pending.discard()

    def close(self, wait: bool = True) -> OSError | None:
        """Once the build is done with the store: its snapshots synced to disk
        (``runtime.unsynced``; ``wait=False``: by a detached ``sync -f``); the writeback error
        that kept them from it, if one did."""
        return self.unsynced.close(wait)

    def _put(self, key: str, layer: LayerRef, chain_id: str) -> None:
        if layer.lazy:
            self._name_lazy(chain_id, key)
            self.cache.put(key, layer, snapshot=chain_id)
        else:
            self.cache.put(key, layer)

    def _name_lazy(self, chain_id: str, key: str) -> None:
        with self._lazy_lock:
            self._lazy_keys.setdefault(chain_id, set()).add(key)

    def lazy_snapshots(self) -> set[str]:
        """The chain ids of the snapshots that hold the build's lazy layers (no blob made)."""
        with self._lazy_lock:
            return set(self._lazy_keys) - set(self._blobbed)

    def with_blobs(self, layers: list[LayerRef]) -> list[LayerRef]:
        """``layers`` (a chain, lowest first) with each lazy one's blob written from its snapshot
        into the store: the tar an eager commit writes, checked against the layer's diff_id.
        The cache entries that named the snapshot now name the blob."""
        from builder.layers import layer_from_upper

        out = []
        for layer, chain_id in zip(layers, chain_ids([layer.diff_id for layer in layers]), strict=True):
            if not layer.lazy:
                out.append(layer)
                continue
            with self._lazy_lock:
                done = self._blobbed.get(chain_id)
            if done is None:
                if not self.snapshots.has(chain_id):
                    raise DockerfileError(f"the snapshot of cached layer {layer.diff_id} is gone; "
                                          "'hoist builder prune' clears the cache that names it")
                try:
                    blob = layer_from_upper(self.snapshots.path(chain_id), self.layout, self.opts.compression,
                                            self.opts.source_date_epoch)
                except LayerError as e:
                    raise DockerfileError(f"cannot write the layer {layer.diff_id}: {e}") from None
                if str(blob.diff_id) != layer.diff_id:
                    raise DockerfileError(f"the snapshot of cached layer {layer.diff_id} changed (it is now "
                                          f"{blob.diff_id}); 'hoist builder prune' clears the cache that names it")
                done = dataclasses.replace(layer, digest=str(blob.digest), size=blob.size,
                                           media_type=blob.media_type)
                with self._lazy_lock:
                    self._blobbed[chain_id] = done
                    keys = sorted(self._lazy_keys.get(chain_id, ()))
                for key in keys:
                    self.cache.put(key, done)
            out.append(done)
        return out

    def blobs_for(self, stages: list[int]) -> None:
        """Every lazy layer of ``stages`` (their chains and what the recorder holds for them)
        given its blob, in place: what an export of those stages reads."""
        for index in stages:
            state = self.stages.get(index)
            if state is not None:
                state.layers[:] = self.with_blobs(state.layers)
        with self._lazy_lock:
            chain_of = {key: chain_id for chain_id, keys in self._lazy_keys.items() for key in keys}
            blobbed = dict(self._blobbed)
        with self.recorder.lock:
            for index in stages:
                entries = self.recorder.stages.get(index, [])
                for i, (key, layer) in enumerate(entries):
                    if layer.lazy:
                        # Every step a stage recorded is a layer of its chain, blobbed above.
                        entries[i] = (key, blobbed[chain_of[key]])

    # -- RUN --------------------------------------------------------------------------------------
    def run(self, state: StageState, instr: Run, process: RunProcess) -> None:
        shown = " ".join(instr.command) if instr.prepend_shell else "[" + ", ".join(
            f'"{a}"' for a in instr.command) + "]"
        step = self.progress.start(self._name(state, f"RUN {shown}"))
        network = self.opts.network if process.network == "default" else process.network
        mounts = _StepMounts()
        try:
            self._run(state, instr, process, step, network, mounts)
        finally:
            mounts.close()

    def _run(self, state: StageState, instr: Run, process: RunProcess, step: int, network: str,
             mounts: _StepMounts) -> None:
        try:
            self._check_runnable(state)
            self._run_mounts(state, instr, mounts)
        except DockerfileError as e:
            self.progress.error(step, e.message)
            raise
        for path, data in sorted(process.files.items()):
            from runtime.spec import Volume     # runtime.spec only for a step with mounts or files

            where = self._scratch_dir(mounts.scratch) / "file"
            where.write_bytes(data)
            os.chmod(where, 0o755)
            mounts.volumes.append(Volume(str(where), path, True))
            mounts.keys.append({"type": "file", "target": path, "sha256": hashlib.sha256(data).hexdigest()})
        env = list(process.env)
        if mounts.ssh_sock and not any(e.startswith("SSH_AUTH_SOCK=") for e in env):
            env.append(f"SSH_AUTH_SOCK={mounts.ssh_sock}")      # as BuildKit's llb sets it

        def key_of(parent: str) -> str:
            return cache_key({"op": "run", "parent": parent, "argv": process.argv,
                              "env": env, "cwd": process.cwd, "user": process.user, "network": network,
                              "mounts": mounts.keys, "compression": self.opts.compression,
                              "epoch": self.opts.source_date_epoch})

        tail: deque[str] = deque(maxlen=TAIL_LINES)
        pending = [b""]

        def output(data: bytes) -> None:
            self.progress.output(step, data)
            *lines, pending[0] = (pending[0] + data).split(b"\n")
            tail.extend(line.decode(errors="replace") for line in lines)

        from runtime.step import ProcessSpec

        def spec() -> ProcessSpec:     # once the mounts are attached
            # Parents before children (BuildKit sorts an exec's mounts by target).
            volumes = sorted(mounts.volumes, key=lambda v: v.target)
            return ProcessSpec(argv=process.argv, env=env + process.proxy_env + mounts.env, cwd=process.cwd,
                               user=process.user, network=network, mounts=volumes)

        began = time.monotonic()
        key: str | None = None
        result: StepResult | None = None
        if isinstance(state.pending, _PendingCommit) and not instr.mounts and not process.files:
            reused, key, result = self._run_ahead(state, state.pending, key_of, spec(), output, step)
            if reused:
                return
        if result is None:
            if key is None:
                key = key_of(self._parent_of(state, step))
                if self._reuse(state, step, key):
                    return
                began = time.monotonic()
            chain = self.chain(state.layers)
            try:
                # Held only for a step that runs: a hit neither waits for a locked cache nor
                # starts an agent.
                self._attach_mounts(mounts, step)
            except (DockerfileError, BuilderError) as e:
                message = getattr(e, "message", None) or str(e)
                self.progress.error(step, message)
                raise DockerfileError(message) from None
            result = self._start_step(state, step, chain, spec(), output)
        try:
            if pending[0]:
                tail.append(pending[0].decode(errors="replace"))
            if result.exit_code != 0:
                command = " ".join(process.argv)
                message = (f'process "{command}" did not complete successfully: '
                           f"exit code: {result.exit_code}")
                self.progress.error(step, message)
                raise StepFailed(message, command, list(tail))
            assert key is not None      # every way here looked the step up
            self._commit(state, key, result)
        finally:
            result.close()
        self.progress.done(step, time.monotonic() - began)

    def _parent_of(self, state: StageState, step: int) -> str:
        """The chain id under the step, once a commit pending on the stage is settled (whose
        failure fails the step too)."""
        try:
            return self.chain_id(state.layers)
        except DockerfileError as e:
            self.progress.error(step, e.message)
            raise

    def _start_step(self, state: StageState, step: int, chain: list[Path], spec: ProcessSpec,
                    output: Callable[[bytes], None], cancel: StepCancel | None = None) -> StepResult:
        """Run the step's process on ``chain`` (``runtime.step.run_step``) with this stage
        thread's monitor started ahead, starting the next RUN's."""
        from runtime.step import run_step

        warm = self._take_warm()
        self._prewarm(state)     # the next RUN's, while this one runs (a monitor starts in ~0.1 s)
        try:
            return run_step(self.opts.root, chain, spec, output, warm, cancel)
        except RuntimeFailure as e:
            self.progress.error(step, str(e))
            raise DockerfileError(f"cannot run the step: {e}") from None
        finally:
            if warm is not None:
                warm.discard()

    def _run_ahead(self, state: StageState, pending: _PendingCommit, key_of: Callable[[str], str],
                   spec: ProcessSpec, output: Callable[[bytes], None],
                   step: int) -> tuple[bool, str | None, StepResult | None]:
        """A RUN right after a step whose layer is still being made (``_defer_commit``: a COPY
        of many files, whose tar is hashed): its key needs that layer's diff_id, so the process
        starts at once on the step's upper dir (read-only, the top of its chain) while the
        layer is made, and the key is looked up once it is. A hit kills the process and throws
        its result away; its output is held until the lookup says it is wanted, so a hit shows
        only CACHED. Returns (reused, key, result): a hit; else the key and the run's result,
        or no result when the run was killed for a hit that was gone by the time the stage
        looked (the caller then runs it as usual), or nothing at all when the layer was made
        before the run could start (the usual way)."""
        from runtime.step import StepCancel

        below = pending.below
        cancel = StepCancel()
        looked = threading.Event()

        def probe(layer: LayerRef) -> None:     # in the commit's thread
            try:
                chain = below + [layer]
                if self._cached(key_of(self.chain_id(chain)), chain, peek=True) is not None:
                    cancel.cancel()
            finally:
                looked.set()

        if self.opts.no_cache:
            looked.set()
        elif not pending.when_made(probe):
            return False, None, None
        held = _HeldOutput(output, looked, cancel, pending.go)
        chain = self.chain(below) + [pending.upper]      # the copy read them: there already
        result = self._start_step(state, step, chain, spec, held.write, cancel)
        try:
            key = key_of(self._parent_of(state, step))
            if self._reuse(state, step, key):
                result.close()
                return True, key, None
            if cancel.cancelled:
                result.close()
                return False, key, None
        except BaseException:
            result.close()
            raise
        held.release()
        return False, key, result

    def _run_mounts(self, state: StageState, instr: Run, mounts: _StepMounts) -> None:
        """Each mount's definition for the key (never a cache mount's, a secret's or an agent's
        contents) and what can be made before the cache lookup (secrets, binds, tmpfs); cache
        mounts and agents are only noted, for ``_attach_mounts``."""
        ssh_count = 0
        for mount in instr.mounts:
            from runtime.spec import Volume, check_volume_target

            needs_target = mount.target or mount.type not in (kw.MOUNT_SECRET, kw.MOUNT_SSH)
            target = mount_target(state.workdir, mount.target) if needs_target else None
            if target is not None:
                try:
                    check_volume_target(target)
                except RuntimeFailure as e:
                    raise DockerfileError(f"RUN --mount: {e}") from None
            if mount.type == kw.MOUNT_CACHE:
                assert target is not None
                self._plan_cache(mount, target, mounts)
            elif mount.type == kw.MOUNT_TMPFS:
                assert target is not None
                mounts.volumes.append(self._tmpfs(mount, target))
                # BuildKit's definition holds the size as given (0: none).
                mounts.keys.append({"type": mount.type, "target": target,
                                    "size": str(ram_in_bytes(mount.size)) if mount.size else "0",
                                    "rw": str(not mount.readonly)})
            elif mount.type == kw.MOUNT_SSH:
                ssh_id = mount.cache_id or "default"
                ssh_target = target or f"/run/buildkit/ssh_agent.{ssh_count}"
                ssh_count += 1
                mounts.ssh_sock = mounts.ssh_sock or ssh_target       # the first one, mounted or not
                mounts.keys.append({"type": mount.type, "id": ssh_id, "target": ssh_target,
                                    "mode": mount.mode, "uid": mount.uid, "gid": mount.gid})
                agent = self.opts.ssh.get(ssh_id)
                if agent is None:
                    if mount.required:
                        raise DockerfileError(f'no SSH key "{ssh_id}" forwarded from the client (use --ssh {ssh_id})')
                    continue        # optional: no mount (SSH_AUTH_SOCK still named, as BuildKit)
                mounts.ssh.append(_SSHPlan(agent, ssh_target, int(mount.uid or 0), int(mount.gid or 0),
                                           int(mount.mode, 8) if mount.mode else 0o600))
            elif mount.type == kw.MOUNT_SECRET:
                secret_id = mount.cache_id or mount.source or posixpath.basename(target or "")
                value = self.opts.secrets.get(secret_id)
                if value is None:
                    if mount.required:
                        raise DockerfileError(f"secret {secret_id}: not found")
                    continue
                if mount.env:
                    mounts.env.append(f"{mount.env}={value.decode(errors='replace')}")
                if target is not None or not mount.env:
                    path = self._scratch_dir(mounts.scratch) / "secret"
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(value)
                    os.chown(path, int(mount.uid or 0), int(mount.gid or 0))
                    os.chmod(path, int(mount.mode, 8) if mount.mode else 0o400)
                    mounts.volumes.append(Volume(str(path), target or f"/run/secrets/{secret_id}", True))
                mounts.keys.append({"type": mount.type, "id": secret_id, "target": target, "env": mount.env})
            elif mount.type == kw.MOUNT_BIND:
                assert target is not None
                source, origin = self._bind_source(mount.source or ".", mount.from_stage)
                if mount.readonly:
                    mounts.volumes.append(Volume(str(source), target, True))
                else:  # rw: the step writes to a copy, thrown away after it
                    copy = self._scratch_dir(mounts.scratch) / "bind"
                    if source.is_dir():
                        shutil.copytree(source, copy, symlinks=True)
                    else:
                        shutil.copy2(source, copy, follow_symlinks=False)
                    mounts.volumes.append(Volume(str(copy), target, False))
                mounts.keys.append({"type": mount.type, "target": target, "origin": origin,
                                    "rw": str(not mount.readonly)})
            else:
                raise DockerfileError(f"RUN --mount=type={mount.type} is not supported by hoist build")

    def _tmpfs(self, mount: Mount, target: str) -> Volume:
        """A fresh tmpfs for the step: BuildKit's (nosuid, the size asked for) and nodev, at
        most ``tmpfs_max`` bytes (the size when none is asked for) and one inode per 4 KiB of
        it (1024 to 2^20), so the kernel memory its inodes take is bounded too."""
        from runtime.spec import Volume

        limit = self.opts.tmpfs_max
        size = ram_in_bytes(mount.size) if mount.size else limit
        if size > limit:
            raise DockerfileError(f"tmpfs mount {target}: size {mount.size} is over the bound of {limit} bytes "
                                  "(HOIST_BUILD_TMPFS_MAX)")
        if size < 4096:
            raise DockerfileError(f"tmpfs mount {target}: size {mount.size} is too small (at least 4k)")
        inodes = min(max(size // 4096, 1024), 1 << 20)
        return Volume("tmpfs", target, mount.readonly, tmpfs=f"size={size},nr_inodes={inodes}")

    def _plan_cache(self, mount: Mount, target: str, mounts: _StepMounts) -> None:
        """BuildKit's key: the id (default: the target) and what the directory starts from."""
        cache_id = mount.cache_id or target
        seed: Callable[[Path], None] | None = None
        if mount.from_stage is not None:
            layers, what = self._from_layers(mount.from_stage)
            rel = posixpath.normpath("/" + (mount.source or "/")).lstrip("/")
            origin = f"{what}:/{rel}"
            seed = self._cache_seed(layers, rel, mount.source or "/")
        elif mount.uid is not None or mount.gid is not None or mount.mode is not None:
            # BuildKit starts such a mount from its own `mkdir /cache` with these ids and mode.
            origin = f"mkdir:{int(mount.uid or 0)}:{int(mount.gid or 0)}:{int(mount.mode or '755', 8):o}"
        else:
            origin = ""
        mounts.keys.append({"type": mount.type, "target": target, "id": cache_id, "origin": origin,
                            "sharing": mount.sharing or "shared", "rw": str(not mount.readonly)})
        mounts.caches.append(_CachePlan(cache_id, origin, mount.sharing, target, mount.readonly,
                                        int(mount.mode, 8) if mount.mode else 0o755,
                                        int(mount.uid or 0), int(mount.gid or 0), seed))

    def _cache_seed(self, layers: list[LayerRef], rel: str, shown: str) -> Callable[[Path], None]:
        def seed(dest: Path) -> None:
            root = self.snapshots.flattened(self.chain(layers)) if layers else self._empty_dir()
            real_root = Path(os.path.realpath(root))
            source = Path(os.path.realpath(root / rel))
            if source != real_root and real_root not in source.parents:
                raise DockerfileError(f"cache mount source {shown!r} leaves its root")
            if not source.is_dir():
                raise DockerfileError(f'cache mount source "/{rel}": not a directory')
            shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
        return seed

    def _attach_mounts(self, mounts: _StepMounts, step: int) -> None:
        """Take the cache instances (waiting for a locked one) and start the agents. Mounts of
        one cache in one step share its instance (BuildKit's per-exec ref map); caches are taken
        in one order (by key), so two steps each waiting for the other's cannot happen."""
        from runtime.spec import Volume

        taken: dict[tuple[str, str], Path] = {}
        for plan in sorted(mounts.caches, key=lambda p: (p.cache_id, p.origin)):
            path = taken.get((plan.cache_id, plan.origin))
            if path is None:
                def waiting(plan: _CachePlan = plan) -> None:
                    self.progress.output(step, f"waiting for the locked cache mount {plan.cache_id!r}\n".encode())
                instance = self.cache_mounts.acquire(plan.cache_id, plan.origin, plan.sharing, mode=plan.mode,
                                                     uid=plan.uid, gid=plan.gid, seed=plan.seed, waiting=waiting,
                                                     first_seed=self._imported_mount(plan, step))
                mounts.closers.append(instance.close)
                path = taken[(plan.cache_id, plan.origin)] = instance.path
                self.used_mounts[(plan.cache_id, plan.origin)] = path
            mounts.volumes.append(Volume(str(path), plan.target, plan.readonly))
        if mounts.ssh:          # socket and the agents: only for a step with an ssh mount
            from builder.sshforward import AgentRelay, KeyAgent
        for ssh in mounts.ssh:
            folder = self._scratch_dir(mounts.scratch)
            upstream = ssh.source.socket
            if upstream is None:
                agent = KeyAgent(ssh.source.keys, folder)
                mounts.closers.append(agent.close)
                upstream = agent.socket
            relay = AgentRelay(folder / "relay.sock", upstream, ssh.uid, ssh.gid, ssh.mode)
            mounts.closers.append(relay.close)
            mounts.volumes.append(Volume(str(relay.path), ssh.target, False))

    def _imported_mount(self, plan: _CachePlan, step: int) -> Callable[[Path], None] | None:
        """A seed from ``--cache-from``'s copy of this cache mount (``mounts=true``), for a
        cache this host has no instance of: the blob fetched, then unpacked as any layer is
        (every bound of ``runtime/unpack.py``, no devices), checked against its diff_id."""
        layer = self.remote.mount(plan.cache_id, plan.origin) if self.remote is not None else None
        if layer is None:
            return None
        remote = self.remote
        assert remote is not None

        def seed(dest: Path) -> None:
            from builder.remote_cache import CacheUnavailable
            from runtime.errors import RuntimeFailure
            from runtime.unpack import apply_layer
            from storage.errors import StorageError

            try:
                if not self.layout.has_blob(layer.digest):
                    remote.fetch(layer)
                apply_layer(self.layout.blob_path(layer.digest), dest, expected_diff_id=layer.diff_id,
                            allow_devices=False)
            except (CacheUnavailable, RuntimeFailure, StorageError, OSError) as e:
                # A miss, not a failure: the step runs on an empty cache, as with no import.
                self.progress.output(step, f"cache mount {plan.cache_id!r}: not imported ({e})\n".encode())
                for child in list(dest.iterdir()):
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
                return
            self.progress.output(step, f"cache mount {plan.cache_id!r}: imported ({layer.size} bytes)\n".encode())
        return seed

    @property
    def cache_mounts(self) -> CacheMounts:
        if self._cache_mounts is None:
            from builder.cachemounts import CacheMounts

            self._cache_mounts = CacheMounts(self.opts.root / "cache" / "cachemounts")
        return self._cache_mounts

    @property
    def cache_grew(self) -> bool:
        """Whether this build added cache entries or used a cache mount (which may have grown)."""
        return self.cache.written > 0 or self._cache_mounts is not None

    def _scratch_dir(self, scratch: list[Path]) -> Path:
        base = self.opts.root / "build" / "scratch"
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.opts.root / "build", 0o700)
        from runtime.stepowners import claim_prefix

        path = Path(tempfile.mkdtemp(dir=base, prefix=claim_prefix(self.opts.root)))
        scratch.append(path)
        return path

    def _bind_source(self, source: str, from_stage: str | None) -> tuple[Path, str]:
        """The host path a bind mount's source names, inside its root (never out of it), and a
        digest of its contents for the key."""
        if from_stage is None:
            if self.opts.context is None:
                raise DockerfileError("a bind mount from the context needs a build context")
            root, what = self.opts.context, "context"
        else:
            layers, what = self._from_layers(from_stage)
            root = self.snapshots.flattened(self.chain(layers)) if layers else self._empty_dir()
        rel = posixpath.normpath("/" + source).lstrip("/")
        path = Path(os.path.realpath(root / rel))
        real_root = Path(os.path.realpath(root))
        if path != real_root and real_root not in path.parents:
            raise DockerfileError(f"bind mount source {source!r} leaves its root")
        if not path.exists():
            raise DockerfileError(f'bind mount source "/{rel}": not found')
        # keep_owner: the step sees the files' real owners through the bind, so they are keyed.
        selection = select_sources(root, [rel or "."], ignore=self.opts.ignore if from_stage is None else None,
                                   what=what, keep_owner=True)
        cache = self.hash_cache if from_stage is None else None
        return path, f"{what}:{selection.cache_digest(dest='/', hash_cache=cache)}"

    # -- WORKDIR ----------------------------------------------------------------------------------
    def workdir(self, state: StageState, path: str) -> None:
        step = self.progress.start(self._name(state, f"WORKDIR {path}"))
        key = cache_key({"op": "mkdir", "parent": self.chain_id(state.layers), "path": path,
                         "user": state.user, "compression": self.opts.compression,
                         "epoch": self.opts.source_date_epoch})
        if self._reuse(state, step, key):
            return
        began = time.monotonic()
        user = state.user
        epoch = self.opts.source_date_epoch

        def mkdir(_source: Path) -> None:
            uid, gid = _owner(user) if user else (0, 0)
            _makedirs(path, uid, gid, epoch)

        try:
            self._overlay_step(state, key, mkdir, None, step)
        except DockerfileError as e:
            self.progress.error(step, e.message)
            raise
        self.progress.done(step, time.monotonic() - began)

    def _overlay_step(self, state: StageState, key: str, fn: Callable[[Path], None], source: Path | None,
                      step: int, *, independent: bool = False) -> None:
        """Run ``fn`` on an overlay of the stage's chain, or (``independent``: ``COPY --link``) of
        nothing, so the new layer does not depend on what is below it."""
        from runtime.step import StepError, on_overlay

        chain = [] if independent else self.chain(state.layers)
        try:
            result = on_overlay(self.opts.root, chain, fn, source)
        except StepError as e:
            raise DockerfileError(str(e)) from None
        try:
            self._commit(state, key, result)
        finally:
            result.close()

    # -- COPY/ADD ---------------------------------------------------------------------------------
    def copy(self, state: StageState, instr: Copy | Add, dest: str) -> None:
        shown = instr.sources + tuple(f"<<{c.name}" for c in instr.contents) + (instr.dest,)
        step = self.progress.start(self._name(state, instr.original.split(None, 1)[0].upper() + " " +
                                              " ".join(shown)))
        try:
            self._copy(state, instr, dest, step)
        except DockerfileError as e:
            self.progress.error(step, e.message)
            raise

    def _copy(self, state: StageState, instr: Copy | Add, dest: str, step: int) -> None:
        began = time.monotonic()
        remote = RemoteSources.plan(instr.sources, checksum=instr.checksum, keep_git_dir=instr.keep_git_dir,
                                    unpack=instr.unpack, git=self.git) if isinstance(instr, Add) else None
        if remote is not None:
            self.remote_sources = True
        scratch: list[Path] = []
        trees: list[LayeredTree] = []
        try:
            reused = self._copy_from(state, instr, dest, step, remote, scratch, trees)
        finally:
            for tree in trees:
                tree.close()
            for path in scratch:
                shutil.rmtree(path, ignore_errors=True)
        if not reused:
            self.progress.done(step, time.monotonic() - began)

    def _copy_from(self, state: StageState, instr: Copy | Add, dest: str, step: int,
                   remote: RemoteSources | None, scratch: list[Path], trees: list[LayeredTree]) -> bool:
        """The copy of one COPY/ADD; True when the cache had it (the step shows CACHED)."""
        chmod = parse_chmod(instr.chmod) if instr.chmod else None
        chown = parse_chown(instr.chown) if instr.chown else None
        parents = isinstance(instr, Copy) and instr.parents
        unpack = isinstance(instr, Add) and instr.unpack is not False
        from_stage = instr.from_stage if isinstance(instr, Copy) else None
        root: Path | None
        source: Path | LayeredTree
        by_source: str | None = None
        patterns = remote.local if remote is not None else list(instr.sources)
        if not patterns:
            selection = Selection(root=None, groups=[], what="heredoc")
            root, origin = None, "remote" if remote is not None else "heredoc"
        else:
            if from_stage is None:
                if self.opts.context is None:
                    raise DockerfileError(f"{instr.keyword} needs a build context (the Dockerfile came from stdin)")
                root, ignore, origin, what = self.opts.context, self.opts.ignore, "context", "context"
                source = root
            else:
                # A stage or image is read in place through its chain (nothing merged or mounted);
                # the copy step gets the tree's descriptors, so nothing is bound for it.
                layers, origin = self._from_layers(from_stage)
                # The source is content-addressed (its chain id, or an image digest): a hit on
                # this key needs none of its files, so a remote source stage is not fetched.
                by_source = cache_key({"op": "copy-from", "parent": self.chain_id(state.layers), "origin": origin,
                                       "sources": list(instr.sources), "excludes": list(instr.excludes),
                                       "dest": dest, "workdir": state.workdir, "chmod": instr.chmod,
                                       "chown": instr.chown, "parents": parents, "link": instr.link,
                                       "keyword": instr.keyword, "compression": self.opts.compression,
                                       "epoch": self.opts.source_date_epoch})
                if self._reuse(state, step, by_source):
                    return True
                root = None if layers else self._empty_dir()
                source = self._open_chain(layers, trees) if layers else self._empty_dir()
                ignore, what = None, f"stage {from_stage}"
            ahead = self.prehash.take(state.node.stage.index, instr.line, patterns, instr.excludes, parents) \
                if origin == "context" and self.prehash is not None else None
            selection = ahead or select_sources(source, patterns, ignore=ignore, excludes=instr.excludes,
                                                what=what, parents=parents,
                                                hash_cache=self.hash_cache if origin == "context" else None)
        if instr.contents:  # after every path source, as BuildKit's dispatchCopy adds them
            selection = selection.with_contents([(c.name, c.data) for c in instr.contents])
        digest = selection.cache_digest(dest=dest, chmod=chmod, parents=parents, link=instr.link,
                                        unpack_archives=unpack, chown=instr.chown,
                                        hash_cache=self.hash_cache if origin == "context" else None)
        # COPY --link (without --chmod, as current BuildKit's dispatchCopy) copies onto scratch and
        # merges the result on the stage: destination paths resolve in the empty tree (a symlink of
        # the parent is not followed), missing directories are made as on scratch.
        linked = instr.link and not instr.chmod

        def step_key() -> str:
            definition = {"op": "copy", "parent": self.chain_id(state.layers), "origin": origin, "linked": linked,
                          "content": digest, "dest": dest, "keyword": instr.keyword,
                          "compression": self.opts.compression, "epoch": self.opts.source_date_epoch}
            if remote is not None:  # URL and git sources: by checksum, commit, or downloaded content
                definition["remote"] = remote.keys()
            return cache_key(definition)

        keyed = remote is None or remote.keyed
        if keyed:
            key = step_key()
            if self._reuse(state, step, key):
                self._also_under(state, by_source, key)
                return True
        self._prewarm(state)    # the copy runs
        if remote is not None:
            where, limits = self._scratch_dir(scratch), Limits()
            if not keyed:  # URLs without a checksum: keyed by what they hold now
                remote.revalidate(where, self.fetcher, limits, self.etags)
                key = step_key()
                if self._reuse(state, step, key):
                    self._also_under(state, by_source, key)
                    return True
            remote.fetch(where, self.fetcher, self.git, limits, self.etags)
            selection = remote.merge(selection)
        workdir, link = state.workdir, instr.link

        # --link: the ids are numeric or root (dispatch rejects names); resolved here, not in scratch.
        link_owner = link_chown_ids(chown) if linked and chown is not None else None

        # The same COPY but for its sources' contents: its last result may give unchanged files.
        previous = cache_key({"op": "copy-previous", "parent": self.chain_id(state.layers), "linked": linked,
                              "dest": dest, "workdir": state.workdir, "chmod": instr.chmod, "chown": instr.chown,
                              "sources": list(instr.sources), "excludes": list(instr.excludes),
                              "keyword": instr.keyword}) if origin == "context" else None
        if remote is None and not parents and not unpack and (chown is None or _numeric(chown)) \
                and self._copy_directly(state, selection, dest, key, chmod, link_owner or (
                    resolve_owner(chown, Path("/")) if chown is not None else None), linked, trees, previous,
                    defer=by_source is None, line=instr.line):
            self._also_under(state, by_source, key)
            return False
        with selection.opened() as opened:  # fetched sources: descriptors held across the chroot
            def do_copy(inner: Path) -> None:
                chosen = dataclasses.replace(opened, root=inner) if opened.root is not None else opened
                owner = link_owner or (resolve_owner(chown, Path("/")) if chown is not None else None)
                copy_into(chosen, Path("/"), dest, workdir=workdir, owner=owner, chmod=chmod, parents=parents,
                          unpack_archives=unpack, link=link)

            self._overlay_step(state, key, do_copy, root, step, independent=linked)
        self._also_under(state, by_source, key)
        return False

    def _copy_directly(self, state: StageState, selection: Selection, dest: str, key: str, chmod: Chmod | None,
                       owner: tuple[int, int] | None, linked: bool, trees: list[LayeredTree],
                       previous_key: str | None = None, defer: bool = False, line: int | None = None) -> bool:
        """A COPY that only adds to the chain (``copy.plan_direct_copy``) is written straight
        into a fresh directory that becomes its layer and snapshot, the destination's existing
        directories copied up first as overlayfs would: no overlay mount, no chrooted child,
        and copy_file_range works between the context and the snapshot store. False (nothing
        done) when the copy needs the overlay: it may follow a symlink, replace something,
        or hide something. Every path is still reached through descriptors, never followed.
        ``defer``: with a RUN later in the stage, the layer is made while the stage goes on
        (``_defer_commit``; a failure to make it is the step's at ``line``)."""
        if os.environ.get("HOIST_BUILD_COPY_OVERLAY") == "1":    # the overlay way, for comparing
            return False
        layers = [] if linked else state.layers
        tree = self._open_chain(layers, trees) if layers else None
        plan = plan_direct_copy(tree, selection, dest, workdir=state.workdir)
        if plan is None:
            return False
        from runtime.step import StepResult
        from runtime.stepowners import new_step_id

        steps = self.opts.root / "build" / "steps"
        steps.mkdir(parents=True, exist_ok=True)
        os.chmod(self.opts.root / "build", 0o700)
        folder = steps / new_step_id(self.opts.root)
        folder.mkdir(mode=0o700)
        upper = folder / "upper"
        upper.mkdir(mode=0o755)
        result = StepResult(0, upper, folder)
        copies = self.opts.root / "cache" / "build" / "copies"
        previous = self._previous_copy(copies, previous_key) if previous_key is not None else None
        record: dict[str, list[object]] = {}

        def write_record() -> None:
            if previous_key is None or not record:
                return
            doc = {"snapshot": self.chain_id(state.layers), "files": record}
            with contextlib.suppress(OSError):   # only a later copy's shortcut is lost
                private_dir(copies.parent)
                copies.mkdir(exist_ok=True)
                atomic_write(copies / f"{previous_key}.json", json.dumps(doc, separators=(",", ":")).encode(),
                             durable=False)
                keep_newest(copies, MAX_COPY_RECORDS)

        deferred = False
        try:
            try:
                if tree is not None:
                    copy_up(tree, plan, upper)
                with selection.opened() as opened:
                    copy_into(opened, upper, dest, workdir=state.workdir, owner=owner, chmod=chmod, link=linked,
                              digest_of=self.hash_cache.get_for if previous_key is not None else None,
                              previous=previous, record=record, parallel=True)
            except CopyError as e:
                raise DockerfileError(e.message) from None
            finally:
                if previous is not None:
                    previous.close()
            deferred = bool(defer and state.runs_ahead and self.run_ahead) and \
                self._defer_commit(state, key, result, line, then=write_record)
            if not deferred:
                self._commit(state, key, result)
        finally:
            if not deferred:
                result.close()
        if not deferred:
            write_record()
        return True

    def _previous_copy(self, copies: Path, key: str) -> PreviousCopy | None:
        """The last result of the copy ``key`` names (``_copy_from``'s "copy-previous"), if its
        record and snapshot are both still there."""
        try:
            doc = json.loads((copies / f"{key}.json").read_bytes())
            files, chain_id = doc["files"], doc["snapshot"]
            if not isinstance(files, dict) or not isinstance(chain_id, str) or not self.snapshots.has(chain_id):
                return None
            return PreviousCopy(self.snapshots.path(chain_id), files)
        except (OSError, ValueError, KeyError, TypeError, RuntimeFailure):
            return None

    def _open_chain(self, layers: list[LayerRef], trees: list[LayeredTree]) -> LayeredTree:
        """The merged view of ``layers``' snapshots, read in place (closed by the caller)."""
        try:
            tree = LayeredTree(self.chain(layers))
        except OSError as e:
            raise DockerfileError(f"cannot read the snapshots: {e.strerror}") from None
        trees.append(tree)
        return tree

    def _also_under(self, state: StageState, key: str | None, content_key: str) -> None:
        """The layer just put on the stage, also cached under ``key`` (COPY --from's source key);
        ``content_key`` is then secondary: a build that hit the source key never computes it."""
        if key is None:
            return
        layer = state.layers[-1]
        self.recorder.secondary.add(content_key)
        if layer.lazy:
            self._put(key, layer, self.chain_id(state.layers))
        elif self.layout.has_blob(layer.digest):
            self.cache.put(key, layer)
        self.recorder.record(state.node.stage.index, key, layer)

    def _from_layers(self, ref: str) -> tuple[list[LayerRef], str]:
        stage = self.graph.dockerfile.find_stage(ref)
        if stage is not None:
            done = self.stages.get(stage.index)
            if done is None:
                raise DockerfileError(f"stage {ref!r} is not built before it is used")
            return list(done.layers), f"stage:{self.chain_id(done.layers)}"
        try:
            base = self.source.resolve(ref, self.opts.platform)
        except SourceError as e:
            raise DockerfileError(str(e)) from None
        return list(base.layers), f"image:{base.digest}"

    def _empty_dir(self) -> Path:
        path = self.opts.root / "build" / "empty"
        path.mkdir(parents=True, exist_ok=True)
        return path


# -- inside the step's chroot (no imports from here on) ---------------------------------------------

def _numeric(spec: ChownSpec) -> bool:
    """Whether ``--chown`` names no user or group that /etc/passwd or /etc/group must resolve."""
    return (spec.user is None or spec.uid is not None) and (spec.group is None or spec.gid is not None)


def _owner(spec: str) -> tuple[int, int]:
    return resolve_owner(parse_chown(spec), Path("/"))


def _makedirs(path: str, uid: int, gid: int, epoch: int | None) -> None:
    current = "/"
    for part in [p for p in path.split("/") if p]:
        current = posixpath.join(current, part)
        if not os.path.isdir(current):
            if os.path.lexists(current):
                raise BuilderError(f"cannot create directory {current}: a file is in the way")
            os.mkdir(current, 0o755)
            os.chown(current, uid, gid)
            if epoch is not None:
                os.utime(current, (epoch, epoch))


def keep_newest(folder: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently written ``*.json`` files of ``folder`` (the
    copy records: each COPY's last one is rewritten when it runs)."""
    entries = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.endswith(".json"):
                with contextlib.suppress(FileNotFoundError):
                    entries.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name))
    entries.sort(reverse=True)
    for _, name in entries[keep:]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / name)


# -- the build --------------------------------------------------------------------------------------

def context_hashes(root: Path) -> Path:
    """Where the HashCache of the context's file digests is kept under ``$HOIST_ROOT``."""
    return root / "cache" / "build" / "context-hashes.json"


def start_prehash(opts: BuildOptions, graph: BuildGraph) -> ContextPrehash | None:
    """The walk and hashing of the context sources of the COPY/ADD steps the target needs,
    started now (``builder.prehash``); None without a context or such a step. Hand it to
    ``BuildBackend``; ``stop`` it if the build ends before ``execute``."""
    if opts.context is None:
        return None
    from builder.prehash import ContextPrehash

    steps = ((index, instr) for index in graph.order for instr in graph.nodes[index].stage.instructions)
    prehash = ContextPrehash(opts.context, opts.ignore, HashCache(context_hashes(opts.root)), steps)
    if not prehash:
        return None
    prehash.start()
    return prehash


def execute(graph: BuildGraph, backend: BuildBackend, jobs: int = 2) -> StageState:
    """Build the stages the target needs, each once its base and the stages it copies from are
    built; up to ``jobs`` independent stages at once. Returns the target's state; raises
    DockerfileError (located at its line) when a step fails (after the stages already running
    have finished, so nothing is left half-done)."""
    host = backend.opts.platform
    platform = {"architecture": host.architecture, "os": host.os, "variant": host.variant or ""}

    def build_one(index: int) -> None:
        node = graph.nodes[index]
        parent = backend.stages.get(node.base_stage) if node.base_stage is not None else None
        try:
            state = start_stage(graph, index, parent, backend, platform)
        except DockerfileError as e:
            raise e.at(node.stage.line) from None
        try:
            done = dispatch_stage(state, graph, backend)
            _ = done.layers         # a commit still pending is the stage's last layer
            backend.stages[index] = done
        finally:
            backend.discard_warm()
            backend.drop_pending(state)     # only a stage that failed has one left

    def needs(index: int) -> set[int]:
        node = graph.nodes[index]
        return set(node.deps) | ({node.base_stage} if node.base_stage is not None else set())

    try:
        target = _execute(graph, backend, jobs, build_one, needs)
    finally:
        if backend.prehash is not None:
            backend.prehash.stop()
        backend.hash_cache.save()
    result_platform(target.image, backend.opts.platform, backend.opts.explicit_platform)
    return target


def _execute(graph: BuildGraph, backend: BuildBackend, jobs: int, build_one: Callable[[int], None],
             needs: Callable[[int], set[int]]) -> StageState:
    if jobs <= 1 or len(graph.order) == 1:
        for index in graph.order:
            build_one(index)
        return backend.stages[graph.target]
    # Plain threads and a queue (concurrent.futures would import logging: ~5 ms of start-up).
    pending = list(graph.order)
    running: dict[int, threading.Thread] = {}
    finished: queue.SimpleQueue[tuple[int, BaseException | None]] = queue.SimpleQueue()
    failure: BaseException | None = None

    def run(index: int) -> None:
        try:
            build_one(index)
        except BaseException as e:  # handed to the main thread, which raises it
            finished.put((index, e))
        else:
            finished.put((index, None))

    try:
        while (pending and failure is None) or running:
            if failure is None:
                for index in [i for i in pending if needs(i) <= set(backend.stages)]:
                    if len(running) >= jobs:
                        break
                    pending.remove(index)
                    running[index] = threading.Thread(target=run, args=(index,), name=f"stage-{index}")
                    running[index].start()
            if not running:
                raise DockerfileError(f"stage {graph.nodes[pending[0]].stage.display_name} depends on a stage "
                                      "that is not built", graph.nodes[pending[0]].stage.line)
            index, error = finished.get()
            running.pop(index).join()
            if error is not None and failure is None:
                failure = error
    finally:
        # Interrupted (Ctrl-C): the stages already running finish (their steps clean up) first.
        for thread in running.values():
            thread.join()
    if failure is not None:
        raise failure
    return backend.stages[graph.target]
