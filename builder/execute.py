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

This is the only module of ``builder/`` that imports ``runtime/`` to execute steps.
Stages run one after the other (correctness first; independent stages are not yet run
concurrently).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import stat
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from builder import keywords as kw
from builder.cache import BuildCache, cache_key
from builder.dispatch import LayerRef, RunProcess, StageState, dispatch_stage, start_stage
from builder.dockerignore import PatternMatcher
from builder.errors import BuilderError, DockerfileError, LayerError
from builder.instructions import Add, Copy, Run
from builder.layers import layer_from_upper
from builder.source import ImageSource, SourceError
from builder.stages import BuildGraph
from runtime import users
from runtime.errors import RuntimeFailure
from runtime.snapshots import SnapshotStore, chain_ids
from runtime.spec import Volume
from runtime.step import ProcessSpec, StepError, StepResult, on_overlay, run_step
from storage.layout import ImageLayout
from storage.platform import Platform

TAIL_LINES = 10


class Progress(Protocol):
    def start(self, name: str) -> int: ...
    def output(self, step: int, data: bytes) -> None: ...
    def done(self, step: int, seconds: float | None) -> None: ...     # None: CACHED
    def error(self, step: int, message: str) -> None: ...


class PlainProgress:
    """BuildKit's plain progress: ``#N name``, output lines, ``#N DONE 0.1s`` or ``#N CACHED``."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.count = 0
        self.started: dict[int, float] = {}
        self.partial: dict[int, bytes] = {}

    def start(self, name: str) -> int:
        self.count += 1
        self.started[self.count] = time.monotonic()
        self.write(f"#{self.count} {name}\n")
        return self.count

    def output(self, step: int, data: bytes) -> None:
        buf = self.partial.get(step, b"") + data
        *lines, rest = buf.split(b"\n")
        self.partial[step] = rest
        elapsed = time.monotonic() - self.started.get(step, time.monotonic())
        for line in lines:
            self.write(f"#{step} {elapsed:.3f} {line.decode(errors='replace')}\n")

    def _flush(self, step: int) -> None:
        rest = self.partial.pop(step, b"")
        if rest:
            self.output(step, rest + b"\n")
            self.partial.pop(step, None)

    def done(self, step: int, seconds: float | None) -> None:
        self._flush(step)
        self.write(f"#{step} CACHED\n\n" if seconds is None else f"#{step} DONE {seconds:.1f}s\n\n")

    def error(self, step: int, message: str) -> None:
        self._flush(step)
        self.write(f"#{step} ERROR: {message}\n\n")


class QuietProgress:
    def start(self, name: str) -> int:
        return 0

    def output(self, step: int, data: bytes) -> None:
        pass

    def done(self, step: int, seconds: float | None) -> None:
        pass

    def error(self, step: int, message: str) -> None:
        pass


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
    platform: Platform = field(default_factory=Platform.host)
    no_cache: bool = False
    compression: str = "gzip"
    network: str = "host"                   # what RUN --network=default means
    source_date_epoch: int | None = None


@dataclass(frozen=True)
class _Source:
    """One selected source entry: its path under the source root and where it goes."""

    rel: str
    dest: str
    kind: str        # "dir" | "file" | "link"


class BuildBackend:
    """Dispatch's backend that runs steps (see the module doc)."""

    def __init__(self, opts: BuildOptions, layout: ImageLayout, source: ImageSource, progress: Progress,
                 graph: BuildGraph) -> None:
        self.opts = opts
        self.layout = layout
        self.source = source
        self.progress = progress
        self.graph = graph
        self.snapshots = SnapshotStore(opts.root / "snapshots")
        self.cache = BuildCache(opts.root / "cache", layout.root / "gc-roots")
        self.stages: dict[int, StageState] = {}
        self.counters: dict[int, int] = {}
        self.blob_dir = layout.root / "blobs" / "sha256"

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
        step = self.progress.start(self._name(state, f"FROM {state.node.base}"))
        began = time.monotonic()
        try:
            base = self.source.resolve(state.node.base, self.opts.platform)
        except SourceError as e:
            self.progress.error(step, str(e))
            raise DockerfileError(str(e)) from None
        image = dict(base.config)
        image.setdefault("config", {})
        image["config"] = dict(image["config"] or {})
        state.history = [dict(h) for h in image.pop("history", None) or []]
        image.pop("rootfs", None)
        state.image = image
        state.layers = list(base.layers)
        state.base_digest = base.digest
        self.progress.done(step, time.monotonic() - began)

    # -- the snapshot chain ----------------------------------------------------------------------
    def chain(self, layers: list[LayerRef]) -> list[Path]:
        try:
            return self.snapshots.ensure_chain([self.layout.blob_path(layer.digest) for layer in layers],
                                               [layer.diff_id for layer in layers])
        except RuntimeFailure as e:
            raise DockerfileError(f"cannot unpack the base layers: {e}") from None

    @staticmethod
    def chain_id(layers: list[LayerRef]) -> str:
        return chain_ids([layer.diff_id for layer in layers])[-1] if layers else ""

    def _cached(self, key: str) -> LayerRef | None:
        if self.opts.no_cache:
            return None
        hit = self.cache.get(key)
        if hit is None or not self.layout.has_blob(hit.digest):
            return None
        return hit

    def _commit(self, state: StageState, key: str, result: StepResult) -> None:
        """The step's upper dir as a layer, adopted as the snapshot of the new chain."""
        try:
            blob = layer_from_upper(result.upper, self.blob_dir, self.opts.compression,
                                    self.opts.source_date_epoch)
        except LayerError as e:
            raise DockerfileError(f"cannot write the layer: {e}") from None
        layer = LayerRef(str(blob.digest), str(blob.diff_id), blob.size, blob.media_type)
        new_chain = state.layers + [layer]
        self.snapshots.adopt(result.upper, self.chain_id(new_chain))
        self.cache.put(key, layer)
        state.layers.append(layer)

    # -- RUN --------------------------------------------------------------------------------------
    def run(self, state: StageState, instr: Run, process: RunProcess) -> None:
        shown = " ".join(instr.command) if instr.prepend_shell else "[" + ", ".join(
            f'"{a}"' for a in instr.command) + "]"
        step = self.progress.start(self._name(state, f"RUN {shown}"))
        network = self.opts.network if process.network == "default" else process.network
        volumes, mount_keys = self._run_mounts(state, instr)
        key = cache_key({"op": "run", "parent": self.chain_id(state.layers), "argv": process.argv,
                         "env": process.env, "cwd": process.cwd, "user": process.user, "network": network,
                         "mounts": mount_keys, "compression": self.opts.compression,
                         "epoch": self.opts.source_date_epoch})
        hit = self._cached(key)
        if hit is not None:
            state.layers.append(hit)
            self.progress.done(step, None)
            return
        began = time.monotonic()
        chain = self.chain(state.layers)
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        pending = [b""]

        def output(data: bytes) -> None:
            self.progress.output(step, data)
            *lines, pending[0] = (pending[0] + data).split(b"\n")
            tail.extend(line.decode(errors="replace") for line in lines)

        spec = ProcessSpec(argv=process.argv, env=process.env, cwd=process.cwd, user=process.user,
                           network=network, mounts=volumes)
        try:
            result = run_step(self.opts.root, chain, spec, output)
        except RuntimeFailure as e:
            self.progress.error(step, str(e))
            raise DockerfileError(f"cannot run the step: {e}") from None
        try:
            if pending[0]:
                tail.append(pending[0].decode(errors="replace"))
            if result.exit_code != 0:
                command = " ".join(process.argv)
                message = (f'process "{command}" did not complete successfully: '
                           f"exit code: {result.exit_code}")
                self.progress.error(step, message)
                raise StepFailed(message, command, list(tail))
            self._commit(state, key, result)
        finally:
            result.close()
        self.progress.done(step, time.monotonic() - began)

    def _run_mounts(self, state: StageState, instr: Run) -> tuple[list[Volume], list[dict[str, str | None]]]:
        volumes: list[Volume] = []
        keys: list[dict[str, str | None]] = []
        for mount in instr.mounts:
            if mount.type != kw.MOUNT_CACHE:
                raise DockerfileError(f"RUN --mount=type={mount.type} is not supported by hoist build yet")
            target = posixpath.normpath(posixpath.join(state.workdir, mount.target or ""))
            cache_id = mount.cache_id or target
            where = self.opts.root / "cache" / "mounts" / hashlib.sha256(cache_id.encode()).hexdigest()
            if not where.is_dir():
                where.mkdir(parents=True, exist_ok=True)
                os.chmod(where, int(mount.mode, 8) if mount.mode else 0o755)
                os.chown(where, int(mount.uid or 0), int(mount.gid or 0))
            volumes.append(Volume(str(where), target, False))
            # The definition is in the key, never the contents.
            keys.append({"type": mount.type, "target": target, "id": cache_id, "sharing": mount.sharing,
                         "mode": mount.mode, "uid": mount.uid, "gid": mount.gid})
        return volumes, keys

    # -- WORKDIR ----------------------------------------------------------------------------------
    def workdir(self, state: StageState, path: str) -> None:
        step = self.progress.start(self._name(state, f"WORKDIR {path}"))
        key = cache_key({"op": "mkdir", "parent": self.chain_id(state.layers), "path": path,
                         "user": state.user, "compression": self.opts.compression,
                         "epoch": self.opts.source_date_epoch})
        hit = self._cached(key)
        if hit is not None:
            state.layers.append(hit)
            self.progress.done(step, None)
            return
        began = time.monotonic()
        user = state.user
        epoch = self.opts.source_date_epoch

        def mkdir(_source: Path) -> None:
            uid, gid = _owner(user) if user else (0, 0)
            _makedirs(path, uid, gid, epoch)

        self._overlay_step(state, key, mkdir, None, step)
        self.progress.done(step, time.monotonic() - began)

    def _overlay_step(self, state: StageState, key: str, fn: Callable[[Path], None], source: Path | None,
                      step: int) -> None:
        chain = self.chain(state.layers)
        try:
            result = on_overlay(self.opts.root, chain, fn, source)
        except StepError as e:
            self.progress.error(step, str(e))
            raise DockerfileError(str(e)) from None
        try:
            self._commit(state, key, result)
        finally:
            result.close()

    # -- COPY/ADD ---------------------------------------------------------------------------------
    def copy(self, state: StageState, instr: Copy | Add, dest: str) -> None:
        step = self.progress.start(self._name(state, instr.original.split(None, 1)[0].upper() + " " +
                                              " ".join(instr.sources + (instr.dest,))))
        try:
            self._copy(state, instr, dest, step)
        except DockerfileError as e:
            self.progress.error(step, e.message)
            raise

    def _copy(self, state: StageState, instr: Copy | Add, dest: str, step: int) -> None:
        began = time.monotonic()
        unsupported = [name for name, used in (
            ("heredoc sources", bool(instr.contents)), ("--link", instr.link), ("--exclude", bool(instr.excludes)),
            ("--parents", isinstance(instr, Copy) and instr.parents),
            ("--checksum", isinstance(instr, Add) and bool(instr.checksum))) if used]
        if unsupported:
            raise DockerfileError(f"{instr.keyword} {', '.join(unsupported)}: not supported by hoist build yet")
        from_stage = instr.from_stage if isinstance(instr, Copy) else None
        ignore = None
        if from_stage is None:
            if self.opts.context is None:
                raise DockerfileError(f"{instr.keyword} needs a build context (the Dockerfile came from stdin)")
            root = self.opts.context
            ignore = self.opts.ignore
            origin = "context"
        else:
            layers, origin = self._from_layers(from_stage)
            root = self.snapshots.flattened(self.chain(layers)) if layers else self._empty_dir()
        chmod = None
        if instr.chmod:
            chmod = _parse_octal_chmod(instr.chmod)
        selected, digest = _select(root, list(instr.sources), dest, ignore, instr.keyword)
        key = cache_key({"op": "copy", "parent": self.chain_id(state.layers), "origin": origin,
                         "content": digest, "dest": dest, "chown": instr.chown, "chmod": instr.chmod,
                         "keyword": instr.keyword, "compression": self.opts.compression,
                         "epoch": self.opts.source_date_epoch})
        hit = self._cached(key)
        if hit is not None:
            state.layers.append(hit)
            self.progress.done(step, None)
            return
        chown = instr.chown
        epoch = self.opts.source_date_epoch
        single_file = len(selected) == 1 and selected[0].kind != "dir" and not dest.endswith("/")

        def do_copy(source: Path) -> None:
            uid, gid = _owner(chown) if chown else (0, 0)
            _copy_entries(source, selected, dest, single_file, uid, gid, chmod, epoch)

        self._overlay_step(state, key, do_copy, root, step)
        self.progress.done(step, time.monotonic() - began)

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


def _parse_octal_chmod(spec: str) -> int:
    if not spec or any(c not in "01234567" for c in spec) or int(spec, 8) > 0o7777:
        raise DockerfileError(f"invalid chmod parameter: '{spec}'. it should be octal string and "
                              "between 0 and 07777")
    return int(spec, 8)


# -- selecting sources (on the host, never following a symlink) -----------------------------------

def _clean(src: str) -> str:
    """A source path relative to its root, clamped to it ("../x" is "x"), as BuildKit does."""
    return posixpath.normpath("/" + src).lstrip("/")


def _match(root: Path, pattern: str) -> list[str]:
    """Paths under ``root`` matching ``pattern`` component by component (Go's filepath.Match:
    ``*`` never crosses a ``/``)."""
    if not any(c in pattern for c in "*?["):
        return [pattern] if pattern == "" or os.path.lexists(root / pattern) else []
    found = [""]
    for part in pattern.split("/"):
        nxt = []
        for base in found:
            directory = root / base if base else root
            if not directory.is_dir() or directory.is_symlink():
                continue
            names = sorted(os.listdir(directory))
            if any(c in part for c in "*?["):
                nxt += [posixpath.join(base, n) for n in names if fnmatch.fnmatchcase(n, part.replace("[^", "[!"))]
            elif part in names:
                nxt.append(posixpath.join(base, part))
        found = nxt
    return found


def _select(root: Path, sources: list[str], dest: str, ignore: PatternMatcher | None,
            keyword: str) -> tuple[list[_Source], str]:
    """What a COPY takes from ``root`` and where each entry goes (relative to ``dest``), and the
    content digest of it all (paths, types, modes, link targets, contents; not mtimes)."""
    entries: list[_Source] = []
    for src in sources:
        pattern = _clean(src)
        matches = [m for m in _match(root, pattern) if not (ignore and m and ignore.matches(m))]
        if not matches:
            if ignore and pattern and ignore.matches(pattern) and os.path.lexists(root / pattern):
                raise DockerfileError(f'{keyword} failed: "{src}" is excluded by .dockerignore')
            raise DockerfileError(f'{keyword} failed: file not found in build context or excluded by '
                                  f'.dockerignore: "/{pattern}": not found')
        many = len(sources) > 1 or len(matches) > 1
        for rel in matches:
            st = os.lstat(root / rel) if rel else os.stat(root)
            if stat.S_ISDIR(st.st_mode):
                entries += _walk(root, rel, "", ignore)
            else:
                name = posixpath.basename(rel)
                entries.append(_Source(rel, name if (many or dest.endswith("/")) else "",
                                       "link" if stat.S_ISLNK(st.st_mode) else "file"))
    if len(sources) > 1 and not dest.endswith("/"):
        raise DockerfileError(f"When using {keyword} with more than one source file, the destination must be "
                              "a directory and end with a /")
    hasher = hashlib.sha256()
    for entry in entries:
        path = root / entry.rel if entry.rel else root
        st = os.lstat(path)
        hasher.update(f"{entry.dest}\0{entry.kind}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
        if entry.kind == "link":
            hasher.update(os.readlink(path).encode() + b"\0")
        elif entry.kind == "file":
            if not stat.S_ISREG(st.st_mode):
                raise DockerfileError(f'{keyword} failed: "/{entry.rel}" is not a regular file, directory or symlink')
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    hasher.update(block)
            hasher.update(b"\0")
    return entries, "sha256:" + hasher.hexdigest()


def _walk(root: Path, rel: str, prefix: str, ignore: PatternMatcher | None) -> list[_Source]:
    """A directory's contents (not itself), parents before children, names sorted."""
    out: list[_Source] = []
    stack = [(rel, prefix)]
    while stack:
        src, dst = stack.pop()
        directory = root / src if src else root
        for name in sorted(os.listdir(directory), reverse=True):
            child, target = posixpath.join(src, name) if src else name, posixpath.join(dst, name) if dst else name
            if ignore and ignore.matches(child):
                continue
            st = os.lstat(root / child)
            if stat.S_ISDIR(st.st_mode):
                out.append(_Source(child, target, "dir"))
                stack.append((child, target))
            else:
                out.append(_Source(child, target, "link" if stat.S_ISLNK(st.st_mode) else "file"))
    out.sort(key=lambda e: e.dest)
    return out


# -- inside the step's chroot (no imports from here on) ---------------------------------------------

def _owner(spec: str) -> tuple[int, int]:
    try:
        user = users.resolve_user(spec)
    except users.UserNotFound as e:
        raise BuilderError(f"unable to convert uid/gid chown string to host mapping: {e}") from None
    return user.uid, user.gid


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


def _copy_entries(source: Path, entries: list[_Source], dest: str, single_file: bool, uid: int, gid: int,
                  chmod: int | None, epoch: int | None) -> None:
    if single_file:
        target = dest.rstrip("/") or "/"
        if os.path.isdir(target):
            target = posixpath.join(target, posixpath.basename(entries[0].rel))
        _makedirs(posixpath.dirname(target), uid, gid, epoch)
        _copy_one(source / entries[0].rel, target, entries[0].kind, uid, gid, chmod)
        return
    _makedirs(dest, uid, gid, epoch)
    for entry in entries:
        _copy_one(source / entry.rel, posixpath.join(dest, entry.dest), entry.kind, uid, gid, chmod)


def _copy_one(src: Path, target: str, kind: str, uid: int, gid: int, chmod: int | None) -> None:
    st = os.lstat(src)
    if kind == "dir":
        if not os.path.isdir(target) or os.path.islink(target):
            if os.path.lexists(target):
                os.unlink(target)
            os.mkdir(target, 0o700)
        os.chown(target, uid, gid)
        os.chmod(target, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
        os.utime(target, ns=(st.st_mtime_ns, st.st_mtime_ns))
        return
    if os.path.lexists(target):
        if os.path.isdir(target) and not os.path.islink(target):
            raise BuilderError(f"cannot replace directory {target} with a file")
        os.unlink(target)
    if kind == "link":
        os.symlink(os.readlink(src), target)
        os.chown(target, uid, gid, follow_symlinks=False)
        os.utime(target, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
        return
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd_out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while block := os.read(fd_in, 1 << 20):
                os.write(fd_out, block)
            os.fchown(fd_out, uid, gid)
            os.fchmod(fd_out, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
            os.utime(fd_out, ns=(st.st_mtime_ns, st.st_mtime_ns))
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


# -- the build --------------------------------------------------------------------------------------

def execute(graph: BuildGraph, backend: BuildBackend) -> StageState:
    """Build the stages the target needs, dependencies first; returns the target's state.
    Raises DockerfileError (located at its line) when a step fails."""
    host = backend.opts.platform
    platform = {"architecture": host.architecture, "os": host.os, "variant": host.variant or ""}
    for index in graph.order:
        node = graph.nodes[index]
        parent = backend.stages.get(node.base_stage) if node.base_stage is not None else None
        try:
            state = start_stage(graph, index, parent, backend, platform)
        except DockerfileError as e:
            raise e.at(node.stage.line) from None
        backend.stages[index] = dispatch_stage(state, graph, backend)
    return backend.stages[graph.target]
