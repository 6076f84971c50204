"""COPY and ADD: choosing sources, hashing them for the cache key, and copying them onto a rootfs.

The semantics are BuildKit's (``dockerfile2llb`` + ``solver/llbsolver/file`` + fsutil's copy),
and the Dockerfile reference's for what docker 20.10's BuildKit lacks (``--parents``,
``--exclude``, heredoc sources, symbolic ``--chmod``):

Sources (``select_sources``)
  Each source is cleaned as ``filepath.Join("/", src)``, so ``../x`` and ``/x`` name ``x`` inside
  the source root. Symlinks along a source path, the final one included, are followed, resolved
  as if the root were ``/`` (continuity's ``fs.RootPath``); inside a copied directory symlinks
  stay symlinks. Wildcards are Go's ``filepath.Match`` (``*``, ``?``, ``[...]``, ``\\``): the
  components before the first wildcard are resolved, the rest are matched against the paths below
  them (a matched directory is not searched further), in lexical order. A directory copies its
  contents. Paths hidden by ``.dockerignore`` do not exist; naming one is an error that says so
  (a directory a ``!`` rule brings something back from exists, holding just that).
  ``--exclude`` patterns (.dockerignore syntax) drop what lies inside a copied source, matched
  against the path below it, and wildcard matches, matched against the path below the wildcard's
  base; a source named without a wildcard is never dropped (fsutil matches srcComponents only).
  With ``--parents`` an item keeps its path below the context root, or below ``/./`` in the
  source (the pivot).
  Files taken from the context belong to root (0:0), files from a stage or image keep their
  owners; modes, mtimes and xattrs are kept. Regular files linked to each other inside one source
  (one wildcard match) stay hard links: fsutil keeps an inode map per copied match.

Destination (``copy_into``)
  A relative destination is joined to WORKDIR; a trailing ``/`` (or ``.``) makes it a directory.
  Symlinks on the destination path resolve inside the root (never outside it). Missing parent
  directories are created 0755, owned by the ``--chown`` owner (root without one), and the
  destination directory itself, when it is created for a directory source, too (fsutil's
  ``MkdirAll``): it never takes the source directory's metadata, and an existing one keeps its
  own. Inside a copied tree, an existing directory takes the source's metadata, a file or symlink
  replaces what is there, and a non-directory where a directory must go is an error (BuildKit's
  ``cannot copy to non-directory``). ``--chmod`` applies to every copied file and directory (not
  to symlinks, nor to the directories created on the way); octal replaces the permission and
  set-id bits, symbolic modes edit them as chmod(1) does with a umask of 0.

ADD archives
  With ``unpack_archives`` a source that is a regular file holding a tar (uncompressed, gzip,
  bzip2, xz or zstd, told apart by content) is extracted into the destination directory as
  current BuildKit does (``applyRootArchive``): as if that directory were ``/`` (absolute symlinks
  stay inside it), a member named outside it is an error, a relative symlink is kept as written
  but going through one that climbs out is an error; entries keep the archive's modes, times and
  owners, or all take the ``--chown`` owner (docker 20.10 ignored ``--chown`` there); directories
  the archive implies are made 0755 for root; ``--chmod`` does not apply. Anything else is copied.

Cache key (``Selection.cache_digest``)
  A sha256 over the relative paths, types, modes, owners (after ``--chown``), link targets,
  hard-link groups, device numbers, xattrs and file contents of the selection, plus every option
  that changes the result. Times are never part of it. File contents may come from a
  ``HashCache``, trusted only when device, inode, size, mtime and ctime all match, and never
  recorded for a file changed in the last two seconds (timestamps are coarse: an edit right after
  hashing could keep the ctime; git's "racy" rule).

Everything is reached through descriptors opened with ``openat2(RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS)`` on paths whose symlinks were first resolved by hand inside the root (the
source's or the destination's), and names are then used only relative to those descriptors
(``O_NOFOLLOW``, ``AT_SYMLINK_NOFOLLOW``), so neither a hostile context nor a hostile image can
make a read or a write land outside its root. ``/proc`` is not needed (the
copy may run in a chroot).
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import errno
import gzip
import hashlib
import json
import lzma
import os
import re
import stat
import struct
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar

from builder.dockerignore import PatternMatcher, check_go_pattern, go_clean
from builder.errors import DockerfileError, DockerignoreError
from storage.fsutil import RACY_NS as _RACY_NS
from storage.layered import LayeredTree
from storage.openat2 import RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, openat2
from storage.tarlimits import Limits, bounded_tarinfo
from storage.tree import OVERLAY_XATTR_PREFIXES, remove_dir_at

Matcher = PatternMatcher
# A source root: a directory's descriptor, or the merged view of a snapshot chain (COPY --from).
SourceRoot = int | LayeredTree

_STRICT = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_MAX_LINKS = 255          # continuity's fs.RootPath gives up after 255 links
_MAX_ID_FILE = 16 << 20   # /etc/passwd and /etc/group larger than this are refused
_CHUNK = 1 << 20
_LENGTH = struct.Struct(">Q")
MULTI_SOURCE_ERROR = ("When using COPY with more than one source file, the destination must be a "
                      "directory and end with a /")

_T = TypeVar("_T")


class CopyError(DockerfileError):
    """A COPY/ADD that cannot be done: a missing or ignored source, a bad flag, a destination
    that does not fit, an escape attempt, a full disk. ``.at(line)`` places it in the Dockerfile."""


# -- --chmod ------------------------------------------------------------------------------------

_CHMOD_OCTAL_ERROR = "invalid chmod parameter: '{}'. it should be octal string and between 0 and 07777"
_WHO_BITS = {"u": 0o4700, "g": 0o2070, "o": 0o0007}


@dataclass(frozen=True)
class _Clause:
    who: str            # subset of "ugo"; "" means all (umask 0)
    op: str             # "+", "-" or "="
    perms: str          # subset of "rwxXst", or one of "u", "g", "o" (copy)


@dataclass(frozen=True)
class Chmod:
    """A parsed ``--chmod``: octal (``octal`` set) or symbolic (``clauses``)."""

    text: str
    octal: int | None = None
    clauses: tuple[_Clause, ...] = ()

    def apply(self, mode: int, is_dir: bool) -> int:
        """The permission and set-id bits (``& 0o7777``) a file of ``mode`` gets."""
        if self.octal is not None:
            return self.octal
        current = mode & 0o7777
        for clause in self.clauses:
            current = _apply_clause(clause, current, is_dir)
        return current


def _apply_clause(clause: _Clause, current: int, is_dir: bool) -> int:
    who = clause.who or "ugo"
    mask = 0
    for w in who:
        mask |= _WHO_BITS[w]
    if clause.perms in ("u", "g", "o"):
        src = clause.perms
        shift = {"u": 6, "g": 3, "o": 0}[src]
        rwx = (current >> shift) & 0o7
        bits = 0
        for w in who:
            bits |= rwx << {"u": 6, "g": 3, "o": 0}[w]
    else:
        bits = 0
        for p in clause.perms:
            if p == "r":
                bits |= 0o444
            elif p == "w":
                bits |= 0o222
            elif p == "x":
                bits |= 0o111
            elif p == "X":
                if is_dir or current & 0o111:
                    bits |= 0o111
            elif p == "s":
                bits |= 0o6000
            elif p == "t":
                bits |= 0o1000
        # "t" is only meaningful for "o"/"a"; "s" only for "u" and "g".
        sticky = bits & 0o1000 if (not clause.who or "o" in clause.who) else 0
        bits = (bits & mask & ~0o1000) | sticky
    if clause.op == "+":
        return current | bits
    if clause.op == "-":
        return current & ~bits
    keep = current & ~(mask | (0o1000 if (not clause.who or "o" in clause.who) else 0))
    return keep | bits


_CLAUSE = re.compile(r"([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)\Z")
_ACTION = re.compile(r"([-+=])([ugo]|[rwxXst]*)")


def parse_chmod(spec: str) -> Chmod:
    """Parse a ``--chmod`` value (``755``, ``0644``, ``u+x``, ``g-w,o=r``, ``a+X``); raises CopyError."""
    if re.fullmatch(r"[0-9]+", spec):
        if re.fullmatch(r"[0-7]+", spec) and int(spec, 8) <= 0o7777:
            return Chmod(spec, octal=int(spec, 8))
        raise CopyError(_CHMOD_OCTAL_ERROR.format(spec))
    if not spec:
        raise CopyError(_CHMOD_OCTAL_ERROR.format(spec))
    clauses: list[_Clause] = []
    for part in spec.split(","):
        m = _CLAUSE.match(part)
        if m is None:
            raise CopyError(f"invalid chmod parameter: {spec!r}: {part!r} is not a symbolic mode "
                            "([ugoa]*[-+=][rwxXst]*, or octal between 0 and 07777)")
        who = "ugo" if "a" in m.group(1) else "".join(sorted(set(m.group(1)), key="ugo".index))
        for action in _ACTION.finditer(m.group(2)):
            clauses.append(_Clause(who, action.group(1), action.group(2)))
    return Chmod(spec, clauses=tuple(clauses))


# -- --chown ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChownSpec:
    """``user[:group]``; each part is a number (``uid``/``gid``) or a name to look up."""

    text: str
    user: str | None
    group: str | None
    uid: int | None = None
    gid: int | None = None


def _numeric(text: str) -> int | None:
    # strconv.ParseUint(text, 10, 32), as BuildKit's parseUser.
    if text.isascii() and text.isdigit():
        value = int(text)
        if value < 1 << 32:
            return value
    return None


def parse_chown(spec: str) -> ChownSpec:
    """Parse ``--chown`` (``user``, ``user:group``, ``:group``, names or ids); raises CopyError."""
    if spec == "":
        raise CopyError("--chown needs a user: --chown=user[:group]")
    # llb.WithUser: SplitN(spec, ":", 2); an empty part names nobody and leaves the default
    # (uid 0; the user's primary group), so "app:" is "app" and ":staff" is "0:staff".
    user, _, group = spec.partition(":")
    for name in (user, group):
        if any(c in name for c in "\n\x00"):
            raise CopyError(f"invalid --chown {spec!r}")
    return ChownSpec(spec, user or None, group or None,
                     uid=_numeric(user) if user else None, gid=_numeric(group) if group else None)


def _read_in_root(rootfs: Path, path: str) -> bytes | None:
    """A file of ``rootfs`` read with every symlink resolved inside it; None when it is missing."""
    try:
        rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CopyError(f"cannot open the destination root {rootfs}: {e.strerror}") from None
    try:
        try:
            fd = openat2(rootfd, path.lstrip("/"), os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY,
                               RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None
            raise CopyError(f"cannot read {path} of the image: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            if st.st_size > _MAX_ID_FILE:
                raise CopyError(f"{path} of the image is larger than {_MAX_ID_FILE} bytes")
            with os.fdopen(os.dup(fd), "rb") as f:
                return f.read(_MAX_ID_FILE + 1)[:_MAX_ID_FILE]
        finally:
            os.close(fd)
    finally:
        os.close(rootfd)


def _id_lines(data: bytes | None) -> Iterator[list[str]]:
    if data is None:
        return
    for line in data.decode("utf-8", "surrogateescape").split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        yield line.split(":")


def _field_int(fields: list[str], index: int) -> int:
    # runc's user.ParsePasswd: a missing or bad number reads as 0.
    try:
        return int(fields[index]) if index < len(fields) else 0
    except ValueError:
        return 0


def resolve_owner(spec: ChownSpec, rootfs: Path) -> tuple[int, int]:
    """The (uid, gid) ``spec`` names in the destination image (BuildKit's ``readUser``).

    A numeric user gives uid = gid = the number; a named user gives its uid and its primary gid
    from the image's /etc/passwd; a group (numeric, or a name from /etc/group) replaces the gid.
    The files are read inside ``rootfs`` (symlinks in the image cannot lead out of it). A name the
    image does not know is an error naming it (BuildKit silently uses 0 there; the issue asks
    for an error)."""
    uid = gid = 0
    if spec.user is not None:
        if spec.uid is not None:
            uid = gid = spec.uid
        else:
            found = None
            for fields in _id_lines(_read_in_root(rootfs, "/etc/passwd")):
                if fields[0] == spec.user:
                    found = fields
                    break
            if found is None:
                raise CopyError(f"unable to find user {spec.user}: no matching entries in passwd file")
            uid, gid = _field_int(found, 2), _field_int(found, 3)
    if spec.group is not None:
        if spec.gid is not None:
            gid = spec.gid
        else:
            for fields in _id_lines(_read_in_root(rootfs, "/etc/group")):
                if fields[0] == spec.group:
                    gid = _field_int(fields, 2)
                    break
            else:
                raise CopyError(f"unable to find group {spec.group}: no matching entries in group file")
    return uid, gid


# -- Go's filepath.Match ------------------------------------------------------------------------

def has_wildcards(name: str) -> bool:
    """Whether a path holds ``*``, ``?`` or ``[`` not escaped by ``\\`` (fsutil's containsWildcards)."""
    i = 0
    while i < len(name):
        if name[i] == "\\":
            i += 2
            continue
        if name[i] in "*?[":
            return True
        i += 1
    return False


def _go_regex(pattern: str) -> re.Pattern[str]:
    try:
        check_go_pattern(pattern)
    except DockerignoreError:
        raise CopyError(f"syntax error in pattern: {pattern!r}") from None
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            out.append("[")
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            while pattern[i] != "]" or out[-1] in ("[", "^"):
                c = pattern[i]
                i += 1
                if c == "\\":
                    c = pattern[i]
                    i += 1
                out.append("-" if c == "-" and out[-1] not in ("[", "^") and i < n and pattern[i] != "]"
                           else re.escape(c))
            i += 1
            out.append("]")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def go_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match(pattern, name)`` (a bad pattern raises CopyError)."""
    return _go_regex(pattern).match(name) is not None


# -- reading a tree through descriptors -----------------------------------------------------

def _open_at(rootfd: SourceRoot, parts: Sequence[str], flags: int) -> int:
    """Open ``parts`` below ``rootfd`` with no symlink followed anywhere (race-free)."""
    if isinstance(rootfd, LayeredTree):
        return rootfd.open(parts, flags)
    return openat2(rootfd, "/".join(parts) or ".", flags | os.O_NOFOLLOW if parts else flags, _STRICT)


def _lstat_at(rootfd: SourceRoot, parts: Sequence[str]) -> os.stat_result | None:
    if isinstance(rootfd, LayeredTree):
        return rootfd.lstat(parts)
    if not parts:
        return os.fstat(rootfd)
    try:
        pfd = _open_at(rootfd, parts[:-1], os.O_PATH | os.O_DIRECTORY)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    try:
        return os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    finally:
        os.close(pfd)


def _readlink_at(rootfd: SourceRoot, parts: Sequence[str]) -> str:
    if isinstance(rootfd, LayeredTree):
        return rootfd.readlink(parts)
    pfd = _open_at(rootfd, parts[:-1], os.O_PATH | os.O_DIRECTORY)
    try:
        return os.readlink(parts[-1], dir_fd=pfd)
    finally:
        os.close(pfd)


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve_in_root(rootfd: SourceRoot, parts: Sequence[str], *, jail: Sequence[str] = (),
                    follow_final: bool = True,
                    strict: bool = False) -> tuple[list[str], os.stat_result | None, list[str]]:
    """Resolve ``jail + parts`` below ``rootfd`` as if ``jail`` were ``/`` (continuity's
    ``fs.RootPath``): symlinks are read and spliced in, absolute ones restart at the jail and
    ``..`` stops there. With ``strict`` a relative link whose target climbs above the jail is an
    error instead (BuildKit's archive extraction). Returns (the resolved existing prefix, its
    lstat or None, the components still to create); when the third is empty the first is the
    whole path."""
    base = list(jail)
    done = list(base)
    todo = list(parts)
    links = 0
    st: os.stat_result | None = _lstat_at(rootfd, done)
    while todo:
        name = todo.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            if len(done) > len(base):
                done.pop()
            continue
        st = _lstat_at(rootfd, done + [name])
        if st is None:
            rest = [name] + todo
            clean: list[str] = []
            for p in rest:
                if p in ("", "."):
                    continue
                if p == "..":
                    if clean:
                        clean.pop()
                    elif len(done) > len(base):
                        done.pop()
                    continue
                clean.append(p)
            return done, _lstat_at(rootfd, done), clean
        if stat.S_ISLNK(st.st_mode) and (todo or follow_final):
            links += 1
            if links > _MAX_LINKS:
                raise CopyError(f"too many levels of symbolic links in {'/' + '/'.join(parts)!r}")
            target = _readlink_at(rootfd, done + [name])
            if strict and not target.startswith("/"):
                depth = len(done) - len(base)
                for p in target.split("/"):
                    depth += -1 if p == ".." else (0 if p in ("", ".") else 1)
                    if depth < 0:
                        raise CopyError(f"archive symlink {'/'.join(done[len(base):] + [name])!r} points "
                                        "outside the extraction root")
            if target.startswith("/"):
                done = list(base)
            todo = target.split("/") + todo
            continue
        if todo and not stat.S_ISDIR(st.st_mode):
            raise CopyError(f"{'/' + '/'.join(done + [name])!r} is not a directory")
        done.append(name)
    if links:
        st = _lstat_at(rootfd, done)  # the last lstat may be of a link that was followed
    return done, st, []


# -- selection ----------------------------------------------------------------------------------

@dataclass(slots=True)
class Entry:
    """One file of a selected source; ``rel`` is relative to the source ("" for the source itself)."""

    rel: str
    src: tuple[str, ...]            # path below the source root, for opening (no symlinks)
    mode: int                       # st_mode
    uid: int
    gid: int
    size: int
    mtime_ns: int
    atime_ns: int
    ctime_ns: int = 0
    dev: int = 0
    ino: int = 0
    nlink: int = 1
    rdev: int = 0
    link: str | None = None         # symlink target
    xattrs: tuple[tuple[str, bytes], ...] = ()
    hardlink: tuple[int, str] | None = None   # (item index in the group, rel) of the first link
    data: bytes | None = None       # in-memory content (heredoc sources)
    layer: int = -1                 # the layer of a LayeredTree root holding it (-1: a directory root)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


@dataclass
class Item:
    """One resolved source: ``name`` is how it is named at a directory destination."""

    name: str
    entries: list[Entry]
    parents: str = ""               # the path kept by --parents (relative to the pivot)
    parents_base: tuple[str, ...] = ()  # the pivot, as written

    @property
    def top(self) -> Entry:
        return self.entries[0]


@dataclass
class SourceGroup:
    """The items of one source argument (its wildcard matches, in lexical order).

    A group read from somewhere other than its selection's root (a file ``ADD`` downloaded, a
    git checkout) names that directory in ``root``; ``fd``, when not -1, is a descriptor of it
    opened before the copy chroots (``Selection.opened``). ``unpack`` overrides the copy's
    ``unpack_archives`` for this group (a URL is extracted only with ``--unpack=true``)."""

    pattern: str
    items: list[Item]
    root: Path | None = None
    fd: int = -1
    unpack: bool | None = None


@dataclass
class Selection:
    """What a COPY/ADD takes: from a directory (``root``), from the merged view of a snapshot
    chain (``tree``, read in place; ``root`` is None) or from memory (heredocs)."""

    root: Path | None
    groups: list[SourceGroup]
    keep_owner: bool = False
    what: str = "context"
    tree: LayeredTree | None = None

    @property
    def items(self) -> list[Item]:
        return [item for group in self.groups for item in group.items]

    @property
    def total_size(self) -> int:
        return sum(e.size for item in self.items for e in item.entries if stat.S_ISREG(e.mode))

    @classmethod
    def from_contents(cls, contents: Iterable[tuple[str, bytes | str]]) -> Selection:
        """Heredoc sources: files named ``name`` (mode 0644, root's) holding ``data``."""
        now = time.time_ns()
        groups = []
        for name, data in contents:
            raw = data.encode() if isinstance(data, str) else bytes(data)
            clean = go_clean("/" + name).lstrip("/")
            if clean in ("", "."):
                raise CopyError(f"invalid heredoc file name {name!r}")
            entry = Entry(rel="", src=(), mode=stat.S_IFREG | 0o644, uid=0, gid=0, size=len(raw),
                          mtime_ns=now, atime_ns=now, data=raw)
            base = clean.rsplit("/", 1)[-1]
            # --parents keeps no path for an inline file: it lands as ``dest/<name>``.
            groups.append(SourceGroup("<<" + name, [Item(base, [entry], parents=base)]))
        return cls(root=None, groups=groups, what="heredoc")

    def with_contents(self, contents: Iterable[tuple[str, bytes | str]]) -> Selection:
        """This selection followed by heredoc sources (``COPY <<EOF file /dest/``, as BuildKit's
        dispatchCopy adds them: after every path source)."""
        extra = Selection.from_contents(contents)
        return Selection(root=self.root, groups=self.groups + extra.groups, keep_owner=self.keep_owner,
                         what=self.what, tree=self.tree)

    def with_groups(self, groups: Iterable[SourceGroup]) -> Selection:
        """This selection with other groups in place of its own (same root and owners)."""
        return Selection(root=self.root, groups=list(groups), keep_owner=self.keep_owner, what=self.what,
                         tree=self.tree)

    @contextlib.contextmanager
    def opened(self) -> Iterator[Selection]:
        """This selection with a descriptor held for every group that has its own root, so a
        copy that runs chrooted (where host paths are out of reach) can still read them; the
        descriptors are closed on exit."""
        fds: list[int] = []
        try:
            groups = []
            for group in self.groups:
                if group.root is not None and group.fd < 0:
                    try:
                        fd = os.open(group.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                    except OSError as e:
                        raise CopyError(f"cannot open the source of {group.pattern!r}: {e.strerror}") from None
                    fds.append(fd)
                    group = dataclasses.replace(group, fd=fd)
                groups.append(group)
            yield self.with_groups(groups)
        finally:
            for fd in fds:
                os.close(fd)

    def cache_digest(self, *, dest: str, owner: tuple[int, int] | None = None, chmod: Chmod | str | None = None,
                     parents: bool = False, link: bool = False, unpack_archives: bool = False,
                     hash_cache: HashCache | None = None, **extra: object) -> str:
        """``sha256:<hex>`` of everything the copy's result depends on (never times)."""
        h = hashlib.sha256()
        # Each value goes in as its 8-byte big-endian length and its bytes; gathered in a buffer
        # and hashed in large pieces (one update per value costs a cached build ~10 ms per
        # 3,000 files), the digest is the same.
        buf: list[bytes] = []
        length = _LENGTH.pack

        def put(*values: object) -> None:
            for v in values:
                b = v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogateescape")
                buf.append(length(len(b)))
                buf.append(b)
            if len(buf) > 4096:
                h.update(b"".join(buf))
                buf.clear()

        chmod_text = chmod.text if isinstance(chmod, Chmod) else chmod
        put("hoist-copy-v1", dest, owner, chmod_text, parents, link, unpack_archives,
            json.dumps(extra, sort_keys=True, default=str), self.keep_owner)
        rootfd = self.open_root()
        own: list[int] = []
        try:
            for group in self.groups:
                put("group", group.pattern, len(group.items), group.unpack)
                groupfd = rootfd
                if group.root is not None:
                    groupfd = os.open(group.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                    own.append(groupfd)
                for item in group.items:
                    put("item", item.name, item.parents, len(item.entries))
                    for e in item.entries:
                        uid, gid = owner if owner is not None else ((e.uid, e.gid) if self.keep_owner else (0, 0))
                        # put("entry", rel, type, mode, uid, gid), the same bytes made faster: the
                        # small numbers' encodings are looked up, not formatted each time.
                        rel = e.rel.encode("utf-8", "surrogateescape")
                        buf.append(_ENTRY_TAG)
                        buf.append(length(len(rel)))
                        buf.append(rel)
                        buf.append(_number(stat.S_IFMT(e.mode)))
                        buf.append(_number(stat.S_IMODE(e.mode)))
                        buf.append(_number(uid))
                        buf.append(_number(gid))
                        if e.link is not None:
                            put("link", e.link)
                        if stat.S_ISCHR(e.mode) or stat.S_ISBLK(e.mode):
                            put("rdev", os.major(e.rdev), os.minor(e.rdev))
                        for key, value in e.xattrs:
                            put("xattr", key, value)
                        if e.hardlink is not None:
                            put("hardlink", e.hardlink[0], e.hardlink[1])
                        elif stat.S_ISREG(e.mode):
                            # put("size", size, "sha256", hex digest)
                            buf.append(_SIZE_TAG)
                            buf.append(_number(e.size))
                            buf.append(_SHA256_TAG)
                            hexdigest = self._content_digest(groupfd, e, hash_cache).encode("ascii")
                            buf.append(length(len(hexdigest)))
                            buf.append(hexdigest)
                        if len(buf) > 4096:
                            h.update(b"".join(buf))
                            buf.clear()
        except OSError as err:
            raise CopyError(f"cannot read the {self.what}: {err.strerror}") from None
        finally:
            for fd in own:
                os.close(fd)
            if isinstance(rootfd, int) and rootfd >= 0:
                os.close(rootfd)
        h.update(b"".join(buf))
        if hash_cache is not None:
            hash_cache.save()
        return "sha256:" + h.hexdigest()

    def hash_contents(self, hash_cache: HashCache, stop: threading.Event) -> None:
        """Put the content digest of every selected regular file into ``hash_cache``, as
        ``cache_digest`` would (``builder.prehash``: ahead of the step); stops early once
        ``stop`` is set. Raises CopyError as cache_digest does."""
        rootfd = self.open_root()
        try:
            for group in self.groups:
                groupfd = rootfd
                if group.root is not None:
                    continue        # fetched sources (ADD of a URL): their step hashes them
                for item in group.items:
                    for e in item.entries:
                        if stop.is_set():
                            return
                        if e.hardlink is None and e.data is None and stat.S_ISREG(e.mode):
                            self._content_digest(groupfd, e, hash_cache)
        except OSError as err:
            raise CopyError(f"cannot read the {self.what}: {err.strerror}") from None
        finally:
            if isinstance(rootfd, int) and rootfd >= 0:
                os.close(rootfd)

    def open_root(self) -> SourceRoot:
        """What ``open_entry`` opens entries from: the tree, or a new descriptor of ``root``
        (-1 without one), which the caller closes."""
        if self.tree is not None:
            return self.tree
        if self.root is None:
            return -1
        try:
            return os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise CopyError(f"cannot open the {self.what} at {self.root}: {err.strerror}") from None

    def _content_digest(self, rootfd: SourceRoot, e: Entry, cache: HashCache | None) -> str:
        if e.data is not None:
            return hashlib.sha256(e.data).hexdigest()
        if cache is not None:
            hit = cache.get_for(e)
            if hit is not None:
                return hit
        fd, st = self._open_checked(rootfd, e)
        try:
            if cache is not None:
                hit = cache.get(st)
                if hit is not None:
                    return hit
            h = hashlib.sha256()
            read = 0
            # Until the size the stat gave (no read for the end: a file that grows or changes
            # meanwhile is caught by the stat after), or past it to the end.
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
                read += len(chunk)
                if read == st.st_size and len(chunk) < _CHUNK:
                    break
            after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
                raise CopyError(f"{self._where(e)} changed while it was being read")
            digest = h.hexdigest()
            if cache is not None:
                # The xattrs were read at the walk's lstat: recorded only if that is still the file's.
                same = (e.size, e.mtime_ns, e.ctime_ns) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                cache.put(st, digest, e.xattrs if same else None)
            return digest
        finally:
            os.close(fd)

    def _where(self, e: Entry) -> str:
        return repr("/".join(e.src) or ".") + ("" if self.what == "context" else f" in {self.what}")

    def open_entry(self, rootfd: SourceRoot, e: Entry) -> int:
        """A read descriptor of a selected regular file, checked to be the file selected."""
        return self._open_checked(rootfd, e)[0]

    def _open_checked(self, rootfd: SourceRoot, e: Entry) -> tuple[int, os.stat_result]:
        """``open_entry``'s descriptor and the stat it was checked with."""
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        try:
            if self.tree is not None and e.layer >= 0:
                fd = self.tree.open_in(e.layer, e.src, flags)
            else:
                fd = _open_at(rootfd, e.src, flags)
        except OSError as err:
            raise CopyError(f"{self._where(e)} cannot be read: {err.strerror} "
                            "(was it changed during the build?)") from None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (e.dev, e.ino) or not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise CopyError(f"{self._where(e)} was replaced during the build")
        return fd, st


def _tagged(text: str) -> bytes:
    """``text`` as ``cache_digest`` puts a value: its 8-byte big-endian length, then its bytes."""
    raw = text.encode("utf-8", "surrogateescape")
    return _LENGTH.pack(len(raw)) + raw


_ENTRY_TAG, _SIZE_TAG, _SHA256_TAG = _tagged("entry"), _tagged("size"), _tagged("sha256")
_NUMBERS: dict[int, bytes] = {}


def _number(n: int) -> bytes:
    """``_tagged(str(n))``, remembered for the modes, ids and sizes that recur."""
    found = _NUMBERS.get(n)
    if found is None:
        found = _tagged(str(n))
        if len(_NUMBERS) < 65536:
            _NUMBERS[n] = found
    return found


class HashCache:
    """Content digests (and xattrs) of files by identity, kept in one JSON file between builds.

    An entry is used only when device, inode, size, mtime and ctime (in ns) all equal the file's
    now; a same-size edit whose mtime was put back still changes the ctime, so it is re-read,
    and so does a changed xattr (setxattr moves the ctime too). The lstat a walk took through
    its directory descriptor is enough to look a file up: a hit opens nothing. Past
    ``MAX_ENTRIES`` a save keeps only the entries this process used."""

    RACY_NS = _RACY_NS
    MAX_ENTRIES = 200_000

    def __init__(self, path: Path | None = None, racy_ns: int | None = None) -> None:
        self.path = path
        # A file changed within this much of being hashed is not cached (storage.fsutil.RACY_NS).
        self.racy_ns = self.RACY_NS if racy_ns is None else racy_ns
        # "dev:ino" -> [size, mtime_ns, ctime_ns, sha256 hex] (+ [[xattr name, hex value], ...])
        self._entries: dict[str, list] = {}
        self._used: set[str] = set()
        self._dirty = False
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    loaded = json.load(f)
                if isinstance(loaded, dict):
                    self._entries = loaded
            except (OSError, ValueError):
                pass

    def _entry(self, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int) -> list | None:
        key = f"{dev}:{ino}"
        entry = self._entries.get(key)
        if (isinstance(entry, list) and len(entry) in (4, 5) and entry[0] == size and entry[1] == mtime_ns
                and entry[2] == ctime_ns and isinstance(entry[3], str)):
            self._used.add(key)
            return entry
        return None

    def get(self, st: os.stat_result) -> str | None:
        entry = self._entry(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        return entry[3] if entry is not None else None

    def get_for(self, e: Entry) -> str | None:
        """The digest of the selected file ``e`` as its walk saw it, if known (the xattrs the
        walk read are recorded with it when the entry lacks them)."""
        entry = self._entry(e.dev, e.ino, e.size, e.mtime_ns, e.ctime_ns)
        if entry is None:
            return None
        if len(entry) == 4:
            entry.append([[name, value.hex()] for name, value in e.xattrs])
            self._dirty = True
        return str(entry[3])

    def xattrs(self, st: os.stat_result) -> tuple[tuple[str, bytes], ...] | None:
        """The xattrs recorded with the digest of the file whose lstat is ``st``, if known."""
        entry = self._entry(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if entry is None or len(entry) != 5 or not isinstance(entry[4], list):
            return None
        if not entry[4]:
            return ()
        try:
            return tuple((str(name), bytes.fromhex(value)) for name, value in entry[4])
        except (TypeError, ValueError):
            return None

    def put(self, st: os.stat_result, digest: str,
            xattrs: tuple[tuple[str, bytes], ...] | None = None) -> None:
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < self.racy_ns:
            return
        key = f"{st.st_dev}:{st.st_ino}"
        entry: list = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest]
        if xattrs is not None:
            entry.append([[name, value.hex()] for name, value in xattrs])
        self._entries[key] = entry
        self._used.add(key)
        self._dirty = True

    def mark(self) -> dict[str, list]:
        """What ``changes`` compares with: the entries as they are now (a shallow copy)."""
        return dict(self._entries)

    def changes(self, since: dict[str, list]) -> dict[str, list]:
        """The entries added or replaced since ``mark`` returned ``since``."""
        return {k: v for k, v in self._entries.items() if since.get(k) is not v}

    def merge(self, changes: dict[str, list]) -> None:
        """Take another HashCache's ``changes`` (builder.prehash's child: entries it made as
        ``put`` makes them; each is still checked against the file at every use)."""
        if changes:
            self._entries.update(changes)
            self._used.update(changes)
            self._dirty = True

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        # A copy taken at once (dict() holds the GIL throughout): builder.prehash may be adding
        # entries from its thread while this one writes them.
        self._dirty = False             # set again by what is added meanwhile
        entries = dict(self._entries)
        if len(entries) > self.MAX_ENTRIES:
            used = set(self._used)
            entries = self._entries = {k: v for k, v in entries.items() if k in used}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(entries, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:
            self._dirty = True
            try:
                tmp.unlink()
            except OSError:
                pass


def _xattrs_of(fd_or_path: int | str, follow: bool = True) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(fd_or_path, follow_symlinks=follow)
    except OSError:
        return ()
    out = []
    for name in sorted(names):
        if name.startswith(OVERLAY_XATTR_PREFIXES):
            continue
        try:
            out.append((name, os.getxattr(fd_or_path, name, follow_symlinks=follow)))
        except OSError:
            continue
    return tuple(out)


class _Reader:
    """Walks the source root through descriptors, hiding ignored paths."""

    def __init__(self, rootfd: SourceRoot, ignore: Matcher | None, excludes: Matcher | None, what: str,
                 limits: Limits, hash_cache: HashCache | None = None) -> None:
        self.rootfd, self.ignore, self.excludes, self.what = rootfd, ignore, excludes, what
        self.limits = limits
        self.hash_cache = hash_cache
        self.count = 0

    def hidden(self, parts: Sequence[str], rel: str | None = None) -> str | None:
        """"ignored" when .dockerignore hides ``parts`` (relative to the root), "excluded" when
        an ``--exclude`` pattern matches ``rel`` (relative to the copied source, or to the
        wildcard's base for a match: fsutil's srcComponents), else None."""
        path = "/".join(parts)
        if path and self.ignore is not None and self.ignore.matches(path):
            return "ignored"
        if rel and self.excludes is not None and self.excludes.matches(rel):
            return "excluded"
        return None

    def brings_back(self, parts: list[str], st: os.stat_result) -> bool:
        """Whether a hidden directory holds something a ``!`` rule makes visible again (it then
        exists in the context, as fsutil sends the parents of what it sends)."""
        if not stat.S_ISDIR(st.st_mode):
            return False
        matchers = [m for m in (self.ignore, self.excludes) if m is not None and m.has_exclusions]
        if not matchers:
            return False
        return len(self.walk(parts, st)) > 1

    def entry(self, parts: Sequence[str], rel: str, st: os.stat_result, dfd: int = -1, layer: int = -1) -> Entry:
        """The entry for ``parts``; ``dfd``, when given, is its parent directory's descriptor (in
        ``layer``, for a LayeredTree root)."""
        self.count += 1
        if self.count > self.limits.max_entries:
            raise CopyError(f"the sources hold more than {self.limits.max_entries} files (HOIST_UNPACK_MAX_ENTRIES)")
        link = None
        xattrs: tuple[tuple[str, bytes], ...] | None = ()
        if stat.S_ISLNK(st.st_mode):
            link = os.readlink(parts[-1], dir_fd=dfd) if dfd >= 0 else _readlink_at(self.rootfd, parts)
        elif stat.S_ISREG(st.st_mode) and self.hash_cache is not None and \
                (xattrs := self.hash_cache.xattrs(st)) is not None:
            pass  # known for this very inode state (an xattr change moves the ctime)
        elif stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            xattrs = ()
            # Read through a descriptor (no /proc needed: the copy may run in a chroot without it).
            flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(parts[-1], flags, dir_fd=dfd) if dfd >= 0 else _open_at(self.rootfd, parts, flags)
            except OSError:
                fd = -1
            if fd >= 0:
                try:
                    opened = os.fstat(fd)
                    if (opened.st_dev, opened.st_ino) == (st.st_dev, st.st_ino):
                        xattrs = _xattrs_of(fd)
                finally:
                    os.close(fd)
        return Entry(rel=rel, src=tuple(parts), mode=st.st_mode, uid=st.st_uid, gid=st.st_gid,
                     size=st.st_size if stat.S_ISREG(st.st_mode) else 0, mtime_ns=st.st_mtime_ns,
                     atime_ns=st.st_atime_ns, ctime_ns=st.st_ctime_ns, dev=st.st_dev, ino=st.st_ino,
                     nlink=st.st_nlink, rdev=st.st_rdev, link=link, xattrs=xattrs or (), layer=layer)

    _KEEP_OPEN = 64  # directory descriptors held open along the walk (deeper ones are reopened)

    def walk(self, parts: list[str], st: os.stat_result) -> list[Entry]:
        """The source at ``parts`` and, for a directory, everything visible below it (pre-order,
        names sorted). Ignored directories are entered only when a ``!`` rule may bring back
        something below them, and kept only if it does. Each directory is read through one
        descriptor opened without following any symlink."""
        if isinstance(self.rootfd, LayeredTree):
            return self._walk_layered(self.rootfd, parts, st)
        top = self.entry(parts, "", st)
        out: list[Entry] = [top]
        if not stat.S_ISDIR(st.st_mode):
            return out
        # Each frame: [parts, rel, names left, descriptor or -1]
        stack: list[list] = []
        try:
            fd = _open_at(self.rootfd, parts, os.O_RDONLY | os.O_DIRECTORY)
            stack.append([parts, "", _sorted_names(fd)[::-1], fd])
            while stack:
                frame = stack[-1]
                dparts, drel, names = frame[0], frame[1], frame[2]
                if not names:
                    if frame[3] >= 0:
                        os.close(frame[3])
                    stack.pop()
                    continue
                if frame[3] < 0:
                    frame[3] = _open_at(self.rootfd, dparts, os.O_RDONLY | os.O_DIRECTORY)
                dfd = frame[3]
                name = names.pop()  # names are kept reversed: pop() is O(1)
                cparts = dparts + [name]
                crel = f"{drel}/{name}" if drel else name
                try:
                    cst = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISSOCK(cst.st_mode):
                    continue
                hidden = self.hidden(cparts, crel)
                descend = stat.S_ISDIR(cst.st_mode)
                if hidden is not None:
                    matcher = self.ignore if hidden == "ignored" else self.excludes
                    if not (descend and matcher is not None and matcher.has_exclusions):
                        continue
                out.append(self.entry(cparts, crel, cst, dfd))
                if descend:
                    if len(cparts) > self.limits.max_depth:
                        raise CopyError(f"{'/'.join(cparts)!r} is deeper than {self.limits.max_depth} levels")
                    cfd = _open_at(self.rootfd, cparts, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        names_below = _sorted_names(cfd)
                    except BaseException:
                        os.close(cfd)
                        raise
                    if len(stack) >= self._KEEP_OPEN:
                        os.close(frame[3])
                        frame[3] = -1
                    stack.append([cparts, crel, names_below[::-1], cfd])
        finally:
            for frame in stack:
                if frame[3] >= 0:
                    os.close(frame[3])
        return self._drop_unused_hidden(out)

    def _walk_layered(self, tree: LayeredTree, parts: list[str], st: os.stat_result) -> list[Entry]:
        """``walk`` through the merged view of a chain: each directory is the merge of its
        layers (``LayeredTree.scandir``), each entry read in the layer that holds it."""
        found = tree.lookup(parts)
        if found is None:
            raise CopyError(f"{'/'.join(parts)!r} vanished from the {self.what}")
        layer = found[0]
        top = self.entry(parts, "", st, tree.parent_fd(layer, parts) if parts else -1, layer)
        out: list[Entry] = [top]
        if not stat.S_ISDIR(st.st_mode):
            return out
        # Each frame: parts, rel, the merged entries left (sorted, reversed: pop() is O(1)).
        stack = [(parts, "", _sorted_entries(tree.scandir(parts)))]
        while stack:
            dparts, drel, children = stack[-1]
            if not children:
                stack.pop()
                continue
            name, clayer, cst = children.pop()
            if stat.S_ISSOCK(cst.st_mode):
                continue
            cparts = dparts + [name]
            crel = f"{drel}/{name}" if drel else name
            hidden = self.hidden(cparts, crel)
            descend = stat.S_ISDIR(cst.st_mode)
            if hidden is not None:
                matcher = self.ignore if hidden == "ignored" else self.excludes
                if not (descend and matcher is not None and matcher.has_exclusions):
                    continue
            out.append(self.entry(cparts, crel, cst, tree.parent_fd(clayer, cparts), clayer))
            if descend:
                if len(cparts) > self.limits.max_depth:
                    raise CopyError(f"{'/'.join(cparts)!r} is deeper than {self.limits.max_depth} levels")
                stack.append((cparts, crel, _sorted_entries(tree.scandir(cparts))))
        return self._drop_unused_hidden(out)

    def _drop_unused_hidden(self, out: list[Entry]) -> list[Entry]:
        # A hidden directory entered for a "!" rule stays only when something visible lies below it.
        hidden = [i > 0 and self.hidden(e.src, e.rel) is not None for i, e in enumerate(out)]
        if not any(hidden):
            return out
        wanted: set[str] = set()
        for i, e in enumerate(out):
            if i and not hidden[i]:
                parts = e.rel.split("/")
                for depth in range(1, len(parts)):
                    wanted.add("/".join(parts[:depth]))
        return [e for i, e in enumerate(out) if not hidden[i] or (e.is_dir and e.rel in wanted)]

    def _names(self, parts: Sequence[str]) -> list[str]:
        if isinstance(self.rootfd, LayeredTree):
            return [name for name, _, _ in reversed(_sorted_entries(self.rootfd.scandir(parts)))]
        fd = _open_at(self.rootfd, parts, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return _sorted_names(fd)
        finally:
            os.close(fd)


def _sorted_entries(entries: list[tuple[str, int, os.stat_result]]) -> list[tuple[str, int, os.stat_result]]:
    # Go's byte order, reversed (walks pop from the end).
    return sorted(entries, key=lambda e: e[0].encode("utf-8", "surrogateescape"), reverse=True)


def _sorted_names(fd: int) -> list[str]:
    # Go sorts names by their bytes.
    return sorted(os.listdir(fd), key=lambda n: n.encode("utf-8", "surrogateescape"))


def _split_wildcards(parts: list[str]) -> tuple[list[str], list[str]]:
    for i, p in enumerate(parts):
        if has_wildcards(p):
            return parts[:i], parts[i:]
    return parts, []


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


def select_sources(source_root: Path | LayeredTree, patterns: list[str], *, ignore: Matcher | None,
                   excludes: Sequence[str] = (), what: str = "context", parents: bool = False,
                   keep_owner: bool | None = None, limits: Limits | None = None,
                   hash_cache: HashCache | None = None) -> Selection:
    """Resolve the source arguments of a COPY/ADD below ``source_root`` (a directory, or the
    merged view of a snapshot chain, read in place; the caller keeps it open while the
    selection is used); raises CopyError.

    ``what`` names the root in messages ("context", "stage build", ...). Files from the context
    belong to root; from anything else they keep their owners (``keep_owner`` overrides).
    ``hash_cache`` may supply the xattrs of files it knows (pass the one ``cache_digest`` gets)."""
    limits = limits or Limits()
    if keep_owner is None:
        keep_owner = what != "context"
    try:
        exclude_matcher = PatternMatcher(excludes) if excludes else None
    except DockerignoreError as e:
        raise CopyError(f"invalid --exclude pattern: {e.message}") from None
    tree = source_root if isinstance(source_root, LayeredTree) else None
    rootfd: SourceRoot
    try:
        rootfd = source_root if isinstance(source_root, LayeredTree) else \
            os.open(source_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CopyError(f"cannot open the {what} at {source_root}: {e.strerror}") from None
    where = "the build context" if what == "context" else what
    try:
        reader = _Reader(rootfd, ignore, exclude_matcher, what, limits, hash_cache)
        groups: list[SourceGroup] = []
        for pattern in patterns:
            pivot: list[str] | None = None
            body = pattern
            if parents and "/./" in pattern:
                head, _, tail = pattern.partition("/./")
                pivot = _split(go_clean("/" + head))
                body = head + "/" + tail
            cleaned = go_clean("/" + body)
            parts = _split(cleaned)
            base, wild = _split_wildcards(parts)
            if not wild:
                base = [_unescape(p) for p in base]
            resolved, st, missing = resolve_in_root(rootfd, base)
            if missing or st is None:
                raise CopyError(f"{pattern!r}: not found in {where}" if what == "context"
                                else f"{pattern!r}: not found in {what}")
            hidden = reader.hidden(resolved)
            if hidden is not None and reader.brings_back(resolved, st):
                hidden = None
            if hidden == "ignored":
                raise CopyError(f"{pattern!r} is excluded by .dockerignore"
                                + ("" if resolved == base else f" (it resolves to {'/'.join(resolved)!r})"))
            matches: list[tuple[list[str], os.stat_result]] = []
            if wild:
                if not stat.S_ISDIR(st.st_mode):
                    raise CopyError(f"{pattern!r}: no source files match in {where}")
                regex = _go_regex("/".join(wild))
                depth = len(wild)
                matches = _glob(reader, resolved, regex, depth)
                if not matches:
                    raise CopyError(f"{pattern!r}: no source files match in {where}")
            else:
                matches = [(resolved, st)]
            items: list[Item] = []
            for mparts, mst in matches:
                name = mparts[-1] if wild else (_unescape(parts[-1]) if parts else "")
                kept = mparts if wild else [_unescape(p) for p in parts]
                if wild:
                    # A match is followed as any source path is (fsutil's rootPath with FollowLinks).
                    mparts, followed, missing = resolve_in_root(rootfd, mparts)
                    if missing or followed is None or (reader.hidden(mparts) is not None
                                                       and not reader.brings_back(mparts, followed)):
                        continue  # a dangling symlink, or one into a hidden path
                    mst = followed
                item = Item(name=name, entries=reader.walk(mparts, mst))
                if parents:
                    rel = kept[len(pivot):] if pivot is not None and kept[:len(pivot)] == pivot else kept
                    item.parents = "/".join(rel)
                    item.parents_base = tuple(kept[:len(kept) - len(rel)])
                items.append(item)
            if not items:
                raise CopyError(f"{pattern!r}: no source files match in {where}")
            _link_hardlinks(items)
            groups.append(SourceGroup(pattern, items))
    except OSError as e:
        raise CopyError(f"cannot read the {what}: {e.strerror} ({e.filename})") from None
    finally:
        if not isinstance(rootfd, LayeredTree):
            os.close(rootfd)
    selection = Selection(root=None if isinstance(source_root, LayeredTree) else Path(source_root), groups=groups,
                          keep_owner=keep_owner, what=what, tree=tree)
    if selection.total_size > limits.max_bytes:
        raise CopyError(f"the sources add up to {selection.total_size} bytes, more than the "
                        f"{limits.max_bytes} allowed (HOIST_UNPACK_MAX_BYTES)")
    return selection


def _glob(reader: _Reader, base: list[str], regex: re.Pattern[str],
          depth: int) -> list[tuple[list[str], os.stat_result]]:
    """fsutil's resolveWildcards: walk ``base`` (symlinks not followed) in lexical order,
    matching each path relative to it; a matched directory is not entered."""
    out: list[tuple[list[str], os.stat_result]] = []
    stack: list[tuple[list[str], list[str]]] = [([], reader._names(base)[::-1])]
    while stack:
        rel, names = stack[-1]
        if not names:
            stack.pop()
            continue
        name = names.pop()  # names are kept reversed: pop() is O(1)
        crel = rel + [name]
        cparts = base + crel
        st = _lstat_at(reader.rootfd, cparts)
        if st is None:
            continue
        if regex.match("/".join(crel)):
            if reader.hidden(cparts, "/".join(crel)) is None or reader.brings_back(cparts, st):
                out.append((cparts, st))
            continue
        if stat.S_ISDIR(st.st_mode) and len(crel) < depth:
            stack.append((crel, reader._names(cparts)[::-1]))
    return out


def _link_hardlinks(items: list[Item]) -> None:
    # BuildKit copies each wildcard match with a new fsutil copier, whose inode map is its own:
    # files linked to each other stay linked only inside one match.
    for index, item in enumerate(items):
        first: dict[tuple[int, int], tuple[int, str]] = {}
        for e in item.entries:
            if stat.S_ISREG(e.mode) and e.nlink > 1:
                key = (e.dev, e.ino)
                if key in first:
                    e.hardlink = first[key]
                else:
                    first[key] = (index, e.rel)


# -- the destination ------------------------------------------------------------------------

def dest_is_dir(dest: str) -> bool:
    """Whether a COPY destination names a directory by its spelling (dockerfile2llb's rule)."""
    return dest in ("", ".") or dest.endswith(("/", "/."))


def dest_path(dest: str, workdir: str) -> list[str]:
    """The destination's components below ``/``: relative to WORKDIR unless absolute."""
    full = dest if dest.startswith("/") else (workdir or "/").rstrip("/") + "/" + dest
    return _split(go_clean("/" + full))


class PreviousCopy:
    """The last result of the same COPY (the same parent chain, sources, destination and
    flags; only file contents may differ) as files a new copy may hard link to, instead of
    writing them again: a rebuild after one source file changed writes one file, and links the
    rest (on ext4 a new inode costs 10-300 us; a link 7 us). Snapshots are immutable (every
    user of one mounts it read-only or copies up), so the two trees may share inodes.

    ``files`` is that copy's record (``_Dest.record``): path below the snapshot -> [sha256 of
    the content, size, permission bits, uid, gid, mtime in ns], kept only for files whose source
    did not change while they were copied. A file is linked only when the new entry has the same
    record (its digest from the context's HashCache, no xattrs, not in a hardlink group of its
    own) and the snapshot's file still has that size, mode, owner and mtime; every other file,
    and any failure to link (EMLINK, a file gone), is copied as usual. No inode is linked twice
    by one copy, so the hardlink groups are the source's, as in a copy. Paths are resolved
    below the snapshot with no symlink followed."""

    MAX_LINKS = 60000     # ext4 allows 65000 names per inode: past this the file is copied
    MAX_FILES = 200_000   # a copy of more files keeps no record (its JSON would be ~20 MB)

    def __init__(self, snapshot: Path, files: dict[str, list[object]]) -> None:
        self.fd = os.open(snapshot, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.files = files
        self.used: set[tuple[int, int]] = set()
        self.linked = 0
        self._dirs: dict[tuple[str, ...], int] = {}

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        os.close(self.fd)

    def _dir(self, parts: Sequence[str]) -> int:
        key = tuple(parts)
        fd = self._dirs.get(key)
        if fd is None:
            if len(self._dirs) >= 32:
                for old in self._dirs.values():
                    os.close(old)
                self._dirs.clear()
            fd = self._dirs[key] = _open_at(self.fd, parts, os.O_PATH | os.O_DIRECTORY)
        return fd

    def link(self, parts: Sequence[str], record: list[object], pfd: int, name: str) -> bool:
        """Link the snapshot's file at ``parts`` as ``name`` in ``pfd`` if it is ``record``'s."""
        if self.files.get("/".join(parts)) != record:
            return False
        _, size, perms, uid, gid, mtime_ns = record
        try:
            ofd = self._dir(parts[:-1])
            st = os.stat(parts[-1], dir_fd=ofd, follow_symlinks=False)
            if not (stat.S_ISREG(st.st_mode) and (st.st_size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                                    st.st_mtime_ns) == (size, perms, uid, gid, mtime_ns)):
                return False
            if (st.st_dev, st.st_ino) in self.used or st.st_nlink >= self.MAX_LINKS:
                return False
            os.link(parts[-1], name, src_dir_fd=ofd, dst_dir_fd=pfd, follow_symlinks=False)
        except OSError:
            return False
        try:
            made = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            same = (made.st_dev, made.st_ino) == (st.st_dev, st.st_ino)
        except OSError:
            same = False
        if not same:   # swapped meanwhile: not ours to keep (the copy then writes the file)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=pfd)
            return False
        self.used.add((st.st_dev, st.st_ino))
        self.linked += 1
        return True


class _Dest:
    """The writable root, reached only through descriptors."""

    def __init__(self, root: Path, owner: tuple[int, int] | None, chmod: Chmod | None, keep_owner: bool,
                 limits: Limits) -> None:
        try:
            self.fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise CopyError(f"cannot open the destination root {root}: {e.strerror}") from None
        self.root = root
        self.owner, self.chmod, self.keep_owner, self.limits = owner, chmod, keep_owner, limits
        self.is_root = os.geteuid() == 0
        self.written = 0
        self.dir_meta: list[tuple[list[str], Entry]] = []
        # Parent directories ``put`` wrote into, by path: a copied tree's files come in runs
        # per directory, and opening the parent again for each file walks its whole path.
        # Nothing in a copy removes or replaces a directory it has opened (a file cannot
        # replace a directory, and open_dir follows no symlink); ADD's extraction, which can,
        # calls ``forget_dirs``.
        self._parents: dict[tuple[str, ...], int] = {}
        # With a HashCache of the sources: the record of the files written (PreviousCopy), and
        # the previous result of this copy to link unchanged files from.
        self.digest_of: Callable[[Entry], str | None] | None = None
        self.previous: PreviousCopy | None = None
        self.record: dict[str, list[object]] = {}
        self.recorded = 0     # files the copy had a record of (past MAX_FILES: the record is dropped)
        self.writers: _Writers | None = None     # regular files written in worker threads

    def close(self) -> None:
        if self.writers is not None:
            self.writers.close()
        self.forget_dirs()
        os.close(self.fd)

    def drain(self) -> None:
        """Every file handed to the writers written (their first error raised here)."""
        if self.writers is not None:
            self.writers.drain()

    def forget_dirs(self) -> None:
        for fd in self._parents.values():
            os.close(fd)
        self._parents.clear()

    def parent_dir(self, parts: Sequence[str]) -> int:
        """A descriptor of the directory ``parts``, kept open by this _Dest (never closed by
        the caller)."""
        key = tuple(parts)
        fd = self._parents.get(key)
        if fd is None:
            if len(self._parents) >= 32:
                self.forget_dirs()
            fd = self._parents[key] = self.open_dir(parts)
        return fd

    # -- paths
    def resolve(self, parts: Sequence[str], jail: Sequence[str] = (),
                strict: bool = False) -> tuple[list[str], os.stat_result | None]:
        """Resolve ``parts`` (the final symlink followed) inside ``jail``; st None when missing."""
        done, st, missing = resolve_in_root(self.fd, parts, jail=jail, strict=strict)
        if missing:
            return done + missing, None
        return done, st

    def mkdir_all(self, parts: Sequence[str], jail: Sequence[str] = (), ids: tuple[int, int] | None = None,
                  strict: bool = False) -> list[str]:
        """fsutil's MkdirAll: create what is missing (0755, the --chown owner), symlinks on the
        way resolved inside ``jail``; returns the resolved directory."""
        done, st, missing = resolve_in_root(self.fd, parts, jail=jail, strict=strict)
        if st is not None and not stat.S_ISDIR(st.st_mode) and not missing:
            raise CopyError(f"{'/' + '/'.join(done)!r} is not a directory")
        for name in missing:
            pfd = self.open_dir(done)
            try:
                os.mkdir(name, 0o755, dir_fd=pfd)
                uid, gid = ids if ids is not None else (self.owner if self.owner is not None else (0, 0))
                if self.is_root:
                    os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
                os.chmod(name, 0o755, dir_fd=pfd)
            finally:
                os.close(pfd)
            done.append(name)
        return done

    def open_dir(self, parts: Sequence[str]) -> int:
        try:
            return _open_at(self.fd, parts, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV):
                raise CopyError(f"cannot copy to non-directory: {'/' + '/'.join(parts)!r}") from None
            raise

    # -- metadata
    def ids(self, e: Entry) -> tuple[int, int]:
        if self.owner is not None:
            return self.owner
        return (e.uid, e.gid) if self.keep_owner else (0, 0)

    def perms(self, e: Entry) -> int:
        if self.chmod is None:
            return stat.S_IMODE(e.mode)
        return self.chmod.apply(stat.S_IMODE(e.mode), e.is_dir)

    def set_meta_fd(self, fd: int, e: Entry) -> None:
        if self.is_root:
            os.fchown(fd, *self.ids(e))
        os.fchmod(fd, self.perms(e))
        for key, value in e.xattrs:
            try:
                os.setxattr(fd, key, value)
            except OSError as err:
                if err.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL, errno.EACCES):
                    raise
        os.utime(fd, ns=(e.atime_ns, e.mtime_ns))

    def _record_of(self, e: Entry) -> list[object] | None:
        """``PreviousCopy``'s record of the file ``e`` becomes, if it can have one."""
        if self.digest_of is None or e.data is not None or e.hardlink is not None or e.nlink > 1 or e.xattrs:
            return None
        self.recorded += 1
        if self.recorded > PreviousCopy.MAX_FILES:
            self.record.clear()
            self.digest_of = None    # nothing more is recorded, and nothing linked
            return None
        digest = self.digest_of(e)
        if digest is None:
            return None
        uid, gid = self.ids(e)
        return [digest, e.size, self.perms(e), uid, gid, e.mtime_ns]

    def charge(self, size: int, what: str) -> None:
        self.written += size
        if self.written > self.limits.max_bytes:
            raise CopyError(f"the copy writes more than {self.limits.max_bytes} bytes (at {what!r}; "
                            "HOIST_UNPACK_MAX_BYTES)")

    # -- entries
    def clear_for_file(self, pfd: int, name: str, where: str) -> None:
        """fsutil's ensureEmptyFileTarget: a directory there is an error, anything else goes."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise CopyError(f"cannot replace to directory {where!r} with file")
        os.unlink(name, dir_fd=pfd)

    def _make(self, pfd: int, name: str, where: str, make: Callable[[], _T]) -> _T:
        """``make()`` (which creates ``name`` in ``pfd`` exclusively), clearing what is in the way
        first if there is something."""
        try:
            return make()
        except FileExistsError:
            self.clear_for_file(pfd, name, where)
            return make()

    def put(self, selection: Selection, srcfd: int, parts: list[str], e: Entry,
            links: dict[tuple[int, str], list[str]], item_index: int) -> None:
        """Write entry ``e`` (not a directory) at ``parts``."""
        where = "/" + "/".join(parts)
        pfd = self.parent_dir(parts[:-1])
        name = parts[-1]
        self.record.pop("/".join(parts), None)    # what an earlier source wrote there is gone
        # Each entry is made exclusively, and what is in the way is cleared only when the make
        # says so (fsutil's ensureEmptyFileTarget): a stat of every name before making it cost a
        # copy of 3,000 files into a tmpfs ~7 % of its time (negative lookups).
        if stat.S_ISREG(e.mode):
            if e.hardlink is not None and e.hardlink in links:
                self.drain()           # the first name of the group is written
                first = links[e.hardlink]
                sfd = self.open_dir(first[:-1])
                try:
                    self._make(pfd, name, where, lambda: os.link(first[-1], name, src_dir_fd=sfd, dst_dir_fd=pfd,
                                                                 follow_symlinks=False))
                finally:
                    os.close(sfd)
                return
            self.charge(e.size, where)
            record = self._record_of(e)
            if record is not None and self.previous is not None and self.previous.link(parts, record, pfd, name):
                self.record["/".join(parts)] = record
                links[(item_index, e.rel)] = list(parts)
                return
            if self.writers is not None and self.writers.wanted():
                self.writers.add(tuple(parts[:-1]), pfd, lambda fd: self._write_file(
                    selection, srcfd, fd, name, where, parts, e, record))
            elif self.writers is not None:
                self.writers.took(self._write_file(selection, srcfd, pfd, name, where, parts, e, record))
            else:
                self._write_file(selection, srcfd, pfd, name, where, parts, e, record)
            links[(item_index, e.rel)] = list(parts)
        elif stat.S_ISLNK(e.mode):
            assert e.link is not None
            target = e.link
            self._make(pfd, name, where, lambda: os.symlink(target, name, dir_fd=pfd))
            if self.is_root:
                os.chown(name, *self.ids(e), dir_fd=pfd, follow_symlinks=False)
            os.utime(name, ns=(e.atime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)
        elif stat.S_ISFIFO(e.mode) or stat.S_ISCHR(e.mode) or stat.S_ISBLK(e.mode):
            if stat.S_ISFIFO(e.mode):
                self._make(pfd, name, where, lambda: os.mkfifo(name, 0o600, dir_fd=pfd))
            elif self.is_root:
                self._make(pfd, name, where, lambda: os.mknod(name, stat.S_IFMT(e.mode) | 0o600, e.rdev, dir_fd=pfd))
            else:
                self.clear_for_file(pfd, name, where)
                return
            # Just made by us in a directory held by descriptor: nothing can have swapped it.
            if self.is_root:
                os.chown(name, *self.ids(e), dir_fd=pfd, follow_symlinks=False)
            os.chmod(name, self.perms(e), dir_fd=pfd)
            os.utime(name, ns=(e.atime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _write_file(self, selection: Selection, srcfd: int, pfd: int, name: str, where: str, parts: list[str],
                    e: Entry, record: list[object] | None) -> int:
        """Create the regular file ``name`` in ``pfd`` and fill it from ``e`` (inline, or in a
        writer thread); returns how long the create took (ns: ``_Writers.took``)."""
        began = time.perf_counter_ns()
        fd = self._make(pfd, name, where, lambda: os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd))
        made = time.perf_counter_ns() - began
        try:
            if e.data is not None:
                _write_all(fd, e.data)
            else:
                src = selection.open_entry(srcfd, e)
                try:
                    _copy_data(src, fd, e.size)
                    # Recorded only if what was copied is what was hashed.
                    if record is not None and _unchanged(os.fstat(src), e):
                        self.record["/".join(parts)] = record
                finally:
                    os.close(src)
            self.set_meta_fd(fd, e)
        finally:
            os.close(fd)
        return made

    def put_dir(self, parts: list[str], e: Entry | None) -> None:
        """Make sure directory ``parts`` exists (created with ``e``'s metadata, or an existing
        one takes it when ``e`` is given: fsutil's overwriteTargetMetadata)."""
        pfd = self.open_dir(parts[:-1])
        try:
            try:
                st = os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is None:
                os.mkdir(parts[-1], 0o700, dir_fd=pfd)
                if e is None:  # a directory made on the way (MkdirAll's 0755 and owner)
                    if self.is_root:
                        uid, gid = self.owner if self.owner is not None else (0, 0)
                        os.chown(parts[-1], uid, gid, dir_fd=pfd, follow_symlinks=False)
                    os.chmod(parts[-1], 0o755, dir_fd=pfd)
            elif not stat.S_ISDIR(st.st_mode):
                raise CopyError(f"cannot copy to non-directory: {'/' + '/'.join(parts)!r}")
        finally:
            os.close(pfd)
        if e is not None:
            self.dir_meta.append((list(parts), e))

    def finish_dirs(self) -> None:
        """Directory metadata last, deepest first (writing children changed their times)."""
        self.drain()
        for parts, e in sorted(self.dir_meta, key=lambda pe: len(pe[0]), reverse=True):
            fd = self.open_dir(parts)
            try:
                self.set_meta_fd(fd, e)
            finally:
                os.close(fd)
        self.dir_meta.clear()


class _Writers:
    """Worker threads that create and fill a copy's regular files, for file systems where
    making an inode is slow, and the kernel makes one directory's entries one at a time (its
    lock): 3,000 files in 60 directories took 1.76 s one at a time, 1.52 s by eight threads in
    walk order and 0.70 s by eight threads each in another directory. So the files go to the
    workers in batches, one per run of files with the same parent (a tree's walk lists a
    directory's files together), several directories at once.

    What made inodes slow here: ext4 without a journal (this machine's root) skips, for each
    inode it allocates, every free inode of the group deleted in the last 5 s (305 s while
    its inode table block is dirty: fs/ext4/ialloc.c, ``recently_deleted``), scanning from
    the group's start each time: after a tree of 3,000 files was deleted, each create took
    0.4-1.3 ms of kernel CPU against ~25 us on a fresh file system. Threads put both cores on
    those scans (the same copy 2.05-2.10 s in line, 1.18-1.75 s by threads, 2026-12-07).

    Where making a file is quick, the threads only add their handovers and the GIL (the same
    copy on a fresh ext4: 0.44-0.70 s in line, 0.72-0.91 s by threads; into a tmpfs 0.095 s
    against 0.20 s). So files are written in line, their creates timed (the create alone: the
    rest of a file's cost is this process's own, which threads do not share out), and the
    threads take over (for the rest of the copy) once a run of ``WINDOW`` creates took more
    than ``SLOW_NS`` each on average: the latency moves within one copy.

    A copy hands files over only within one source item, whose paths are all different (the
    tree is walked once), and drains before anything that could touch a pending path: a hardlink
    to an earlier name, the next item, the directories' metadata, and the end."""

    WINDOW = 32
    SLOW_NS = 150_000
    THREADS = 8
    _DEPTH = 32          # batches queued at most: memory stays bounded, errors surface soon
    _BATCH = 256         # files a batch holds at most (a huge directory is several batches)

    def __init__(self) -> None:
        self.timed = 0                           # files written in line in the current window
        self.spent_ns = 0
        self.parallel = False
        self._pool: Any = None
        self._pending: deque[Any] = deque()
        self._parent: tuple[str, ...] | None = None
        self._fd = -1                          # the batch's own descriptor of its parent
        self._batch: list[Callable[[int], object]] = []

    def wanted(self) -> bool:
        """Whether the next file goes to the threads."""
        return self.parallel

    def took(self, ns: int) -> None:
        """The create of a file written in line took ``ns``."""
        self.timed += 1
        self.spent_ns += ns
        if self.timed == self.WINDOW:
            self.parallel = self.spent_ns > self.SLOW_NS * self.WINDOW
            self.timed = self.spent_ns = 0

    def add(self, parent: tuple[str, ...], pfd: int, write: Callable[[int], object]) -> None:
        """Queue ``write(parent_fd)``, a file of the directory ``parent`` (open as ``pfd``, which
        the caller keeps: the batch writes through a duplicate of its own). Raises if an earlier
        write failed."""
        if parent != self._parent or self._fd < 0 or len(self._batch) >= self._BATCH:
            self._flush()
            self._fd = os.dup(pfd)
            self._parent = parent
        self._batch.append(write)

    def _flush(self) -> None:
        batch, fd = self._batch, self._fd
        self._batch, self._fd, self._parent = [], -1, None
        if fd < 0:
            return
        try:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.THREADS, thread_name_prefix="copy-writer")
            while len(self._pending) >= self._DEPTH:
                self._pending.popleft().result()
            self._pending.append(self._pool.submit(_run_batch, fd, batch))
        except BaseException:
            os.close(fd)
            raise

    def drain(self) -> None:
        first: BaseException | None = None
        try:
            self._flush()
        except BaseException as e:
            first = e
        while self._pending:
            try:
                self._pending.popleft().result()
            except BaseException as e:     # every write waited for; the first error raised
                first = first or e
        if first is not None:
            raise first

    def close(self) -> None:
        with contextlib.suppress(BaseException):
            self.drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _run_batch(fd: int, batch: list[Callable[[int], object]]) -> None:
    """One directory's files, in order; the first failure stops the batch (and the copy)."""
    try:
        for write in batch:
            write(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy_data(src: int, dst: int, size: int) -> None:
    """Copy ``size`` bytes, keeping holes of a sparse source as holes.

    copy_file_range first (the kernel copies, or shares extents where the file system can);
    once it has refused a pair of file systems (EXDEV: a bind-mounted context onto the step's
    overlay), reads and writes at explicit offsets for the rest of the process."""
    st = os.fstat(src)
    sparse = st.st_blocks * 512 < st.st_size
    dst_dev = os.fstat(dst).st_dev if _HAS_CFR else 0
    use_cfr = _HAS_CFR and (st.st_dev, dst_dev) not in _NO_CFR
    offset = 0
    while offset < size:
        if sparse:
            try:
                data_at = os.lseek(src, offset, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break  # only a hole is left
                raise
            hole_at = os.lseek(src, data_at, os.SEEK_HOLE)
        else:
            data_at, hole_at = offset, size
        pos = data_at
        end = min(hole_at, size)
        while pos < end:
            n = 0
            if use_cfr:
                try:
                    n = os.copy_file_range(src, dst, min(end - pos, 1 << 30), pos, pos)
                except OSError as e:  # across file systems (a bind-mounted source onto overlay)
                    if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    if e.errno in (errno.EXDEV, errno.EOPNOTSUPP, errno.ENOSYS):
                        _NO_CFR.add((st.st_dev, dst_dev))
                    use_cfr = False
            if n <= 0:
                chunk = os.pread(src, min(_CHUNK, end - pos), pos)
                if not chunk:
                    raise CopyError("a source file became shorter while it was being copied")
                view = memoryview(chunk)
                at = pos
                while view:
                    written = os.pwrite(dst, view, at)
                    view, at = view[written:], at + written
                n = len(chunk)
            pos += n
        offset = end
        if not sparse:
            break
    if sparse or offset < size:
        os.ftruncate(dst, size)


# (source device, destination device) pairs copy_file_range refused: not tried again.
_NO_CFR: set[tuple[int, int]] = set()
_HAS_CFR = hasattr(os, "copy_file_range")


def copy_into(selection: Selection, root: Path, dest: str, *, workdir: str = "/", owner: tuple[int, int] | None = None,
              chmod: Chmod | None = None, parents: bool = False, unpack_archives: bool = False,
              link: bool = False, limits: Limits | None = None,
              digest_of: Callable[[Entry], str | None] | None = None, previous: PreviousCopy | None = None,
              record: dict[str, list[object]] | None = None, parallel: bool = False) -> None:
    """Copy ``selection`` onto the rootfs ``root`` at ``dest`` with BuildKit's rules (see the
    module docstring); raises CopyError. With ``link`` (``COPY --link``) ``root`` is expected to be
    an empty directory that becomes the layer, as BuildKit copies onto scratch there.

    ``digest_of`` (the sources' content digests, as the HashCache knows them) makes the copy
    fill ``record`` with what it wrote, and link from ``previous`` what it can
    (``PreviousCopy``). ``parallel``: regular files are written by worker threads (``_Writers``;
    the caller's process must be able to run threads: not a chrooted child)."""
    del link  # the caller decides where the copy goes; the rules are the same
    limits = limits or Limits()
    as_dir = dest_is_dir(dest) or parents
    dparts = dest_path(dest, workdir)
    items = selection.items
    if len(selection.groups) > 1 and not dest_is_dir(dest):
        raise CopyError(MULTI_SOURCE_ERROR)
    out = _Dest(root, owner, chmod, selection.keep_owner, limits)
    out.digest_of, out.previous = digest_of, previous
    if record is not None:
        out.record = record
    if parallel and not unpack_archives:   # an archive's extraction may replace what it wrote
        out.writers = _Writers()
    srcfd = -1
    try:
        if selection.root is not None:
            srcfd = os.open(selection.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        _check_space(root, selection.total_size, limits)
        # fsutil's Copy: the destination's parent (or itself, for a directory) exists first.
        out.mkdir_all(dparts if as_dir else dparts[:-1])
        if len(items) > 1 and not as_dir:
            _, st = out.resolve(dparts)
            if st is None or not stat.S_ISDIR(st.st_mode):
                raise CopyError(MULTI_SOURCE_ERROR)
        for group in selection.groups:
            groupfd = srcfd
            if group.root is not None:
                if group.fd < 0:
                    raise CopyError(f"the source of {group.pattern!r} was not opened for the copy")
                groupfd = group.fd
            unpack = unpack_archives if group.unpack is None else group.unpack
            for index, item in enumerate(group.items):
                links: dict[tuple[int, str], list[str]] = {}
                _copy_item(selection, groupfd, out, item, index, dparts, parents, unpack, links)
                out.drain()    # the next item may write where this one did
        out.finish_dirs()
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise CopyError(f"no space left on the device of {root} while copying") from None
        if e.errno == errno.EDQUOT:
            raise CopyError(f"disk quota exceeded on {root} while copying") from None
        raise CopyError(f"copy failed: {e.strerror}" + (f" ({e.filename})" if e.filename else "")) from None
    finally:
        out.close()
        if srcfd >= 0:
            os.close(srcfd)


def plan_direct_copy(tree: LayeredTree | None, selection: Selection, dest: str, *,
                     workdir: str = "/") -> list[tuple[list[str], int, os.stat_result]] | None:
    """Whether this copy onto the chain ``tree`` (None: an empty chain) can be written straight
    into an empty directory that then is the step's upper dir, with the same result as the
    copy onto an overlay of the chain; None when it cannot, else the directories of the
    destination's path that exist in the chain (top-down, with the layer and lstat of each),
    which ``copy_up`` makes first, as overlayfs copies a directory up.

    It can when every component of the destination directory is a directory of the chain or
    is found in no layer at all (no symlink to follow, nothing a whiteout hides that a new
    directory would have to hide as opaque), and no name the copy writes there is found in any
    layer (nothing to replace, no directory to take new metadata). Only plain copies: one
    destination directory (``dest/``, or a single directory source), no archives, no
    ``--parents``."""
    items = selection.items
    if not items or any(group.unpack for group in selection.groups):
        return None
    if not dest_is_dir(dest) and not (len(items) == 1 and items[0].top.is_dir):
        return None
    names: set[str] = set()
    for item in items:
        if item.top.is_dir:
            names.update(e.rel.split("/", 1)[0] for e in item.entries[1:])
        else:
            names.add(item.name)
    if not names or "" in names:
        return None
    if tree is None:
        return []
    dparts = dest_path(dest, workdir)
    existing: list[tuple[list[str], int, os.stat_result]] = []
    for depth in range(1, len(dparts) + 1):
        parts = dparts[:depth]
        found = tree.lookup(parts)
        if found is None:
            return None if tree.present_anywhere(parts) else existing
        if not stat.S_ISDIR(found[1].st_mode):
            return None
        existing.append((parts, found[0], found[1]))
    if any(tree.present_anywhere(dparts + [name]) for name in names):
        return None
    return existing


def copy_up(tree: LayeredTree, dirs: list[tuple[list[str], int, os.stat_result]], upper: Path) -> None:
    """Make ``dirs`` (``plan_direct_copy``'s, top-down) in the empty ``upper`` as overlayfs's
    copy-up makes them: the lower directory's mode, owner, xattrs (not overlay's own) and
    times; a copied-up parent keeps its times when a child is copied up into it."""
    try:
        rootfd = os.open(upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CopyError(f"cannot open {upper}: {e.strerror}") from None
    made: list[tuple[int, str, os.stat_result]] = []
    try:
        parent = rootfd
        for parts, layer, st in dirs:
            name = parts[-1]
            os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            lower = tree.open_in(layer, parts, os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                for key, value in _xattrs_of(lower):
                    try:
                        os.setxattr(fd, key, value)
                    except OSError as err:
                        if err.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL, errno.EACCES):
                            raise
            finally:
                os.close(lower)
            made.append((fd, name, st))
            parent = fd
        for fd, _, st in reversed(made):
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    except OSError as e:
        raise CopyError(f"cannot prepare the copy's layer: {e.strerror}") from None
    finally:
        for fd, _, _ in made:
            os.close(fd)
        os.close(rootfd)


def _check_space(root: Path, size: int, limits: Limits) -> None:
    fs = os.statvfs(root)
    free = fs.f_bavail * fs.f_frsize
    reserve = limits.reserve(fs)
    if size and free - size < reserve:
        raise CopyError(f"copying {size} bytes would leave less than {reserve} bytes free on the "
                        f"filesystem of {root} ({free} free; HOIST_UNPACK_MIN_FREE)")


def _copy_item(selection: Selection, srcfd: int, out: _Dest, item: Item, index: int, dparts: list[str],
               parents: bool, unpack_archives: bool, links: dict[tuple[int, str], list[str]]) -> None:
    top = item.top
    if parents:
        base = out.mkdir_all(dparts)
        rel = _split(item.parents)
        # The directories kept by --parents take the metadata of their sources.
        for level in range(1, len(rel)):
            src_dir = _source_dir_entry(selection, srcfd, item, rel, level)
            target = base + rel[:level]
            if _lstat_at(out.fd, target) is None:
                out.put_dir(target, src_dir)
            else:
                out.put_dir(target, None)
        target = base + rel if rel else base
        if top.is_dir:
            if rel:
                out.put_dir(target, top)
            _copy_tree(selection, srcfd, out, item, index, target, links)
        else:
            out.put(selection, srcfd, target, top, links, index)
        return
    resolved, st = out.resolve(dparts)
    if unpack_archives and stat.S_ISREG(top.mode) and top.data is None:
        kind = _sniff_archive(selection, srcfd, top)
        if kind is not None:
            target = out.mkdir_all(dparts)
            _extract(selection, srcfd, top, kind, out, target)
            return
    if top.is_dir:
        if st is None:
            resolved = out.mkdir_all(dparts)
        elif not stat.S_ISDIR(st.st_mode):
            raise CopyError(f"cannot copy to non-directory: {'/' + '/'.join(resolved)!r}")
        _copy_tree(selection, srcfd, out, item, index, resolved, links)
        return
    if st is not None and stat.S_ISDIR(st.st_mode):
        if not item.name:
            raise CopyError("cannot copy the root of the source onto a file")
        target = resolved + [item.name]
    else:
        if not resolved:
            raise CopyError("cannot copy a file onto '/'")
        target = out.mkdir_all(resolved[:-1]) + resolved[-1:]
    out.put(selection, srcfd, target, top, links, index)


def _source_dir_entry(selection: Selection, srcfd: int, item: Item, rel: list[str], level: int) -> Entry | None:
    # The source directory ``level`` components below the pivot, read for its metadata.
    root: SourceRoot = selection.tree if selection.tree is not None else srcfd
    if isinstance(root, int) and root < 0:
        return None
    parts, st, missing = resolve_in_root(root, list(item.parents_base) + rel[:level])
    if missing or st is None or not stat.S_ISDIR(st.st_mode):
        return None
    return Entry(rel="", src=tuple(parts), mode=st.st_mode, uid=st.st_uid, gid=st.st_gid, size=0,
                 mtime_ns=st.st_mtime_ns, atime_ns=st.st_atime_ns)


def _unchanged(st: os.stat_result, e: Entry) -> bool:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (e.size, e.mtime_ns, e.ctime_ns)


def _copy_tree(selection: Selection, srcfd: int, out: _Dest, item: Item, index: int, target: list[str],
               links: dict[tuple[int, str], list[str]]) -> None:
    """The contents of a directory item into the existing directory ``target`` (whose own
    metadata stays as it is)."""
    for e in item.entries[1:]:
        parts = target + e.rel.split("/")
        if e.is_dir:
            out.put_dir(parts, e)
        else:
            out.put(selection, srcfd, parts, e, links, index)


# -- ADD: local archives ------------------------------------------------------------------------

_MAGIC = ((b"\x1f\x8b", "gz"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zst"))


def _decompressed(f: BinaryIO, kind: str) -> IO[bytes]:
    if kind == "gz":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if kind == "bz2":
        return bz2.BZ2File(f)
    if kind == "xz":
        return lzma.LZMAFile(f)
    if kind == "zst":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    return f


def _sniff_archive(selection: Selection, srcfd: int, e: Entry) -> str | None:
    """The compression ("", "gz", ...) of a file that holds a tar, or None (docker's IsArchivePath:
    the decompressed stream must start with a valid tar header)."""
    fd = selection.open_entry(srcfd, e)
    with os.fdopen(fd, "rb") as f:
        magic = f.read(6)
        f.seek(0)
        kind = next((k for m, k in _MAGIC if magic.startswith(m)), "")
        try:
            stream = _decompressed(f, kind)
            block = stream.read(tarfile.BLOCKSIZE)
        except Exception:
            return None
        if len(block) < tarfile.BLOCKSIZE:
            return None
        try:
            tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError:
            return None
        return kind


def _inside(base: list[str], name: str) -> list[str] | None:
    """The components of ``name`` (a tar member or link) below the extraction root, or None when
    it leaves it lexically (docker's breakout check)."""
    parts: list[str] = list(base)
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(p)
    return parts


def _extract(selection: Selection, srcfd: int, e: Entry, kind: str, out: _Dest, jail: list[str]) -> None:
    """Extract the archive ``e`` into ``jail`` as if it were ``/`` (chrootarchive.Untar)."""
    fd = selection.open_entry(srcfd, e)
    where = "/".join(e.src)
    count = 0
    dir_times: list[tuple[list[str], int]] = []
    with os.fdopen(fd, "rb") as f:
        try:
            stream = _decompressed(f, kind)
            tar = tarfile.open(fileobj=stream, mode="r|", tarinfo=bounded_tarinfo(CopyError, CopyError))
            while (member := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]
                count += 1
                if count > out.limits.max_entries:
                    raise CopyError(f"archive {where!r} has more than {out.limits.max_entries} entries")
                _extract_member(out, tar, member, jail, where, dir_times)
        except (CopyError, OSError):
            raise
        except Exception as err:
            raise CopyError(f"archive {where!r} cannot be extracted: {err}") from None
    for parts, mtime_ns in sorted(dir_times, key=lambda pt: len(pt[0]), reverse=True):
        try:
            dfd = out.open_dir(parts)
        except CopyError:
            continue
        try:
            os.utime(dfd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(dfd)


def _extract_member(out: _Dest, tar: tarfile.TarFile, m: tarfile.TarInfo, jail: list[str], where: str,
                    dir_times: list[tuple[list[str], int]]) -> None:
    rel = _inside([], m.name)
    if rel is None:
        raise CopyError(f"archive {where!r}: member {m.name!r} is outside of the destination")
    if not rel:
        return
    if len(rel) > out.limits.max_depth:
        raise CopyError(f"archive {where!r}: member {m.name[:100]!r} is too deep")
    # Directories the archive implies but does not hold belong to root (BuildKit's impliedUID).
    parent = out.mkdir_all(rel[:-1], jail=jail, ids=(0, 0), strict=True)
    name = rel[-1]
    parts = parent + [name]
    uid, gid = out.owner if out.owner is not None else (m.uid, m.gid)
    mtime_ns = int(m.mtime * 1_000_000_000)
    pfd = out.open_dir(parent)
    try:
        try:
            existing = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and not (m.isdir() and stat.S_ISDIR(existing.st_mode)):
            if stat.S_ISDIR(existing.st_mode):
                out.forget_dirs()
                remove_dir_at(pfd, name)
            else:
                os.unlink(name, dir_fd=pfd)
        if m.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(name, 0o700, dir_fd=pfd)
            dfd = out.open_dir(parts)
            try:
                if out.is_root:
                    os.fchown(dfd, uid, gid)
                os.fchmod(dfd, m.mode & 0o7777)
            finally:
                os.close(dfd)
            dir_times.append((parts, mtime_ns))
        elif m.isreg():
            out.charge(m.size, m.name)
            ffd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            try:
                src = tar.extractfile(m)
                if src is not None:
                    _copy_member(src, ffd, m.size, where)
                os.ftruncate(ffd, m.size)
                if out.is_root:
                    os.fchown(ffd, uid, gid)
                os.fchmod(ffd, m.mode & 0o7777)
                os.utime(ffd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(ffd)
        elif m.issym():
            # The target is kept as it is; following a relative one that leaves the extraction
            # root is refused when a later member goes through it (resolve_in_root's strict).
            os.symlink(m.linkname, name, dir_fd=pfd)
            if out.is_root:
                os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
        elif m.islnk():
            target = _inside([], m.linkname)
            if not target:
                raise CopyError(f"archive {where!r}: hardlink {m.name!r} -> {m.linkname!r} is outside "
                                "of the destination")
            tparent, _tst = out.resolve(target[:-1], jail=jail, strict=True)
            tst = _lstat_at(out.fd, tparent + [target[-1]])
            if tst is None or stat.S_ISDIR(tst.st_mode):
                raise CopyError(f"archive {where!r}: hardlink {m.name!r} -> {m.linkname!r}: no such file")
            tfd = out.open_dir(tparent)
            try:
                os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(tfd)
        elif m.isfifo() or m.ischr() or m.isblk():
            if m.isfifo():
                os.mkfifo(name, 0o600, dir_fd=pfd)
            elif out.is_root:
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
            else:
                return
            if out.is_root:
                os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(name, m.mode & 0o7777, dir_fd=pfd)
            os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(pfd)


def _copy_member(src: IO[bytes], fd: int, size: int, where: str) -> None:
    """Write a member's bytes; blocks of zeros become holes (sparse members stay small)."""
    pos = 0
    while pos < size:
        chunk = src.read(min(_CHUNK, size - pos))
        if not chunk:
            raise CopyError(f"archive {where!r} ends inside a member")
        if chunk.count(0) == len(chunk):
            os.lseek(fd, len(chunk), os.SEEK_CUR)
        else:
            _write_all(fd, chunk)
        pos += len(chunk)


__all__ = [
    "MULTI_SOURCE_ERROR",
    "Chmod",
    "ChownSpec",
    "CopyError",
    "Entry",
    "HashCache",
    "Item",
    "Selection",
    "SourceGroup",
    "copy_into",
    "copy_up",
    "dest_is_dir",
    "dest_path",
    "go_match",
    "has_wildcards",
    "parse_chmod",
    "parse_chown",
    "plan_direct_copy",
    "resolve_in_root",
    "resolve_owner",
    "select_sources",
]
