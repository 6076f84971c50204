"""ADD's remote sources: URLs and git repositories, told apart and fetched as BuildKit does.

Which source is which (``classify``; dockerfile2llb's ``isGitSource``/``isHTTPSource`` over
``dfgitutil.ParseGitRef``): a git ref is an ``http``/``https`` URL whose path ends in ``.git``,
any ``ssh://`` or ``git://`` URL, or an scp-like ``[user@]host:path``; its fragment is
``#ref[:subdir]``. Any other ``http``/``https`` URL is downloaded; everything else is a path in
the context (``file://`` is not a scheme either of them knows, so it is a path, as in BuildKit).

URLs (BuildKit's ``source/http``): the file is named after the last element of the URL's
path (``__unnamed__`` when there is none; ``..`` too, which BuildKit would write beside its
download directory), written 0600 and owned by root, its mtime the response's
``Last-Modified`` or the epoch, never extracted unless ``--unpack=true``. With ``--checksum`` the
download must have that digest, and the step's cache key is known without downloading (a hit
fetches nothing); without one the key is the downloaded content's digest, name and mtime, and
a rebuild revalidates with the ETag the last download had (``If-None-Match``: a 304 keys the
step by the digest recorded then, so an unchanged URL is not downloaded again on a hit).

Git refs (BuildKit's ``source/git``): the ref (a branch, a tag or a full commit id; the remote's
HEAD without one) is resolved to a commit with ``git ls-remote`` and the step is keyed by that
commit (plus subdir and ``--keep-git-dir``), so a hit clones nothing; a ``--checksum`` must be a
prefix of the commit id. The checkout's ``.git`` is removed unless ``--keep-git-dir``; the
subdir (resolved inside the checkout) is what is copied. Submodules are fetched (recursively,
shallow where the server allows) unless ``?submodules=false``; their URLs are the repository's,
held to the same transports and bounds.

Everything fetched is a stranger's: downloads are bounded (``storage.tarlimits.Limits``:
``HOIST_UNPACK_MAX_BYTES`` and the free-space reserve), a git tree is measured with
``git ls-tree`` before it is checked out (bytes and entries bounded the same way), git runs
with no system or global configuration, no templates, an empty HOME (but for ssh remotes, which
need the caller's keys) and only the http, https, ssh and git transports, and each file it writes
is capped by RLIMIT_FSIZE while a watchdog bounds the total. The copy itself reads the fetched
trees through descriptors, symlinks resolved inside them (``builder.copy``), so a link in a
repository cannot lead the copy out of it.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import posixpath
import re
import shutil
import signal
import stat
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from builder.copy import CopyError, Selection, SourceGroup, select_sources
from builder.errors import DockerfileError
from builder.source import FetchError, GitFetcher, UrlFetcher
from storage.tarlimits import Limits

UNNAMED = "__unnamed__"
GIT_PROTOCOLS = frozenset({"http", "https", "ssh", "git"})
_PROTO = re.compile(r"^[a-zA-Z0-9]+://")
_SCP = re.compile(r"^(?:([a-zA-Z0-9_-]+)@)?([a-zA-Z0-9.-]+):(.*?)(?:#(.*))?$")
_HEX_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-fA-F]+")
GIT_TIMEOUT = float(os.environ.get("HOIST_GIT_TIMEOUT", "600"))


@dataclass(frozen=True)
class GitRef:
    """A parsed git source: ``remote`` (what git is given), ``ref`` and ``subdir`` from the
    fragment (``#ref:subdir``) or the query (``?branch=...&subdir=...``, Dockerfile 1.18), and
    the query's ``checksum`` and ``keep-git-dir``."""

    remote: str
    scheme: str
    ref: str | None = None
    subdir: str = ""
    checksum: str | None = None
    keep_git_dir: bool | None = None
    submodules: bool = True


_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def _query_ref(src: str, query: str, ref: str | None, subdir: str) -> GitRef:
    """dfgitutil's loadQuery: each key at most once, known keys only, no conflicts."""
    values: dict[str, list[str]] = {}
    for part in query.split("&") if query else []:
        key, eq, value = part.partition("=")
        values.setdefault(unquote(key), []).append(unquote(value) if eq else "")
    tag = branch = ""
    checksum: str | None = None
    keep: bool | None = None
    submodules = True
    for key, vals in values.items():
        if len(vals) > 1:
            raise DockerfileError(f"git source {src!r}: query {key!r} has multiple values")
        value = vals[0]
        if value == "" and key not in ("submodules", "keep-git-dir"):
            raise DockerfileError(f"git source {src!r}: query {key!r} has no value")
        if key == "ref":
            if ref and ref != value:
                raise DockerfileError(f"git source {src!r}: ref conflicts: {ref!r} vs {value!r}")
            ref = value
        elif key == "tag":
            tag = value
        elif key == "branch":
            branch = value
        elif key == "subdir":
            if subdir and subdir != value:
                raise DockerfileError(f"git source {src!r}: subdir conflicts: {subdir!r} vs {value!r}")
            subdir = value
        elif key in ("checksum", "commit"):
            checksum = value
        elif key in ("keep-git-dir", "submodules"):
            flag = True if value == "" else _GO_BOOLS.get(value)
            if flag is None:
                raise DockerfileError(f"git source {src!r}: invalid {key} value: {value!r}")
            if key == "keep-git-dir":
                keep = flag
            else:
                submodules = flag
        else:
            raise DockerfileError(f"git source {src!r}: unexpected query {key!r}")
    for kind, name in (("tags", tag), ("heads", branch)):
        if not name:
            continue
        if kind == "heads" and tag:
            raise DockerfileError(f"git source {src!r}: branch conflicts with tag")
        full = name if name.startswith(f"refs/{kind}/") else f"refs/{kind}/{name}"
        if ref and ref != full:
            raise DockerfileError(f"git source {src!r}: ref conflicts: {ref!r} vs {full!r}")
        ref = full
    if checksum and not ref:
        ref = checksum
    return GitRef(remote="", scheme="", ref=ref or None, subdir=subdir, checksum=checksum, keep_git_dir=keep,
                  submodules=submodules)


def parse_git_ref(src: str) -> GitRef | None:
    """The git ref ``src`` names, or None when it is not one (dfgitutil.ParseGitRef)."""
    if src.startswith(("./", "../")):
        return None
    if _PROTO.match(src):
        scheme = src.split("://", 1)[0].lower()
        if scheme not in GIT_PROTOCOLS:
            return None
        parts = urlsplit(src)
        if scheme in ("http", "https") and not unquote(parts.path).endswith(".git"):
            return None
        remote = parts._replace(query="", fragment="").geturl()
        fragment = parts.fragment
        query = parts.query
    else:
        parsed = urlsplit(src)
        if parsed.scheme and not (parsed.netloc == "" and parsed.path and not parsed.path.startswith("/")):
            return None  # a URL with an explicit scheme is not scp-like
        m = _SCP.match(src)
        if m is None:
            return None
        scheme = "ssh"
        remote, query = src.split("#", 1)[0], ""
        fragment = m.group(4) or ""
    if fragment.startswith("#"):
        raise DockerfileError(f"git source {src!r}: the '##key=value' fragment form is not supported by hoist "
                              "(use #ref:subdir or ?ref=...&subdir=...)")
    ref, _, subdir = fragment.partition(":")
    found = _query_ref(src, query, ref or None, subdir)
    return dataclasses.replace(found, remote=remote, scheme=scheme)


def is_http_source(src: str) -> bool:
    return src.startswith(("http://", "https://")) and parse_git_ref(src) is None


def classify(src: str) -> str:
    """"git", "url" or "local"."""
    if parse_git_ref(src) is not None:
        return "git"
    return "url" if is_http_source(src) else "local"


def url_file_name(url: str) -> str:
    """The name a downloaded file gets: the last element of the URL's (decoded) path, as Go's
    ``path.Base``; ``__unnamed__`` when that is empty, ``.``, ``/`` or ``..``."""
    path = unquote(urlsplit(url).path)
    base = posixpath.basename(path.rstrip("/")) if path.strip("/") else ""
    if base in ("", ".", "..", "/") or "\x00" in base:
        return UNNAMED
    return base


def http_time(value: str | None) -> float | None:
    """Seconds since the epoch of an HTTP date (RFC 1123, RFC 850 or asctime, as Go's
    ``http.ParseTime``), or None."""
    if not value:
        return None
    import email.utils      # only for ADD <url>: a cached build need not import it

    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # asctime has no zone: HTTP dates are UTC
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def git_options(ref: GitRef, checksum: str | None, keep_git_dir: bool) -> tuple[str | None, bool]:
    """The commit checksum and keep-git-dir of a git source: the flags and the URL's query must
    agree (dockerfile2llb's dispatchCopy)."""
    if ref.keep_git_dir is not None and keep_git_dir and not ref.keep_git_dir:
        raise DockerfileError("inconsistent keep-git-dir configuration")
    if checksum and ref.checksum and checksum != ref.checksum:
        raise DockerfileError(f"checksum mismatch {checksum!r} != {ref.checksum!r}")
    want = ref.checksum or checksum
    if want:
        check_git_checksum(want)
    return want, keep_git_dir if ref.keep_git_dir is None else ref.keep_git_dir


def check_git_checksum(value: str) -> None:
    if not _HEX.fullmatch(value) or len(value) > 64:
        raise DockerfileError(f"invalid checksum {value!r} for a git source: expected hex commit hash")


def _escape(name: str) -> str:
    """A path for ``select_sources`` with its wildcard characters taken literally."""
    return re.sub(r"([*?\[\\])", r"\\\1", name)


# -- the plan of one ADD -----------------------------------------------------------------------------

@dataclass
class _Remote:
    position: int
    source: str
    kind: str                                   # "url" | "git"
    git: GitRef | None = None
    commit: str | None = None
    key: dict[str, Any] | None = None
    group: SourceGroup | None = None


@dataclass
class RemoteSources:
    """The URL and git sources of one ADD, in source order: keyed (before fetching where that
    is possible), then fetched into a scratch directory and turned into source groups."""

    sources: tuple[str, ...]
    checksum: str | None
    keep_git_dir: bool
    unpack: bool | None
    remotes: list[_Remote] = field(default_factory=list)

    @classmethod
    def plan(cls, sources: Sequence[str], *, checksum: str | None, keep_git_dir: bool, unpack: bool | None,
             git: GitFetcher | None) -> RemoteSources | None:
        """None when every source is local; otherwise the plan, with git refs resolved to
        commits (raises DockerfileError)."""
        remotes = []
        for position, src in enumerate(sources):
            kind = classify(src)
            if kind == "git":
                remotes.append(_Remote(position, src, kind, git=parse_git_ref(src)))
            elif kind == "url":
                remotes.append(_Remote(position, src, kind))
        if not remotes:
            return None
        plan = cls(tuple(sources), checksum, keep_git_dir, unpack, remotes)
        for r in remotes:
            if r.kind == "git":
                assert r.git is not None
                if git is None:
                    raise DockerfileError(f"ADD {r.source}: this build has no git fetcher")
                want, keep = git_options(r.git, checksum, keep_git_dir)
                ref = r.git.ref
                try:
                    r.commit = ref if ref is not None and _HEX_COMMIT.fullmatch(ref) else git.resolve(r.git.remote, ref)
                except FetchError as e:
                    raise DockerfileError(str(e)) from None
                if want and not r.commit.startswith(want.lower()):
                    raise DockerfileError(f"expected checksum to match {want}, got {r.commit}")
                r.git = dataclasses.replace(r.git, keep_git_dir=keep)
                r.key = {"git": r.commit, "subdir": r.git.subdir, "keep_git_dir": keep,
                         "submodules": r.git.submodules}
            elif checksum:
                r.key = {"url": url_file_name(r.source), "checksum": checksum, "unpack": unpack is True}
        return plan

    @property
    def local(self) -> list[str]:
        remote = {r.position for r in self.remotes}
        return [s for i, s in enumerate(self.sources) if i not in remote]

    @property
    def keyed(self) -> bool:
        """Whether every remote source is keyed without fetching it."""
        return all(r.key is not None for r in self.remotes)

    def keys(self) -> list[dict[str, Any]]:
        return [dict(r.key or {}, position=r.position) for r in self.remotes]

    def revalidate(self, where: Path, fetcher: UrlFetcher | None, limits: Limits, etags: EtagCache) -> None:
        """Key the URLs that have no checksum: a conditional GET with the ETag a former build
        saw (BuildKit's If-None-Match); a 304 keys the source by the digest recorded then, with
        nothing downloaded, any other answer is the download itself."""
        for r in self.remotes:
            if r.kind == "url" and r.key is None:
                self._fetch_one(r, where, fetcher, None, limits, etags, conditional=True)

    def fetch(self, where: Path, fetcher: UrlFetcher | None, git: GitFetcher | None, limits: Limits,
              etags: EtagCache | None = None) -> None:
        """Fetch every remote source not fetched yet under ``where`` (a scratch directory the
        caller removes) and make its source group; raises DockerfileError."""
        for r in self.remotes:
            if r.group is None:
                self._fetch_one(r, where, fetcher, git, limits, etags, conditional=False)

    def _fetch_one(self, r: _Remote, where: Path, fetcher: UrlFetcher | None, git: GitFetcher | None,
                   limits: Limits, etags: EtagCache | None, *, conditional: bool) -> None:
        folder = where / f"source-{r.position}"
        try:
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(mode=0o700)
            if r.kind == "url":
                self._fetch_url(r, folder, fetcher, limits, etags, conditional=conditional)
            else:
                self._fetch_git(r, folder, git, limits)
        except (FetchError, CopyError) as e:
            raise DockerfileError(str(e)) from None
        except OSError as e:  # a full disk, a vanished scratch dir
            raise DockerfileError(f"ADD {r.source}: {e.strerror or e}") from None

    def _fetch_url(self, r: _Remote, folder: Path, fetcher: UrlFetcher | None, limits: Limits,
                   etags: EtagCache | None, conditional: bool = True) -> None:
        if fetcher is None:
            raise FetchError(f"ADD {r.source}: this build cannot download URLs")
        name = url_file_name(r.source)
        path = folder / name
        free = _free_budget(folder, limits)
        known = etags.get(r.source, name) if etags is not None and conditional and not self.checksum else None
        got = fetcher.fetch(r.source, path, min(limits.max_bytes, free),
                            if_none_match=known["etag"] if known else None)
        if got.not_modified and known is not None:
            r.key = {"url": name, "digest": known["digest"], "last_modified": known["last_modified"],
                     "unpack": self.unpack is True}
            return  # keyed; downloaded (unconditionally) only if the cache does not have the step
        if self.checksum:
            digest = got.digest if self.checksum.startswith("sha256:") else _file_digest(path, self.checksum)
            if digest != self.checksum:
                raise FetchError(f"digest mismatch for {r.source}: {digest} (expected: {self.checksum})")
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size != got.size:
            raise FetchError(f"ADD {r.source}: the download is not the file that was written")
        if os.geteuid() == 0:
            os.chown(path, 0, 0, follow_symlinks=False)
        os.chmod(path, 0o600)
        modified = http_time(got.last_modified)
        mtime = 0.0 if modified is None else modified
        os.utime(path, (mtime, mtime), follow_symlinks=False)
        if r.key is None:
            r.key = {"url": name, "digest": got.digest, "last_modified": got.last_modified,
                     "unpack": self.unpack is True}
        elif not self.checksum and r.key.get("digest") != got.digest:
            # Re-downloaded after a 304: the content must be what the ETag promised.
            raise FetchError(f"{r.source} changed while it was being fetched (its ETag said it had not)")
        if etags is not None and got.etag and not self.checksum:
            etags.put(r.source, name, got.etag, got.digest, got.last_modified)
        selection = select_sources(folder, [_escape(name)], ignore=None, what=f"URL {r.source}",
                                   keep_owner=False, limits=limits)
        r.group = dataclasses.replace(selection.groups[0], pattern=r.source, root=folder,
                                      unpack=self.unpack is True)

    def _fetch_git(self, r: _Remote, folder: Path, git: GitFetcher | None, limits: Limits) -> None:
        assert r.git is not None and r.commit is not None and git is not None
        checkout = folder / "checkout"
        git.checkout(r.git.remote, r.git.ref, r.commit, checkout, keep_git_dir=bool(r.git.keep_git_dir),
                     submodules=r.git.submodules, max_bytes=limits.max_bytes, max_entries=limits.max_entries)
        subdir = r.git.subdir.strip("/")
        selection = select_sources(checkout, [_escape(subdir) if subdir else "."], ignore=None,
                                   what=f"git {r.git.remote}", keep_owner=False, limits=limits)
        group = selection.groups[0]
        if not group.items or not group.items[0].top.is_dir:
            raise FetchError(f"git {r.git.remote}: {subdir!r} is not a directory at {r.commit}")
        r.group = dataclasses.replace(group, pattern=r.source, root=checkout, unpack=False)

    def merge(self, local: Selection) -> Selection:
        """``local`` (the context sources, then heredocs) with the fetched groups put in their
        places: sources in the order written, heredocs last (BuildKit's dispatchCopy)."""
        fetched = {r.position: r.group for r in self.remotes}
        local_groups = list(local.groups)
        ordered: list[SourceGroup] = []
        for position in range(len(self.sources)):
            group = fetched.get(position)
            if group is not None:
                ordered.append(group)
            elif local_groups:
                ordered.append(local_groups.pop(0))
        return local.with_groups(ordered + local_groups)


class EtagCache:
    """What former builds downloaded, by URL and file name: the ETag, digest and Last-Modified of
    the last download (one JSON file, written atomically; at most ``MAX`` entries, the oldest
    dropped). Only a hint for conditional requests: a 304 keys the step by the recorded digest."""

    MAX = 4096

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()   # stages build in threads
        self._entries: dict[str, dict[str, Any]] = {}
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self._entries = {k: v for k, v in loaded.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass

    @staticmethod
    def _key(url: str, name: str) -> str:
        return hashlib.sha256(f"{url}\0{name}".encode()).hexdigest()

    def get(self, url: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(self._key(url, name))
        if entry and isinstance(entry.get("etag"), str) and isinstance(entry.get("digest"), str) \
                and entry["digest"].startswith("sha256:"):
            return entry
        return None

    def put(self, url: str, name: str, etag: str, digest: str, last_modified: str | None) -> None:
        key = self._key(url, name)
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = {"etag": etag[:1024], "digest": digest, "last_modified": last_modified}
            while len(self._entries) > self.MAX:
                self._entries.pop(next(iter(self._entries)))
            text = json.dumps(self._entries)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError:
                tmp.unlink(missing_ok=True)


def _file_digest(path: Path, like: str) -> str:
    """``<algorithm>:<hex>`` of a file, in the algorithm of the digest ``like`` (sha384, sha512)."""
    algorithm = like.partition(":")[0]
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"


def _free_budget(folder: Path, limits: Limits) -> int:
    """Bytes a download may take: what the filesystem has beyond the free-space reserve."""
    fs = os.statvfs(folder)
    return max(0, fs.f_bavail * fs.f_frsize - limits.reserve(fs))


# -- the system git -------------------------------------------------------------------------------------

class SystemGit:
    """``GitFetcher`` with the ``git`` on PATH (see the module docstring for how it is confined)."""

    def __init__(self, binary: str = "git", timeout: float = GIT_TIMEOUT) -> None:
        self.binary = binary
        self.timeout = timeout

    def _env(self, remote: str, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "LANG", "LC_ALL", "SSH_AUTH_SOCK", "http_proxy", "https_proxy", "no_proxy",
                        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "all_proxy")}
        ssh = parse_git_ref(remote)
        if ssh is not None and ssh.scheme == "ssh" and "HOME" in os.environ:
            env["HOME"] = os.environ["HOME"]          # the caller's keys and known_hosts, as `git clone`
        else:
            env["HOME"] = str(home)
        env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
                   GIT_ALLOW_PROTOCOL="http:https:ssh:git", GIT_SSH_COMMAND="ssh -o BatchMode=yes",
                   GIT_ASKPASS="true", GIT_TEMPLATE_DIR="")
        return env

    def _run(self, args: list[str], env: dict[str, str], *, cwd: Path | None = None, file_limit: int | None = None,
             watch: tuple[Path, int] | None = None, what: str) -> str:
        # No preexec_fn (unsafe with the build's threads): the umask and process group are
        # Popen's own, the file-size cap is util-linux's prlimit exec'ing git with it set.
        argv = [self.binary, *args]
        if file_limit is not None:
            prlimit = shutil.which("prlimit", path=env.get("PATH")) or "/usr/bin/prlimit"
            argv = [prlimit, f"--fsize={file_limit}", "--", *argv]
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, umask=0o022, process_group=0)
        except FileNotFoundError:
            raise FetchError(f"{what}: {argv[0]} is not installed (git and util-linux's prlimit are needed)") from None
        too_big = threading.Event()
        done = threading.Event()
        if watch is not None:
            threading.Thread(target=_watchdog, args=(proc, watch[0], watch[1], too_big, done), daemon=True).start()
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise FetchError(f"{what}: git did not finish in {self.timeout:.0f}s (HOIST_GIT_TIMEOUT)") from None
        finally:
            done.set()
        # A file that reached RLIMIT_FSIZE (in git or in a transport helper it runs) is the limit too.
        capped = file_limit is not None and watch is not None and proc.returncode != 0 and \
            _has_file_of(watch[0], file_limit)
        if too_big.is_set() or capped or proc.returncode == -signal.SIGXFSZ:
            raise FetchError(f"{what}: the repository is larger than the {watch[1] if watch else file_limit} "
                             "bytes allowed (HOIST_UNPACK_MAX_BYTES)")
        if proc.returncode != 0:
            lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
            tail = lines[-1].strip() if lines else f"exit status {proc.returncode}"
            raise FetchError(f"{what}: {tail[:500]}")
        return out.decode(errors="replace")

    def resolve(self, remote: str, ref: str | None) -> str:
        home = _empty_home()
        try:
            wanted = [ref] if ref else ["HEAD"]
            if ref and not ref.startswith("refs/"):
                wanted = [f"refs/tags/{ref}", f"refs/heads/{ref}", ref]
            patterns = wanted + [w + "^{}" for w in wanted if w.startswith("refs/tags/")]
            out = self._run(["ls-remote", "--", remote, *patterns], self._env(remote, home), what=f"git {remote}")
        finally:
            shutil.rmtree(home, ignore_errors=True)
        found: dict[str, str] = {}
        for line in out.splitlines()[:10000]:
            sha, _, name = line.partition("\t")
            if _HEX_COMMIT.fullmatch(sha):
                found.setdefault(name, sha)
        for name in wanted:
            peeled = found.get(name + "^{}") if name.startswith("refs/tags/") else None
            if peeled or name in found:
                return peeled or found[name]
        raise FetchError(f"git {remote}: no ref {ref or 'HEAD'!r} in the repository")

    def checkout(self, remote: str, ref: str | None, commit: str, into: Path, *, keep_git_dir: bool,
                 max_bytes: int, max_entries: int, submodules: bool = True) -> None:
        home = _empty_home()
        what = f"git {remote}"
        try:
            env = self._env(remote, home)
            into.mkdir(mode=0o755)
            run = self._run
            run(["init", "-q", "--template=", str(into)], env, what=what)
            run(["remote", "add", "origin", "--", remote], env, cwd=into, what=what)
            fetch = ["-c", "protocol.file.allow=never", "fetch", "-q", "--no-tags", "--no-recurse-submodules"]
            watch = (into, max_bytes)
            targets = [ref] if ref and ref != commit else []
            attempts = [fetch + ["--depth=1", "origin", commit]]
            attempts += [fetch + ["--depth=1", "origin", t] for t in targets]
            attempts += [fetch + ["origin", t] for t in targets]
            attempts += [fetch + ["origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]]
            last: FetchError | None = None
            for args in attempts:
                try:
                    run(args, env, cwd=into, file_limit=max_bytes, watch=watch, what=what)
                except FetchError as e:
                    if "larger than" in str(e):
                        raise
                    last = e
                    continue
                if self._has_commit(into, env, commit):
                    break
            else:
                raise FetchError(f"{what}: commit {commit} is not in the repository") if last is None or \
                    self._has_any(into, env) else last
            self._check_size(into, env, commit, max_bytes, max_entries, what)
            run(["-c", "advice.detachedHead=false", "-c", "core.symlinks=true", "checkout", "-q", "--detach",
                 commit, "--"], env, cwd=into, file_limit=max_bytes, what=what)
            nested: list[str] = []
            if submodules and (into / ".gitmodules").is_file():
                nested = self._submodules(into, env, max_bytes, what)
            if not keep_git_dir:
                for path in nested:  # each submodule's worktree has a ".git" file pointing into .git/modules
                    gitlink = into / path / ".git"
                    if gitlink.is_file() and not gitlink.is_symlink():
                        gitlink.unlink()
                shutil.rmtree(into / ".git")
        finally:
            shutil.rmtree(home, ignore_errors=True)

    def _submodules(self, into: Path, env: dict[str, str], max_bytes: int, what: str) -> list[str]:
        """``git submodule update --init --recursive`` (shallow when the server can), bounded
        like the fetch: the watchdog counts everything below the checkout. Returns the
        submodules' paths."""
        update = ["-c", "protocol.file.allow=never", "-c", "core.symlinks=true", "submodule", "--quiet", "update",
                  "--init", "--recursive"]
        watch = (into, max_bytes)
        try:
            self._run(update + ["--depth=1"], env, cwd=into, file_limit=max_bytes, watch=watch, what=what)
        except FetchError as e:
            if "larger than" in str(e):
                raise
            self._run(update, env, cwd=into, file_limit=max_bytes, watch=watch, what=what)
        listing = self._run(["submodule", "--quiet", "foreach", "--recursive", "echo \"$displaypath\""], env,
                            cwd=into, what=what)
        paths = [line for line in listing.splitlines() if line and not line.startswith("/")
                 and ".." not in line.split("/")]
        return sorted(paths, key=lambda p: p.count("/"), reverse=True)

    def _has_any(self, into: Path, env: dict[str, str]) -> bool:
        """Whether some fetch brought objects (so a missing commit is the answer, not an error)."""
        try:
            return bool(self._run(["count-objects", "-v"], env, cwd=into, what="git").count("count: 0") < 2)
        except FetchError:
            return False

    def _has_commit(self, into: Path, env: dict[str, str], commit: str) -> bool:
        try:
            kind = self._run(["cat-file", "-t", commit], env, cwd=into, what="git")
        except FetchError:
            return False
        return kind.strip() == "commit"

    def _check_size(self, into: Path, env: dict[str, str], commit: str, max_bytes: int, max_entries: int,
                    what: str) -> None:
        """Refuse a tree larger than the bounds before anything of it is written."""
        listing = self._run(["ls-tree", "-r", "-t", "-l", "-z", "--full-tree", commit], env, cwd=into, what=what)
        total = 0
        for count, record in enumerate(filter(None, listing.split("\0")), 1):
            if count > max_entries:
                raise FetchError(f"{what}: the tree of {commit} has more than {max_entries} entries "
                                 "(HOIST_UNPACK_MAX_ENTRIES)")
            size = record.split("\t", 1)[0].split()[-1]
            if size.isdigit():
                total += int(size)
            if total > max_bytes:
                raise FetchError(f"{what}: the tree of {commit} is larger than the {max_bytes} bytes allowed "
                                 "(HOIST_UNPACK_MAX_BYTES)")


def _empty_home() -> Path:
    import tempfile
    return Path(tempfile.mkdtemp(prefix="hoist-git-home-"))


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.communicate()


def _watchdog(proc: subprocess.Popen[bytes], folder: Path, limit: int, too_big: threading.Event,
              done: threading.Event) -> None:
    """Kill ``proc`` (and its process group) once ``folder`` holds more than ``limit`` bytes."""
    while not done.wait(0.2):
        if _tree_bytes(folder, limit) > limit:
            too_big.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            return


def _has_file_of(folder: Path, size: int) -> bool:
    """Whether a regular file below ``folder`` is at least ``size`` bytes long."""
    stack = [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size >= size:
                            return True
                    except OSError:
                        continue
        except OSError:
            continue
    return False


def _tree_bytes(folder: Path, stop_at: int) -> int:
    total = 0
    stack = [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
                    if total > stop_at:
                        return total
        except OSError:
            continue
    return total


__all__ = [
    "UNNAMED",
    "EtagCache",
    "GitRef",
    "RemoteSources",
    "SystemGit",
    "check_git_checksum",
    "classify",
    "http_time",
    "is_http_source",
    "parse_git_ref",
    "url_file_name",
]
