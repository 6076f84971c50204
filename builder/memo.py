"""The build memo: a whole build's answer, found again by everything the build read.

A build whose every step was a cache hit reads the Dockerfile, walks and digests the context,
resolves its base images and looks up each step's key, then tags the image it found: most of
that work is start-up and the context walk. The memo keeps, for one set of inputs, what that
work ended in, so that the same build again is answered without the frontend, the executor or
the per-file digests. It is a cache of the build as a whole, never of a part of it:

- the **key** (``memo_key``): the memo format and the code that built (every hoist module's
  path, size and mtime), the build's options as they change the image (target, build args,
  platform, labels, format, compression, network), the ``HOIST_*`` and ``SOURCE_DATE_EPOCH``
  environment, the context directory, and the bytes of the Dockerfile and of the ignore file;
- the **context** (``walk_context``, ``ContextWalk.digest``): every path of the context a build
  can see (what the ignore file hides is left out, as the build leaves it out), with its type, mode, owner, size,
  device, inode, link count, mtime and ctime, taken before the build starts. A change to a
  file's bytes, mode, owner or xattrs moves its ctime, which nothing but the clock sets; adding,
  removing or renaming an entry changes the listing, which is read every time. Timestamps are
  coarse (a jiffy; a second on some file systems), so a file changed within ``RACY_NS`` of the
  walk could change again and keep them (git's "racy" files): such a file is described by its
  contents too, by the memo's walk and by every later walk that checks it (each as of the time
  the memo's walk began, so both describe it alike);
- the **images** the build resolved: each base named exactly in the local store, with the
  manifest it named (a re-tagged base is a miss);
- the **cache entries** the build used: each must still exist, a lazy one's snapshot too (an
  entry a prune or the cache's bound removed is a miss, and its step runs again), and a hit
  marks them used, as a normal cached build does, for least-recently-used pruning;
- the **answer**: the image's manifest descriptor, its id, every blob it needs (all must be in
  the store), the steps as a cached build shows them and the build checks it printed.

Builds with inputs the memo cannot see are never memoised: ``--no-cache``, ``--pull``, secrets
and SSH (a cached build still checks that they exist), ``--cache-from``/``--cache-to``/
``--push``/``--output`` (their work is not the local image), remote ``ADD`` sources (a cached
build still asks the server whether the URL changed). A memo is one JSON file, written
atomically; the newest ``KEEP`` are kept. This module imports only the standard library and the
ignore-file matcher: that is the point of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.fsutil import RACY_NS, atomic_write, private_dir

if TYPE_CHECKING:
    from builder.dockerignore import PatternMatcher

MEMO_VERSION = 2
KEEP = 64                       # memos kept (the newest)
MAX_ENTRIES = 50_000            # a larger context is not memoised (walking it costs more than it saves)
MAX_ENTRIES_ENV = "HOIST_BUILD_MEMO_MAX_ENTRIES"
MAX_RACY_BYTES = 64 << 20       # racy files read for their bytes by one digest (ContextWalk.digest)
_PACKAGES = ("storage", "registry", "builder", "runtime", "hoist")


def code_fingerprint() -> str:
    """The hoist that builds: each of its modules' path, size and mtime (what Python itself
    trusts to reuse a module's compiled code; an upgrade or an edit of any of them makes every
    memo a miss), and the Python running it."""
    h = hashlib.sha256(f"{MEMO_VERSION}\0{sys.version}\0".encode())
    base = Path(__file__).resolve().parent.parent
    for package in _PACKAGES:
        stack = [base / package]
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if e.name == "__pycache__":
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.name.endswith((".py", ".json")):
                    st = e.stat(follow_symlinks=False)
                    h.update(f"{e.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def memo_key(inputs: dict[str, Any]) -> str:
    """The memo's name for a build of ``inputs`` (JSON values) by this hoist."""
    body = json.dumps({"memo": MEMO_VERSION, "code": code_fingerprint(), "inputs": inputs},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8", "surrogateescape")).hexdigest()


class ContextWalk:
    """One walk of the context (``walk_context``): each visible entry's relative path, lstat and
    path, and when the walk began (ns)."""

    __slots__ = ("entries", "root", "started_ns")

    def __init__(self, root: os.stat_result | None, entries: list[tuple[str, os.stat_result, str]],
                 started_ns: int) -> None:
        self.root, self.entries, self.started_ns = root, entries, started_ns

    def digest(self, as_of_ns: int) -> str | None:
        """The state of the walked entries as of ``as_of_ns`` (the memo's check passes the time
        its memo's walk began, so that both describe each file alike): a regular file changed
        within ``RACY_NS`` before that is described by its contents as well as its metadata.
        None when such files hold more than ``MAX_RACY_BYTES`` or one cannot be read."""
        if self.root is None:
            return hashlib.sha256(b"no context").hexdigest()
        racy_since = as_of_ns - RACY_NS
        racy_bytes = 0
        h = hashlib.sha256(f"\0{self.root.st_mode}\0{self.root.st_dev}\0{self.root.st_ino}".encode())
        lines: list[str] = []
        try:
            for name, st, path in self.entries:
                line = (f"\n{name}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0{st.st_size}\0{st.st_dev}\0"
                        f"{st.st_ino}\0{st.st_nlink}\0{st.st_mtime_ns}\0{st.st_ctime_ns}")
                if stat.S_ISREG(st.st_mode) and max(st.st_mtime_ns, st.st_ctime_ns) >= racy_since:
                    racy_bytes += st.st_size
                    if racy_bytes > MAX_RACY_BYTES:
                        return None
                    line += "\0" + _content_digest(path, st)
                lines.append(line)
                if len(lines) > 4096:
                    h.update("".join(lines).encode("utf-8", "surrogateescape"))
                    lines.clear()
        except OSError:
            return None
        h.update("".join(lines).encode("utf-8", "surrogateescape"))
        return h.hexdigest()


class TooLarge(Exception):
    """The context has more than ``MAX_ENTRIES`` visible entries: no memo for its builds."""


def max_entries() -> int:
    """``$HOIST_BUILD_MEMO_MAX_ENTRIES`` (0: no memo), else ``MAX_ENTRIES``."""
    text = os.environ.get(MAX_ENTRIES_ENV, "")
    return int(text) if text.isdigit() else MAX_ENTRIES


def walk_context(root: Path | None, ignore: PatternMatcher | None) -> ContextWalk | None:
    """Every context path a build can see (nothing without a context), not following symlinks;
    None when the context cannot be read. Raises TooLarge past ``max_entries()`` entries."""
    started = time.time_ns()
    if root is None:
        return ContextWalk(None, [], started)
    # With "!" rules a hidden directory may hold visible paths: walk everything then (more
    # than the build sees is a stricter key, never a looser one).
    matcher = ignore if ignore is not None and not ignore.has_exclusions else None
    bound = max_entries()
    entries: list[tuple[str, os.stat_result, str]] = []
    try:
        top = os.lstat(root)
        stack = [("", os.fspath(root))]
        while stack:
            rel, path = stack.pop()
            with os.scandir(path) as it:
                found = sorted(it, key=lambda e: e.name)
            for e in found:
                name = f"{rel}/{e.name}" if rel else e.name
                if matcher is not None and matcher.matches(name):
                    continue
                st = e.stat(follow_symlinks=False)
                entries.append((name, st, e.path))
                if len(entries) > bound:
                    raise TooLarge(f"more than {bound} entries")
                if stat.S_ISDIR(st.st_mode):
                    stack.append((name, e.path))
    except OSError:
        return None
    return ContextWalk(top, entries, started)


def _content_digest(path: str, st: os.stat_result) -> str:
    """The sha256 of the regular file at ``path`` whose lstat was ``st`` (raises OSError when it
    is no longer that file)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode):
            raise OSError(f"{path} changed while the context was read")
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


class MemoStore:
    """The memos of one HOIST_ROOT: ``<dir>/<key>.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, key: str) -> dict[str, Any] | None:
        try:
            doc = json.loads((self.folder / f"{key}.json").read_bytes())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("memo") == MEMO_VERSION else None

    def written(self, key: str) -> float:
        """When the memo of ``key`` was written or last used (0 when there is none)."""
        try:
            return (self.folder / f"{key}.json").stat().st_mtime
        except OSError:
            return 0.0

    def used(self, key: str) -> None:
        """A hit: the memo's mtime is its last use (the newest ``KEEP`` are kept)."""
        try:
            os.utime(self.folder / f"{key}.json")
        except OSError:
            pass

    def save(self, key: str, record: dict[str, Any]) -> None:
        """Write the memo of ``key`` (atomically), then keep only the newest ``KEEP``. A memo
        that cannot be written is no memo: the build stands."""
        try:
            private_dir(self.folder.parent)
            private_dir(self.folder)
            atomic_write(self.folder / f"{key}.json",
                         json.dumps(dict(record, memo=MEMO_VERSION), sort_keys=True).encode(), durable=False)
            self._trim()
        except OSError:
            pass

    def _trim(self) -> None:
        memos = []
        for e in os.scandir(self.folder):
            if e.name.endswith(".json"):
                try:
                    memos.append((e.stat(follow_symlinks=False).st_mtime_ns, e.path))
                except OSError:
                    continue
        memos.sort(reverse=True)
        for _, path in memos[KEEP:]:
            try:
                os.unlink(path)
            except OSError:
                pass

    def forget(self, key: str) -> None:
        try:
            os.unlink(self.folder / f"{key}.json")
        except OSError:
            pass

    def clear(self) -> int:
        """Remove every memo (a prune: what they answered may be gone); how many."""
        removed = 0
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return 0
        for e in entries:
            try:
                os.unlink(e.path)
                removed += 1
            except OSError:
                pass
        return removed
